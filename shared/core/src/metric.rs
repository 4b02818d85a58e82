//! KPI metric names and units. Which metrics exist is each provider's
//! descriptor's business ([`crate::ports::provider::ProviderDescriptor`]); the
//! names of the contract are kept in the provider modules.

use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::name::{ShortName, short_name_serde};

/// What a KPI value measures, which decides how it is summed over a range.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    Count,
    Currency,
    /// A ratio in `[0, 1]` (rates) or a multiple (ROAS); never summed.
    Ratio,
    Seconds,
}

/// A metric name such as `ga4.sessions`: `provider_prefix.name`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Metric(ShortName);

impl Metric {
    /// For constants; a bad name stops the build.
    pub const fn new(name: &str) -> Self {
        Self(ShortName::new(name))
    }

    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl FromStr for Metric {
    type Err = Error;
    /// Checks the form only; whether the metric exists is the registry's answer.
    fn from_str(s: &str) -> Result<Self, Error> {
        ShortName::try_new(s)
            .filter(|n| n.as_str().contains('.'))
            .map(Self)
            .ok_or_else(|| {
                Error::validation(
                    "metric",
                    format!("unknown metric: {:.64}", s.escape_debug()),
                )
            })
    }
}

short_name_serde!(
    Metric,
    "A KPI metric name such as ga4.sessions.",
    "ga4.sessions"
);

/// A metric as a provider declares it: its name and unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub metric: Metric,
    pub unit: Unit,
}

impl MetricSpec {
    pub const fn new(name: &str, unit: Unit) -> Self {
        Self {
            metric: Metric::new(name),
            unit,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_names_need_a_prefix() {
        assert_eq!(
            "ga4.sessions".parse::<Metric>().unwrap(),
            Metric::new("ga4.sessions")
        );
        assert!("sessions".parse::<Metric>().is_err());
        assert!("GA4.sessions".parse::<Metric>().is_err());
        assert!(serde_json::from_str::<Metric>("\"ga4.x y\"").is_err());
    }
}
