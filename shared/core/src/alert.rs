//! KPI alert rules and their evaluation, without I/O: what a rule watches,
//! the value it sees on a day (over its window, ratios from their parts), and
//! what a sync's days mean for it — fire (one digest for many days), clear,
//! or nothing (cooldown, no change).

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::aggregate::aggregate;
use crate::error::{Error, Result};
use crate::ids::{AlertId, IntegrationId, WorkspaceId};
use crate::kpi::{DateRange, KpiPoint};
use crate::metric::{Metric, MetricSpec};

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Comparison {
    Above,
    Below,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Up,
    Down,
    Either,
}

/// What a change is measured against.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Versus {
    /// The window just before (day over day, or the 7 days before).
    PreviousPeriod,
    /// The same window a week earlier (same weekday last week).
    SameWeekdayLastWeek,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Condition {
    /// The value is above / below `threshold`.
    Threshold {
        comparison: Comparison,
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        threshold: Decimal,
    },
    /// The value changed by at least `percent` against `versus`.
    Change {
        #[cfg_attr(feature = "openapi", schema(value_type = String))]
        percent: Decimal,
        direction: Direction,
        versus: Versus,
    },
}

/// The days a value is taken over, ending on the day observed.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Window {
    Day,
    #[serde(rename = "7d")]
    Last7Days,
}

impl Window {
    pub fn days(self) -> i64 {
        match self {
            Self::Day => 1,
            Self::Last7Days => 7,
        }
    }

    /// The window ending on `day`.
    pub fn ending(self, day: NaiveDate) -> DateRange {
        DateRange {
            from: day - Duration::days(self.days() - 1),
            to: day,
        }
    }
}

/// Where a rule stands.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertState {
    /// The condition held on the latest day seen.
    pub firing: bool,
    /// The latest day it held on, when firing.
    pub since: Option<NaiveDate>,
    /// When the last alert email went out (the cooldown runs from it).
    pub last_sent_at: Option<DateTime<Utc>>,
}

/// Most recipients a rule may have.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest cooldown, in hours (30 days).
pub const MAX_COOLDOWN_HOURS: u32 = 720;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRule {
    pub id: AlertId,
    pub workspace: WorkspaceId,
    pub name: String,
    pub metric: Metric,
    /// Only this integration's points; `None`: the first of the workspace's
    /// integrations of the metric's provider that syncs.
    pub integration: Option<IntegrationId>,
    pub condition: Condition,
    pub window: Window,
    pub recipients: Vec<String>,
    /// No repeat while the condition stays true, for this long.
    pub cooldown_hours: u32,
    /// Send a "back to normal" email when the condition clears.
    pub notify_recovery: bool,
    pub enabled: bool,
    #[serde(default)]
    pub state: AlertState,
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl AlertRule {
    /// Checks what a user may set: a name, a sane condition, recipients
    /// (addresses, at most 50, normalised), a bounded cooldown.
    pub fn check(&mut self) -> Result<()> {
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(Error::validation("name", "1 to 100 printable characters"));
        }
        self.name = name.to_owned();
        match &self.condition {
            Condition::Change { percent, .. }
                if *percent <= Decimal::ZERO || *percent > Decimal::from(10_000) =>
            {
                return Err(Error::validation(
                    "condition.percent",
                    "a change above 0 and at most 10000 percent",
                ));
            }
            _ => {}
        }
        if self.recipients.is_empty() || self.recipients.len() > MAX_RECIPIENTS {
            return Err(Error::validation(
                "recipients",
                format!("1 to {MAX_RECIPIENTS} email addresses"),
            ));
        }
        let mut out: Vec<String> = Vec::with_capacity(self.recipients.len());
        for (i, r) in self.recipients.iter().enumerate() {
            let address = crate::ports::store::normalize_address(r);
            if !crate::email::is_address(&address) {
                return Err(Error::validation(
                    format!("recipients[{i}]"),
                    "must be an email address such as owner@example.com",
                ));
            }
            if !out.contains(&address) {
                out.push(address);
            }
        }
        self.recipients = out;
        if self.cooldown_hours > MAX_COOLDOWN_HOURS {
            return Err(Error::validation(
                "cooldown_hours",
                format!("at most {MAX_COOLDOWN_HOURS} hours"),
            ));
        }
        Ok(())
    }
}

/// A rule's view of one day.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub date: NaiveDate,
    /// The metric over the window ending that day.
    pub value: Option<Decimal>,
    /// The same over the period compared with (change rules).
    pub previous: Option<Decimal>,
    /// `(value - previous) / previous × 100`; `None` when previous is zero or unknown.
    pub change_percent: Option<Decimal>,
    /// Whether the condition held; `None` when it cannot be told (no value,
    /// or a change against nothing).
    pub holds: Option<bool>,
}

