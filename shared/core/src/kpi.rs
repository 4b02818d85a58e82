//! KPI points: the one format every provider's numbers are synced into.

use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{IntegrationId, WorkspaceId};
use crate::metric::{Metric, MetricSpec, Unit};

/// ISO 4217 currency code, upper case.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Currency(String);

impl Currency {
    pub fn parse(code: &str) -> Result<Self, Error> {
        if code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Self(code.to_owned()))
        } else {
            Err(Error::validation(
                "currency",
                "currency must be a three-letter ISO 4217 code",
            ))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// One number of one metric on one reporting day of one integration.
///
/// Keyed by `(integration, metric, date)`: writing the same key again overwrites,
/// so re-syncing a window never duplicates. `date` is the provider's reporting day
/// in the account's own time zone, not a UTC day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KpiPoint {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub metric: Metric,
    pub date: NaiveDate,
    /// Serialized as a string so no JSON reader turns it into a drifting float.
    pub value: Decimal,
    pub unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<Currency>,
}

impl KpiPoint {
    /// Builds a point whose unit follows from the metric; money needs a currency.
    pub fn new(
        workspace: WorkspaceId,
        integration: IntegrationId,
        spec: MetricSpec,
        date: NaiveDate,
        value: Decimal,
        currency: Option<Currency>,
    ) -> Result<Self, Error> {
        let MetricSpec { metric, unit, .. } = spec;
        if unit == Unit::Currency && currency.is_none() {
            return Err(Error::validation(
                "currency",
                format!("{metric} is a money value and needs a currency"),
            ));
        }
        Ok(Self {
            workspace,
            integration,
            metric,
            date,
            value,
            unit,
            currency,
        })
    }
}

/// An inclusive range of reporting days.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DateRange {
    pub from: NaiveDate,
    pub to: NaiveDate,
}

impl DateRange {
    pub fn new(from: NaiveDate, to: NaiveDate) -> Result<Self, Error> {
        if from > to {
            return Err(Error::validation("from", "`from` must not be after `to`"));
        }
        Ok(Self { from, to })
    }

    pub fn days(&self) -> i64 {
        (self.to - self.from).num_days() + 1
    }

    pub fn contains(&self, date: NaiveDate) -> bool {
        self.from <= date && date <= self.to
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn ids() -> (WorkspaceId, IntegrationId) {
        (
            WorkspaceId::parse("ws1").unwrap(),
            IntegrationId::new_random(),
        )
    }

    #[test]
    fn money_needs_a_currency_and_values_stay_exact() {
        let (ws, int) = ids();
        let day = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let spend = MetricSpec::new("meta.spend", Unit::Currency);
        let err = KpiPoint::new(ws.clone(), int, spend, day, Decimal::ONE, None);
        assert!(err.is_err());
        let value = Decimal::from_str("0.1").unwrap() + Decimal::from_str("0.2").unwrap();
        let p = KpiPoint::new(
            ws,
            int,
            spend,
            day,
            value,
            Some(Currency::parse("EUR").unwrap()),
        )
        .unwrap();
        let json = serde_json::to_value(&p).unwrap();
        assert_eq!(json["value"], "0.3");
        assert_eq!(json["unit"], "currency");
        assert!(Currency::parse("eur").is_err());
    }

    #[test]
    fn ranges_are_ordered_and_inclusive() {
        let d = |day| NaiveDate::from_ymd_opt(2026, 1, day).unwrap();
        assert!(DateRange::new(d(5), d(4)).is_err());
        let r = DateRange::new(d(1), d(31)).unwrap();
        assert_eq!(r.days(), 31);
        assert!(r.contains(d(31)));
    }
}
