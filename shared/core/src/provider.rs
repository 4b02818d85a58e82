//! Provider ids. The set is open: the provider registry decides which ids a
//! deployment knows, and everything else about a provider lives in its
//! descriptor (see [`crate::ports::provider`]). Each provider names its own
//! id in its module (`kpi_providers::ga4::ID`); nothing here knows one.

use std::str::FromStr;

use serde::Serialize;

use crate::error::Error;
use crate::name::{ShortName, short_name_serde};

/// A provider's id as it appears in routes, records and configuration
/// (`ga4`, `meta_ads`, `resend`): `[a-z][a-z0-9_]*`, at most 24 characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Provider(ShortName);

/// How a workspace proves it may use a provider account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    OAuth,
    ApiKey,
}

/// Longest provider id.
pub const MAX_ID_LEN: usize = 24;

impl Provider {
    /// For constants; a bad id stops the build.
    pub const fn new(id: &str) -> Self {
        match Self::try_new(id) {
            Some(p) => p,
            None => panic!("provider ids are 1-24 of [a-z0-9_], starting with a letter"),
        }
    }

    const fn try_new(id: &str) -> Option<Self> {
        let b = id.as_bytes();
        if b.len() > MAX_ID_LEN {
            return None;
        }
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'.' {
                return None;
            }
            i += 1;
        }
        match ShortName::try_new(id) {
            Some(n) => Some(Self(n)),
            None => None,
        }
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// The id in configuration names: `meta_ads` → `META_ADS`
    /// (as in `KPI_QUEUE_URL_META_ADS`).
    pub fn env_suffix(&self) -> String {
        self.as_str().to_ascii_uppercase()
    }
}

impl FromStr for Provider {
    type Err = Error;
    /// Checks the form only; whether the provider exists is the registry's answer.
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::try_new(s).ok_or_else(|| {
            Error::validation(
                "provider",
                format!("not a provider id: {:.40}", s.escape_debug()),
            )
        })
    }
}

short_name_serde!(
    Provider,
    "A provider id such as ga4, meta_ads or resend.",
    "ga4"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_bad_forms_are_rejected() {
        for p in [
            Provider::new("ga4"),
            Provider::new("meta_ads"),
            Provider::new("resend"),
        ] {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert_eq!(Provider::new("meta_ads").env_suffix(), "META_ADS");
        assert!("GA4".parse::<Provider>().unwrap_err().is_validation());
        assert!("ga4.x".parse::<Provider>().is_err());
        assert!(serde_json::from_str::<Provider>("\"GA4\"").is_err());
        assert_eq!(
            serde_json::from_str::<Provider>("\"hubspot\"")
                .unwrap()
                .as_str(),
            "hubspot"
        );
    }
}
