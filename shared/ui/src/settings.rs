//! `/settings/alerts` and `/settings/reports`: a workspace's KPI alert rules
//! (list, create, edit, pause, delete, test, history) and its report schedule
//! (with a preview sent to the viewer).

use axum::extract::{Query, State};
use axum::response::Response;
use kpi_app::AppState;
use kpi_core::alert::{AlertRule, Comparison, Condition, Direction, Versus, Window};
use kpi_core::{IntegrationStatus, WorkspaceScope};
use kpi_notify::reports::ReportSettings;
use kpi_notify::schedule::Frequency;
use serde::{Deserialize, Serialize};

use crate::describe::When;
use crate::integrations::metric_words;
use crate::page::{Frame, PageError, Viewer, workspace_param};

/// Events shown per rule.
const HISTORY: u32 = 10;

#[derive(Deserialize)]
pub struct Params {
    workspace: Option<String>,
}

#[derive(Serialize)]
struct MetricChoice {
    name: String,
    label: String,
    provider: &'static str,
}

#[derive(Serialize)]
struct IntegrationChoice {
    id: String,
    label: String,
    provider: String,
}

#[derive(Serialize)]
struct EventRow {
    kind: String,
    days: String,
    emailed: bool,
    reason: Option<String>,
    at: When,
}

#[derive(Serialize)]
struct RuleRow {
    id: String,
    name: String,
    metric: String,
    metric_label: String,
    integration: Option<String>,
    integration_label: String,
    condition_words: String,
    /// `threshold` or `change`.
    kind: &'static str,
    comparison: &'static str,
    threshold: String,
    percent: String,
    direction: &'static str,
    versus: &'static str,
    window: &'static str,
    recipients: String,
    cooldown_hours: u32,
    notify_recovery: bool,
    enabled: bool,
    firing: bool,
    firing_since: Option<String>,
    last_sent: Option<When>,
    warning: Option<String>,
    events: Vec<EventRow>,
}

#[derive(Serialize)]
struct AlertsContext {
    frame: Frame,
    rules: Vec<RuleRow>,
    metrics: Vec<MetricChoice>,
    integrations: Vec<IntegrationChoice>,
    me: Option<String>,
}

fn condition_words(c: &Condition, window: Window) -> String {
    let over = match window {
        Window::Day => "on a day",
        Window::Last7Days => "over 7 days",
    };
    match c {
        Condition::Threshold {
            comparison,
            threshold,
        } => {
            let cmp = match comparison {
                Comparison::Above => "above",
                Comparison::Below => "below",
            };
            format!("{over} {cmp} {threshold}")
        }
        Condition::Change {
            percent,
            direction,
            versus,
        } => {
            let dir = match direction {
                Direction::Up => "rises",
                Direction::Down => "falls",
                Direction::Either => "changes",
            };
            let vs = match versus {
                Versus::PreviousPeriod => "the period before",
                Versus::SameWeekdayLastWeek => "the same weekday last week",
            };
            format!("{dir} by {percent}% or more {over}, against {vs}")
        }
    }
}

async fn rule_row(
    state: &AppState,
    scope: &WorkspaceScope,
    r: AlertRule,
    names: &[IntegrationChoice],
    now: chrono::DateTime<chrono::Utc>,
) -> Result<RuleRow, PageError> {
    let events = state
        .store
        .list_alert_events(scope, r.id, HISTORY)
        .await?
        .into_iter()
        .map(|e| {
            let days = match (e.days.first(), e.days.last()) {
                (Some(a), Some(b)) if a.date != b.date => format!("{} to {}", a.date, b.date),
                (Some(a), _) => a.date.to_string(),
                _ => String::new(),
            };
            EventRow {
                kind: e.kind,
                days,
                emailed: e.emailed,
                reason: e.reason,
                at: When::of(e.at, now),
            }
        })
        .collect();
    let integration = r.integration.map(|i| i.to_string());
    let (integration_label, warning) = match &integration {
        None => ("any connected integration".to_owned(), None),
        Some(id) => match names.iter().find(|n| &n.id == id) {
            Some(n) => (n.label.clone(), None),
            None => (
                "a disconnected integration".to_owned(),
                Some("Its integration is disconnected, so this rule cannot fire.".to_owned()),
            ),
        },
    };
    let (kind, comparison, threshold, percent, direction, versus) = match &r.condition {
        Condition::Threshold {
            comparison,
            threshold,
        } => (
            "threshold",
            match comparison {
                Comparison::Above => "above",
                Comparison::Below => "below",
            },
            threshold.to_string(),
            String::new(),
            "either",
            "previous_period",
        ),
        Condition::Change {
            percent,
            direction,
            versus,
        } => (
            "change",
            "above",
            String::new(),
            percent.to_string(),
            match direction {
                Direction::Up => "up",
                Direction::Down => "down",
                Direction::Either => "either",
            },
            match versus {
                Versus::PreviousPeriod => "previous_period",
                Versus::SameWeekdayLastWeek => "same_weekday_last_week",
            },
        ),
    };
    Ok(RuleRow {
        id: r.id.to_string(),
        condition_words: condition_words(&r.condition, r.window),
        metric: r.metric.to_string(),
        metric_label: metric_words(r.metric.as_str()),
        name: r.name,
        integration,
        integration_label,
        kind,
        comparison,
        threshold,
        percent,
        direction,
        versus,
        window: match r.window {
            Window::Day => "day",
            Window::Last7Days => "7d",
        },
        recipients: r.recipients.join("\n"),
        cooldown_hours: r.cooldown_hours,
        notify_recovery: r.notify_recovery,
        enabled: r.enabled,
        firing: r.state.firing,
        firing_since: r.state.since.map(|d| d.to_string()),
        last_sent: When::maybe(r.state.last_sent_at, now),
        warning,
        events,
    })
}

