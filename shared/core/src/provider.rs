//! The providers a workspace can connect.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    Ga4,
    MetaAds,
    Resend,
}

/// How a workspace proves it may use a provider account.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AuthMode {
    OAuth,
    ApiKey,
}

impl Provider {
    pub const ALL: [Provider; 3] = [Provider::Ga4, Provider::MetaAds, Provider::Resend];

    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Ga4 => "ga4",
            Provider::MetaAds => "meta_ads",
            Provider::Resend => "resend",
        }
    }

    pub fn display_name(self) -> &'static str {
        match self {
            Provider::Ga4 => "Google Analytics 4",
            Provider::MetaAds => "Meta Ads",
            Provider::Resend => "Resend",
        }
    }

    pub fn auth_mode(self) -> AuthMode {
        match self {
            Provider::Ga4 | Provider::MetaAds => AuthMode::OAuth,
            Provider::Resend => AuthMode::ApiKey,
        }
    }

    /// Days re-read on every incremental sync, because providers revise recent
    /// numbers (GA4 processing delay, Meta attribution windows).
    pub fn default_lookback_days(self) -> u32 {
        match self {
            Provider::Ga4 => 3,
            Provider::MetaAds => 28,
            Provider::Resend => 3,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Provider {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Provider::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                Error::validation(
                    "provider",
                    "unknown provider: expected ga4, meta_ads or resend",
                )
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_unknown_is_rejected() {
        for p in Provider::ALL {
            assert_eq!(p.as_str().parse::<Provider>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert_eq!(
            "hubspot".parse::<Provider>().unwrap_err().code(),
            "validation"
        );
        assert!(serde_json::from_str::<Provider>("\"GA4\"").is_err());
    }
}
