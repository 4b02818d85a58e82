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

impl Unit {
    pub const ALL: [Unit; 4] = [Unit::Count, Unit::Currency, Unit::Ratio, Unit::Seconds];

    /// The unit's name, as it is serialized.
    pub fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "count",
            Unit::Currency => "currency",
            Unit::Ratio => "ratio",
            Unit::Seconds => "seconds",
        }
    }

    /// The unit of a name [`Unit::as_str`] gave.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|u| u.as_str() == name)
    }
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

/// How a metric's daily values combine over a range of days.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aggregation {
    /// Counts and money: the days' sum.
    Sum,
    /// A ratio recomputed from its parts over the range:
    /// `scale × Σ numerator / Σ denominator` (ROAS over a week is the week's
    /// purchase value over the week's spend, never the mean of daily ROAS).
    /// No value when the denominator's sum is zero.
    Ratio {
        numerator: Metric,
        denominator: Metric,
        scale: u32,
    },
    /// A rate whose parts are not kept: the days' values weighted by another
    /// metric of the same provider (GA4's engagement rate by sessions).
    WeightedBy(Metric),
}

/// A metric as a provider declares it: its name, unit and how it aggregates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MetricSpec {
    pub metric: Metric,
    pub unit: Unit,
    pub aggregation: Aggregation,
}

impl MetricSpec {
    /// A metric summed over ranges (counts, money).
    pub const fn new(name: &str, unit: Unit) -> Self {
        Self {
            metric: Metric::new(name),
            unit,
            aggregation: Aggregation::Sum,
        }
    }

    /// A ratio of two metrics of the same provider, times `scale`.
    pub const fn ratio(
        name: &str,
        unit: Unit,
        numerator: &str,
        denominator: &str,
        scale: u32,
    ) -> Self {
        Self {
            metric: Metric::new(name),
            unit,
            aggregation: Aggregation::Ratio {
                numerator: Metric::new(numerator),
                denominator: Metric::new(denominator),
                scale,
            },
        }
    }

    /// A rate averaged with the days' values of `by` as weights.
    pub const fn weighted(name: &str, unit: Unit, by: &str) -> Self {
        Self {
            metric: Metric::new(name),
            unit,
            aggregation: Aggregation::WeightedBy(Metric::new(by)),
        }
    }

    /// The metrics whose points an aggregate of this one needs.
    pub fn inputs(&self) -> Vec<Metric> {
        match self.aggregation {
            Aggregation::Sum => vec![self.metric],
            Aggregation::Ratio {
                numerator,
                denominator,
                ..
            } => vec![numerator, denominator],
            Aggregation::WeightedBy(by) => vec![self.metric, by],
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn unit_names_are_their_serialized_names() {
        for unit in super::Unit::ALL {
            let json = serde_json::to_string(&unit).unwrap();
            assert_eq!(json, format!("\"{}\"", unit.as_str()));
            assert_eq!(super::Unit::parse(unit.as_str()), Some(unit));
        }
        assert_eq!(super::Unit::parse("percent"), None);
    }

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