async fn integration_choices(
    state: &AppState,
    scope: &WorkspaceScope,
) -> Result<Vec<IntegrationChoice>, PageError> {
    let page = state
        .store
        .list_integrations(scope, &kpi_core::page::PageRequest::first(100))
        .await?;
    Ok(page
        .items
        .iter()
        .filter(|i| i.status() != IntegrationStatus::Disconnected)
        .map(|i| {
            let provider = state
                .registry
                .descriptor(i.provider)
                .map_or("", |d| d.display_name);
            let account = i
                .choice_names
                .values()
                .next()
                .cloned()
                .unwrap_or_else(|| i.display_name.clone());
            IntegrationChoice {
                id: i.id.to_string(),
                label: format!("{provider}: {account}"),
                provider: i.provider.to_string(),
            }
        })
        .collect())
}

pub async fn alerts_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, PageError> {
    let (ws, scope) = workspace_param(&viewer, params.workspace.as_deref(), "/settings/alerts")?;
    let now = state.clock.now();
    let integrations = integration_choices(&state, &scope).await?;
    let mut rules = Vec::new();
    for r in state.store.list_alerts(&scope).await? {
        rules.push(rule_row(&state, &scope, r, &integrations, now).await?);
    }
    let metrics = state
        .registry
        .entries()
        .flat_map(|e| {
            let provider = e.descriptor.display_name;
            e.descriptor.metrics.iter().map(move |m| MetricChoice {
                name: m.metric.to_string(),
                label: format!("{provider}: {}", metric_words(m.metric.as_str())),
                provider,
            })
        })
        .collect();
    let context = AlertsContext {
        frame: Frame::new(&viewer, "Alerts", "alerts", Some(&ws)),
        rules,
        metrics,
        integrations,
        me: viewer.principal.email.clone(),
    };
    viewer.respond(&state, "alerts.html", context)
}

#[derive(Serialize)]
struct Option_ {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Serialize)]
struct ReportsContext {
    frame: Frame,
    enabled: bool,
    frequencies: Vec<Option_>,
    weekdays: Vec<Option_>,
    hours: Vec<Option_>,
    time_zone: String,
    recipients: String,
    metrics: Vec<Option_>,
    next_run: Option<When>,
    me: Option<String>,
}

pub async fn reports_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, PageError> {
    let (ws, scope) = workspace_param(&viewer, params.workspace.as_deref(), "/settings/reports")?;
    let now = state.clock.now();
    let settings = ReportSettings::load(&*state.store, &scope)
        .await?
        .unwrap_or_else(ReportSettings::off);
    let next_run = if settings.enabled {
        settings.next_run(now).ok().flatten()
    } else {
        None
    };
    let options = |items: Vec<(String, String)>, current: &str| {
        items
            .into_iter()
            .map(|(value, label)| Option_ {
                selected: value == current,
                value,
                label,
            })
            .collect::<Vec<_>>()
    };
    let frequency = match settings.frequency {
        Frequency::Daily => "daily",
        Frequency::Weekly => "weekly",
        Frequency::Monthly => "monthly",
    };
    let weekday = settings.weekday.unwrap_or(chrono::Weekday::Mon).to_string();
    let hour = settings.hour.unwrap_or(8).to_string();
    let context = ReportsContext {
        frame: Frame::new(&viewer, "Reports", "reports", Some(&ws)),
        enabled: settings.enabled,
        frequencies: options(
            vec![
                ("daily".into(), "Every day".into()),
                ("weekly".into(), "Every week".into()),
                ("monthly".into(), "Every month, on the 1st".into()),
            ],
            frequency,
        ),
        weekdays: options(
            [
                ("Mon", "Monday"),
                ("Tue", "Tuesday"),
                ("Wed", "Wednesday"),
                ("Thu", "Thursday"),
                ("Fri", "Friday"),
                ("Sat", "Saturday"),
                ("Sun", "Sunday"),
            ]
            .iter()
            .map(|(v, l)| ((*v).to_owned(), (*l).to_owned()))
            .collect(),
            &weekday,
        ),
        hours: options(
            (0..24)
                .map(|h| (h.to_string(), format!("{h:02}:00")))
                .collect(),
            &hour,
        ),
        time_zone: settings.time_zone.clone().unwrap_or_else(|| "UTC".into()),
        recipients: settings.recipients.join("\n"),
        metrics: state
            .registry
            .entries()
            .flat_map(|e| {
                let provider = e.descriptor.display_name;
                let chosen = &settings.metrics;
                e.descriptor.metrics.iter().map(move |m| Option_ {
                    value: m.metric.to_string(),
                    label: format!("{provider}: {}", metric_words(m.metric.as_str())),
                    selected: chosen.contains(&m.metric),
                })
            })
            .collect(),
        next_run: When::maybe(next_run, now),
        me: viewer.principal.email.clone(),
    };
    viewer.respond(&state, "reports.html", context)
}
