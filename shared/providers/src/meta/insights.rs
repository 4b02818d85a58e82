//! Daily insight rows → KPI points. Meta reports no row for a day without
//! delivery: such days are zero spend, impressions, clicks, reach and
//! purchases, and have no ratio (CTR, CPC, CPM, ROAS). Purchases come from one
//! action type only — Meta reports the same purchases under several.

use std::collections::HashMap;
use std::str::FromStr;

use chrono::NaiveDate;
use kpi_core::kpi::{Currency, DateRange};
use kpi_core::metric::MetricSpec;
use kpi_core::{Error, Integration, KpiPoint, Result};
use rust_decimal::Decimal;

use super::METRICS;
use super::graph::{ActionStat, InsightRow};

/// The purchase action types, most inclusive first; the first one a row has
/// is the one counted.
pub const PURCHASE_TYPES: [&str; 3] = [
    "omni_purchase",
    "purchase",
    "offsite_conversion.fb_pixel_purchase",
];

fn number(raw: &str) -> Result<Decimal> {
    Decimal::from_str(raw.trim())
        .map_err(|_| Error::transient(format!("Meta sent a number we could not read: {:.40}", raw)))
}

fn optional(raw: Option<&String>) -> Result<Option<Decimal>> {
    raw.map(|r| number(r)).transpose()
}

/// The value of the first purchase type present.
fn purchase(stats: Option<&Vec<ActionStat>>) -> Result<Decimal> {
    let Some(stats) = stats else {
        return Ok(Decimal::ZERO);
    };
    for wanted in PURCHASE_TYPES {
        if let Some(stat) = stats.iter().find(|s| s.action_type == wanted) {
            return Ok(optional(stat.value.as_ref())?.unwrap_or(Decimal::ZERO));
        }
    }
    Ok(Decimal::ZERO)
}

fn spec(name: &str) -> Result<MetricSpec> {
    METRICS
        .iter()
        .find(|m| m.metric.as_str() == name)
        .copied()
        .ok_or_else(|| Error::internal(format!("no Meta metric {name}")))
}

/// Every day of `window`, from the rows Meta sent for it.
pub fn points(
    integration: &Integration,
    window: &DateRange,
    rows: &[InsightRow],
) -> Result<Vec<KpiPoint>> {
    let currency = rows
        .iter()
        .find_map(|r| r.account_currency.as_deref())
        .map(Currency::parse)
        .transpose()?;
    let mut by_day: HashMap<NaiveDate, &InsightRow> = HashMap::new();
    for row in rows {
        let day = NaiveDate::parse_from_str(&row.date_start, "%Y-%m-%d")
            .map_err(|_| Error::transient("Meta sent a row without a readable date"))?;
        by_day.insert(day, row);
    }
    let mut out = Vec::new();
    let mut push = |name: &str, day: NaiveDate, value: Decimal| -> Result<()> {
        let spec = spec(name)?;
        let money = spec.unit == kpi_core::metric::Unit::Currency;
        if money && currency.is_none() {
            // A window without a single row tells no currency: its money stays unknown.
            return Ok(());
        }
        out.push(KpiPoint::new(
            integration.workspace.clone(),
            integration.id,
            spec,
            day,
            value,
            if money { currency.clone() } else { None },
        )?);
        Ok(())
    };
    for day in window.from.iter_days().take_while(|d| *d <= window.to) {
        let Some(row) = by_day.get(&day) else {
            for name in [
                "meta.spend",
                "meta.impressions",
                "meta.clicks",
                "meta.reach",
                "meta.purchases",
                "meta.purchase_value",
            ] {
                push(name, day, Decimal::ZERO)?;
            }
            continue;
        };
        let spend = optional(row.spend.as_ref())?.unwrap_or(Decimal::ZERO);
        let purchase_value = purchase(row.action_values.as_ref())?;
        push("meta.spend", day, spend)?;
        push(
            "meta.impressions",
            day,
            optional(row.impressions.as_ref())?.unwrap_or(Decimal::ZERO),
        )?;
        push(
            "meta.clicks",
            day,
            optional(row.clicks.as_ref())?.unwrap_or(Decimal::ZERO),
        )?;
        push(
            "meta.reach",
            day,
            optional(row.reach.as_ref())?.unwrap_or(Decimal::ZERO),
        )?;
        push("meta.purchases", day, purchase(row.actions.as_ref())?)?;
        push("meta.purchase_value", day, purchase_value)?;
        // Meta's CTR is a percentage; KPI ratios are fractions.
        if let Some(ctr) = optional(row.ctr.as_ref())? {
            push("meta.ctr", day, ctr / Decimal::ONE_HUNDRED)?;
        }
        if let Some(cpc) = optional(row.cpc.as_ref())? {
            push("meta.cpc", day, cpc)?;
        }
        if let Some(cpm) = optional(row.cpm.as_ref())? {
            push("meta.cpm", day, cpm)?;
        }
        if !spend.is_zero() {
            push("meta.roas", day, purchase_value / spend)?;
        }
    }
    Ok(out)
}
