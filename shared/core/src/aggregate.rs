//! A metric's value over a range of days, from its daily points, by its
//! [`Aggregation`]: sums for counts and money, ratios recomputed from their
//! parts, rates weighted by their base. A ratio with a zero denominator has
//! no value (never infinity).

use std::collections::HashMap;

use rust_decimal::Decimal;

use crate::kpi::{DateRange, KpiPoint};
use crate::metric::{Aggregation, Metric, MetricSpec};

/// The sum of `metric` over the days of `range` found in `points`
/// (`None` when there is no point at all).
fn sum(points: &[KpiPoint], metric: Metric, range: &DateRange) -> Option<Decimal> {
    let mut found = false;
    let mut total = Decimal::ZERO;
    for p in points
        .iter()
        .filter(|p| p.metric == metric && range.contains(p.date))
    {
        found = true;
        total += p.value;
    }
    found.then_some(total)
}

/// `spec`'s value over `range`, from the points of its inputs
/// ([`MetricSpec::inputs`]) — typically one integration's.
pub fn aggregate(spec: &MetricSpec, points: &[KpiPoint], range: &DateRange) -> Option<Decimal> {
    match spec.aggregation {
        Aggregation::Sum => sum(points, spec.metric, range),
        Aggregation::Ratio {
            numerator,
            denominator,
            scale,
        } => {
            let den = sum(points, denominator, range)?;
            if den.is_zero() {
                return None;
            }
            let num = sum(points, numerator, range).unwrap_or(Decimal::ZERO);
            Some(num * Decimal::from(scale) / den)
        }
        Aggregation::WeightedBy(by) => {
            let weights: HashMap<_, _> = points
                .iter()
                .filter(|p| p.metric == by && range.contains(p.date))
                .map(|p| (p.date, p.value))
                .collect();
            let (mut weighted, mut total) = (Decimal::ZERO, Decimal::ZERO);
            for p in points
                .iter()
                .filter(|p| p.metric == spec.metric && range.contains(p.date))
            {
                let w = weights.get(&p.date).copied().unwrap_or(Decimal::ZERO);
                weighted += p.value * w;
                total += w;
            }
            (!total.is_zero()).then(|| weighted / total)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{IntegrationId, WorkspaceId};
    use crate::kpi::Currency;
    use crate::metric::Unit;
    use chrono::NaiveDate;
    use std::str::FromStr;

    const SPEND: MetricSpec = MetricSpec::new("meta.spend", Unit::Currency);
    const VALUE: MetricSpec = MetricSpec::new("meta.purchase_value", Unit::Currency);
    const ROAS: MetricSpec = MetricSpec::ratio(
        "meta.roas",
        Unit::Ratio,
        "meta.purchase_value",
        "meta.spend",
        1,
    );
    const CPM: MetricSpec = MetricSpec::ratio(
        "meta.cpm",
        Unit::Currency,
        "meta.spend",
        "meta.impressions",
        1000,
    );
    const SESSIONS: MetricSpec = MetricSpec::new("ga4.sessions", Unit::Count);
    const ENGAGEMENT: MetricSpec =
        MetricSpec::weighted("ga4.engagement_rate", Unit::Ratio, "ga4.sessions");

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    fn point(spec: MetricSpec, day: u32, value: &str) -> KpiPoint {
        let currency = (spec.unit == Unit::Currency).then(|| Currency::parse("EUR").unwrap());
        KpiPoint::new(
            WorkspaceId::parse("ws").unwrap(),
            IntegrationId::new_random(),
            spec,
            d(day),
            Decimal::from_str(value).unwrap(),
            currency,
        )
        .unwrap()
    }

    #[test]
    fn roas_over_a_week_is_the_weeks_value_over_the_weeks_spend() {
        let mut points = Vec::new();
        // Day 1: 10 spent, 40 earned (ROAS 4); days 2–7: 100 spent, 100 earned (ROAS 1).
        points.push(point(SPEND, 1, "10"));
        points.push(point(VALUE, 1, "40"));
        for day in 2..=7 {
            points.push(point(SPEND, day, "100"));
            points.push(point(VALUE, day, "100"));
        }
        let week = DateRange::new(d(1), d(7)).unwrap();
        assert_eq!(
            aggregate(&ROAS, &points, &week),
            Some(Decimal::from(640) / Decimal::from(610))
        );
        assert_ne!(
            aggregate(&ROAS, &points, &week),
            Some(Decimal::from_str("1.428571").unwrap()),
            "not the mean of daily ROAS"
        );
        assert_eq!(aggregate(&SPEND, &points, &week), Some(Decimal::from(610)));
        // No spend: no ROAS, not infinity.
        let zero = vec![point(SPEND, 8, "0"), point(VALUE, 8, "5")];
        assert_eq!(
            aggregate(&ROAS, &zero, &DateRange::new(d(8), d(8)).unwrap()),
            None
        );
    }

    #[test]
    fn scaled_ratios_and_weighted_rates() {
        let impressions = MetricSpec::new("meta.impressions", Unit::Count);
        let points = vec![
            point(SPEND, 1, "5"),
            point(impressions, 1, "1000"),
            point(SPEND, 2, "15"),
            point(impressions, 2, "3000"),
        ];
        let two = DateRange::new(d(1), d(2)).unwrap();
        assert_eq!(aggregate(&CPM, &points, &two), Some(Decimal::from(5)));
        let points = vec![
            point(SESSIONS, 1, "100"),
            point(ENGAGEMENT, 1, "0.5"),
            point(SESSIONS, 2, "300"),
            point(ENGAGEMENT, 2, "0.9"),
        ];
        assert_eq!(
            aggregate(&ENGAGEMENT, &points, &two),
            Some(Decimal::from_str("0.8").unwrap())
        );
        assert_eq!(aggregate(&SESSIONS, &[], &two), None, "no points, no value");
    }
}
