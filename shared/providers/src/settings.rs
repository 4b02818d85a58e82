//! Typed settings: each provider parses the stored JSON object into its own
//! type at the edge, so nothing else reads settings by string key. A bad value
//! is a 422 naming its field (`settings.property`).

use kpi_core::ports::provider::Settings;
use kpi_core::{Error, Result};
use serde::de::DeserializeOwned;

/// Parses `settings` into `T` (which should deny unknown fields).
pub fn parse<T: DeserializeOwned>(settings: &Settings) -> Result<T> {
    let value = serde_json::Value::Object(settings.clone());
    serde_path_to_error::deserialize(value).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            "settings".to_owned()
        } else {
            format!("settings.{path}")
        };
        let inner = e.into_inner().to_string();
        // serde's own wording names Rust types; say it in the contract's terms.
        let message = if inner.starts_with("invalid type") {
            inner
                .split_once(", expected ")
                .map(|(_, expected)| format!("must be {expected}"))
                .unwrap_or(inner)
        } else {
            inner
        };
        Error::validation(field, message)
    })
}

/// A string setting checked by `ok`; `expected` completes "must be …".
pub fn checked(value: String, ok: impl Fn(&str) -> bool, expected: &str) -> Result<String, String> {
    if ok(&value) {
        Ok(value)
    } else {
        Err(format!("must be {expected}"))
    }
}

/// `prefix` followed by 1 to 20 digits (`properties/123`, `act_123`).
pub fn prefixed_number(value: &str, prefix: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|n| !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Example {
        #[serde(default)]
        #[allow(dead_code)]
        name: Option<String>,
    }

    #[test]
    fn errors_name_the_field() {
        let mut s = Settings::new();
        s.insert("name".into(), serde_json::json!(5));
        let e = parse::<Example>(&s).unwrap_err();
        match e.kind() {
            kpi_core::ErrorKind::Validation { fields } => {
                assert_eq!(fields[0].field, "settings.name");
                assert_eq!(fields[0].message, "must be a string");
            }
            other => panic!("{other:?}"),
        }
        assert!(prefixed_number("act_12", "act_"));
        assert!(!prefixed_number("act_", "act_"));
    }
}