/// What `rule` sees on `day`, from the points of its metric's inputs.
pub fn observe(
    rule: &AlertRule,
    spec: &MetricSpec,
    points: &[KpiPoint],
    day: NaiveDate,
) -> Observation {
    let window = rule.window.ending(day);
    let value = aggregate(spec, points, &window);
    let (previous, change_percent, holds) = match &rule.condition {
        Condition::Threshold {
            comparison,
            threshold,
        } => (
            None,
            None,
            value.map(|v| match comparison {
                Comparison::Above => v > *threshold,
                Comparison::Below => v < *threshold,
            }),
        ),
        Condition::Change {
            percent,
            direction,
            versus,
        } => {
            let shift = match versus {
                Versus::PreviousPeriod => rule.window.days(),
                Versus::SameWeekdayLastWeek => 7,
            };
            let earlier = rule.window.ending(day - Duration::days(shift));
            let previous = aggregate(spec, points, &earlier);
            let change = match (value, previous) {
                (Some(v), Some(p)) if !p.is_zero() => Some((v - p) / p.abs() * Decimal::from(100)),
                _ => None,
            };
            let holds = change.map(|c| match direction {
                Direction::Up => c >= *percent,
                Direction::Down => -c >= *percent,
                Direction::Either => c.abs() >= *percent,
            });
            (previous, change, holds)
        }
    };
    Observation {
        date: day,
        value,
        previous,
        change_percent,
        holds,
    }
}

/// What a sync's days mean for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Email about these days (one digest when several).
    Fire(Vec<Observation>),
    /// Still firing, within the cooldown: state kept, no email.
    Quiet,
    /// The condition no longer holds on the latest day.
    Clear(Observation),
    /// Nothing changed.
    Nothing,
}

