//! Reading configuration values by name. The values come from a lookup that the
//! deployment assembles (environment, `.env`, the Secrets Manager JSON); each
//! part of the system — the app's own settings, each provider's — reads the
//! names it owns through [`Vars`]. A bad value is a [`ConfigError`] naming the
//! variable; secret values are never echoed.

use std::fmt;
use std::sync::Arc;

use secrecy::SecretString;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: String,
    pub message: String,
}

impl ConfigError {
    pub fn new(variable: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            variable: variable.into(),
            message: message.into(),
        }
    }
}

impl From<ConfigError> for crate::Error {
    fn from(e: ConfigError) -> Self {
        crate::Error::config(e.to_string())
    }
}

type Lookup = dyn Fn(&str) -> Option<String> + Send + Sync;

/// The configuration variables of one process, by name.
#[derive(Clone)]
pub struct Vars {
    lookup: Arc<Lookup>,
}

impl fmt::Debug for Vars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Vars([by name])")
    }
}

impl Vars {
    pub fn new(lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static) -> Self {
        Self {
            lookup: Arc::new(lookup),
        }
    }

    /// These values first, then `self`'s (the sandbox's app credentials over
    /// the deployment's, for example).
    pub fn overlaid(&self, values: Vec<(String, String)>) -> Self {
        let base = self.lookup.clone();
        Self::new(move |name| {
            values
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
                .or_else(|| base(name))
        })
    }

    /// A set, non-blank value.
    pub fn get(&self, name: &str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    pub fn secret(&self, name: &str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    /// An http(s) URL, or `default` when unset.
    pub fn url(&self, name: &str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.get(name);
        let value = raw.as_deref().unwrap_or(default);
        let url = Url::parse(value)
            .map_err(|_| ConfigError::new(name, format!("not a URL: {value:.200}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(ConfigError::new(name, "must be an http or https URL"));
        }
        Ok(url)
    }

    /// An http(s) URL that must be set.
    pub fn required_url(&self, name: &str) -> Result<Url, ConfigError> {
        if self.get(name).is_none() {
            return Err(ConfigError::new(name, "is required"));
        }
        self.url(name, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_trimmed_overlaid_and_checked() {
        let vars = Vars::new(|n| match n {
            "A" => Some(" x ".into()),
            "BLANK" => Some("  ".into()),
            "U" => Some("ftp://host".into()),
            _ => None,
        });
        assert_eq!(vars.get("A").as_deref(), Some("x"));
        assert_eq!(vars.get("BLANK"), None);
        assert_eq!(vars.url("U", "").unwrap_err().variable, "U");
        assert_eq!(
            vars.url("NONE", "https://d.example").unwrap().host_str(),
            Some("d.example")
        );
        assert_eq!(vars.required_url("NONE").unwrap_err().variable, "NONE");
        let over = vars.overlaid(vec![("A".into(), "y".into())]);
        assert_eq!(over.get("A").as_deref(), Some("y"));
        assert!(!format!("{over:?}").contains('x'));
    }
}