/// Decides from the rule's state and the observed days (oldest first), at `now`.
pub fn decide(rule: &AlertRule, days: &[Observation], now: DateTime<Utc>) -> Decision {
    let Some(latest) = days.iter().max_by_key(|o| o.date) else {
        return Decision::Nothing;
    };
    let held: Vec<Observation> = days
        .iter()
        .filter(|o| o.holds == Some(true))
        .cloned()
        .collect();
    if latest.holds == Some(false) && rule.state.firing {
        return Decision::Clear(latest.clone());
    }
    if held.is_empty() {
        return Decision::Nothing;
    }
    let cooling = rule.state.firing
        && rule
            .state
            .last_sent_at
            .is_some_and(|at| now < at + Duration::hours(i64::from(rule.cooldown_hours)));
    // Days already reported while firing are not news.
    let new: Vec<Observation> = held
        .into_iter()
        .filter(|o| !rule.state.firing || rule.state.since.is_none_or(|s| o.date > s))
        .collect();
    if new.is_empty() || cooling {
        return if rule.state.firing {
            Decision::Quiet
        } else {
            Decision::Nothing
        };
    }
    Decision::Fire(new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kpi::Currency;
    use crate::metric::Unit;
    use std::str::FromStr;

    const SESSIONS: MetricSpec = MetricSpec::new("ga4.sessions", Unit::Count);
    const SPEND: MetricSpec = MetricSpec::new("meta.spend", Unit::Currency);
    const VALUE: MetricSpec = MetricSpec::new("meta.purchase_value", Unit::Currency);
    const ROAS: MetricSpec = MetricSpec::ratio(
        "meta.roas",
        Unit::Ratio,
        "meta.purchase_value",
        "meta.spend",
        1,
    );

    fn d(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn rule(metric: &str, condition: Condition, window: Window) -> AlertRule {
        let now = Utc::now();
        AlertRule {
            id: AlertId::new_time_ordered(),
            workspace: WorkspaceId::parse("ws").unwrap(),
            name: "rule".into(),
            metric: Metric::new(metric),
            integration: None,
            condition,
            window,
            recipients: vec!["owner@example.com".into()],
            cooldown_hours: 24,
            notify_recovery: true,
            enabled: true,
            state: AlertState::default(),
            version: 1,
            created_at: now,
            updated_at: now,
        }
    }

    fn series(spec: MetricSpec, values: &[(u32, &str)]) -> Vec<KpiPoint> {
        let integration = IntegrationId::new_random();
        values
            .iter()
            .map(|(day, v)| {
                KpiPoint::new(
                    WorkspaceId::parse("ws").unwrap(),
                    integration,
                    spec,
                    d(*day),
                    dec(v),
                    (spec.unit == Unit::Currency).then(|| Currency::parse("EUR").unwrap()),
                )
                .unwrap()
            })
            .collect()
    }

    fn below(threshold: &str) -> Condition {
        Condition::Threshold {
            comparison: Comparison::Below,
            threshold: dec(threshold),
        }
    }

    #[test]
    fn thresholds_on_a_day_and_on_seven_days_of_roas() {
        let mut points = series(
            SPEND,
            &[
                (1, "10"),
                (2, "100"),
                (3, "100"),
                (4, "100"),
                (5, "100"),
                (6, "100"),
                (7, "100"),
            ],
        );
        points.extend(series(
            VALUE,
            &[
                (1, "40"),
                (2, "100"),
                (3, "100"),
                (4, "100"),
                (5, "100"),
                (6, "100"),
                (7, "100"),
            ],
        ));
        let day = rule("meta.roas", below("2"), Window::Day);
        assert_eq!(
            observe(&day, &ROAS, &points, d(1)).holds,
            Some(false),
            "4 on day 1"
        );
        assert_eq!(
            observe(&day, &ROAS, &points, d(2)).holds,
            Some(true),
            "1 on day 2"
        );
        // 640 / 610 = 1.049…: the mean of daily ROAS (1.43) would say otherwise.
        let week = rule("meta.roas", below("1.05"), Window::Last7Days);
        let o = observe(&week, &ROAS, &points, d(7));
        assert_eq!(
            o.value,
            Some(dec("640") / dec("610")),
            "the week's value over the week's spend"
        );
        assert_eq!(o.holds, Some(true));
        let lower = rule("meta.roas", below("1.04"), Window::Last7Days);
        assert_eq!(observe(&lower, &ROAS, &points, d(7)).holds, Some(false));
    }

    #[test]
    fn changes_against_zero_are_undefined_not_infinite() {
        let points = series(SESSIONS, &[(1, "0"), (2, "50"), (3, "100"), (10, "40")]);
        let up = rule(
            "ga4.sessions",
            Condition::Change {
                percent: dec("50"),
                direction: Direction::Up,
                versus: Versus::PreviousPeriod,
            },
            Window::Day,
        );
        let o = observe(&up, &SESSIONS, &points, d(2));
        assert_eq!(
            (o.previous, o.change_percent, o.holds),
            (Some(dec("0")), None, None)
        );
        let o = observe(&up, &SESSIONS, &points, d(3));
        assert_eq!(o.change_percent, Some(dec("100")));
        assert_eq!(o.holds, Some(true));
        let weekday = rule(
            "ga4.sessions",
            Condition::Change {
                percent: dec("50"),
                direction: Direction::Down,
                versus: Versus::SameWeekdayLastWeek,
            },
            Window::Day,
        );
        let o = observe(&weekday, &SESSIONS, &points, d(10));
        assert_eq!(o.change_percent, Some(dec("-60")));
        assert_eq!(o.holds, Some(true));
    }

    #[test]
    fn a_backfill_fires_one_digest_then_cooldown_then_clearing() {
        let points = series(
            SESSIONS,
            &(1..=30).map(|day| (day, "5")).collect::<Vec<_>>(),
        );
        let mut r = rule("ga4.sessions", below("10"), Window::Day);
        let days: Vec<_> = (1..=30)
            .map(|day| observe(&r, &SESSIONS, &points, d(day)))
            .collect();
        let now = Utc::now();
        let Decision::Fire(fired) = decide(&r, &days, now) else {
            panic!("fires");
        };
        assert_eq!(fired.len(), 30, "one digest for thirty days");
        r.state = AlertState {
            firing: true,
            since: Some(d(30)),
            last_sent_at: Some(now),
        };
        // The same days again (a redelivered sync): nothing new.
        assert_eq!(decide(&r, &days, now), Decision::Quiet);
        // A new day still below, within the cooldown: quiet.
        let more = series(SESSIONS, &[(31, "4")]);
        let next = [observe(&r, &SESSIONS, &more, d(31))];
        assert_eq!(decide(&r, &next, now + Duration::hours(1)), Decision::Quiet);
        // After the cooldown it fires again, for the new day only.
        let Decision::Fire(again) = decide(&r, &next, now + Duration::hours(25)) else {
            panic!("fires after the cooldown");
        };
        assert_eq!(again.len(), 1);
        // A restated day (the provider revised it up) clears it.
        let restated = series(SESSIONS, &[(31, "12")]);
        let cleared = [observe(&r, &SESSIONS, &restated, d(31))];
        assert!(matches!(decide(&r, &cleared, now), Decision::Clear(o) if o.date == d(31)));
    }

    #[test]
    fn rules_are_checked() {
        let mut r = rule("ga4.sessions", below("10"), Window::Day);
        r.recipients = vec!["Owner@Example.com".into(), "owner@example.com".into()];
        r.name = "  Low sessions ".into();
        r.check().unwrap();
        assert_eq!(r.recipients, vec!["owner@example.com"]);
        assert_eq!(r.name, "Low sessions");
        r.recipients = vec!["nope".into()];
        assert!(r.check().is_err());
        r.recipients = vec![];
        assert!(r.check().is_err());
        let mut c = rule(
            "ga4.sessions",
            Condition::Change {
                percent: dec("0"),
                direction: Direction::Either,
                versus: Versus::PreviousPeriod,
            },
            Window::Day,
        );
        assert!(c.check().is_err());
        let json =
            serde_json::json!({"kind": "threshold", "comparison": "above", "threshold": "2.5"});
        assert!(serde_json::from_value::<Condition>(json).is_ok());
        assert_eq!(serde_json::to_value(Window::Last7Days).unwrap(), "7d");
    }
}
