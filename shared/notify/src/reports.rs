//! Scheduled KPI reports: a workspace's settings (when, in which time zone,
//! to whom, which metrics), and the run that sends each due report once per
//! period — with the value, the previous period's and the change for each
//! metric, and a note when an integration's numbers may be incomplete.

use std::sync::Arc;

use chrono::{DateTime, Utc, Weekday};
use chrono_tz::Tz;
use kpi_core::aggregate::aggregate;
use kpi_core::kpi::DateRange;
use kpi_core::metric::Unit;
use kpi_core::page::PageRequest;
use kpi_core::ports::store::KpiQuery;
use kpi_core::{Error, IntegrationStatus, Metric, Registry, Result, WorkspaceId, WorkspaceScope};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use url::Url;

use crate::messages::{self, Message, ReportRow};
use crate::outbox::{Delivery, Outbox};
use crate::schedule::{Frequency, next_run, periods};

/// The workspace setting that holds [`ReportSettings`].
pub const SETTING: &str = "reports";

/// The headline KPIs a report shows when the settings name none.
pub const HEADLINE: [&str; 8] = [
    "ga4.sessions",
    "ga4.total_users",
    "ga4.key_events",
    "ga4.total_revenue",
    "meta.spend",
    "meta.purchases",
    "meta.roas",
    "resend.delivery_rate",
];

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReportSettings {
    pub enabled: bool,
    pub frequency: Frequency,
    /// Weekly reports: the day they go out (default Monday).
    #[serde(default)]
    pub weekday: Option<Weekday>,
    /// Local hour, 0–23 (default 8).
    #[serde(default)]
    pub hour: Option<u32>,
    /// IANA name such as `Europe/Berlin` (default `UTC`).
    #[serde(default)]
    pub time_zone: Option<String>,
    pub recipients: Vec<String>,
    /// Metric names; empty: the headline KPIs of the connected providers.
    #[serde(default)]
    pub metrics: Vec<Metric>,
}

impl ReportSettings {
    /// What a workspace has before it sets a schedule: no reports (weekly,
    /// once switched on).
    pub fn off() -> Self {
        Self {
            enabled: false,
            frequency: Frequency::Weekly,
            weekday: None,
            hour: None,
            time_zone: None,
            recipients: Vec::new(),
            metrics: Vec::new(),
        }
    }

    pub fn tz(&self) -> Result<Tz> {
        self.time_zone
            .as_deref()
            .unwrap_or("UTC")
            .parse::<Tz>()
            .map_err(|_| Error::validation("time_zone", "an IANA time zone such as Europe/Berlin"))
    }

    /// Checks and normalises what a user sent.
    pub fn checked(mut self, registry: &Registry) -> Result<Self> {
        self.tz()?;
        if self.hour.is_some_and(|h| h > 23) {
            return Err(Error::validation("hour", "an hour from 0 to 23"));
        }
        let recipients = crate::recipients::NotificationSettings {
            recipients: std::mem::take(&mut self.recipients),
        }
        .checked()?
        .recipients;
        if self.enabled && recipients.is_empty() {
            return Err(Error::validation("recipients", "at least one address"));
        }
        self.recipients = recipients;
        if self.metrics.len() > 30 {
            return Err(Error::validation("metrics", "at most 30 metrics"));
        }
        for (i, m) in self.metrics.iter().enumerate() {
            registry
                .metric(m.as_str())
                .map_err(|_| Error::validation(format!("metrics[{i}]"), "unknown metric"))?;
        }
        Ok(self)
    }

    /// The next send after `after`, when enabled.
    pub fn next_run(&self, after: DateTime<Utc>) -> Result<Option<DateTime<Utc>>> {
        if !self.enabled {
            return Ok(None);
        }
        Ok(Some(next_run(
            self.frequency,
            self.weekday.unwrap_or(Weekday::Mon),
            self.hour.unwrap_or(8),
            self.tz()?,
            after,
        )))
    }

    pub async fn load(
        store: &dyn kpi_core::ports::Store,
        scope: &WorkspaceScope,
    ) -> Result<Option<Self>> {
        store
            .get_workspace_setting(scope, SETTING)
            .await?
            .map(|v| {
                serde_json::from_value(v).map_err(|e| {
                    Error::internal("stored report settings are unreadable").with_source(e)
                })
            })
            .transpose()
    }

    /// Saves the settings and (re)schedules the next report.
    pub async fn save(
        &self,
        store: &dyn kpi_core::ports::Store,
        scope: &WorkspaceScope,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>> {
        let value = serde_json::to_value(self)
            .map_err(|e| Error::internal("report settings did not serialize").with_source(e))?;
        store.put_workspace_setting(scope, SETTING, &value).await?;
        let next = self.next_run(now)?;
        store.schedule_report(scope, next).await?;
        Ok(next)
    }
}

/// Due reports read per store query.
const PAGE: u32 = 200;

pub struct ReportSender {
    pub outbox: Arc<Outbox>,
    pub registry: Arc<Registry>,
    pub public_url: Url,
}

fn percent_change(now: Option<Decimal>, before: Option<Decimal>) -> (String, String) {
    match (now, before) {
        (Some(n), Some(b)) if !b.is_zero() => {
            let c = (n - b) / b.abs() * Decimal::from(100);
            let direction = if c > Decimal::ZERO {
                "up"
            } else if c < Decimal::ZERO {
                "down"
            } else {
                "flat"
            };
            let sign = if c > Decimal::ZERO {
                "+"
            } else if c < Decimal::ZERO {
                "−"
            } else {
                ""
            };
            (format!("{sign}{}%", c.abs().round_dp(1)), direction.into())
        }
        (Some(_), Some(_)) | (Some(_), None) => ("new".into(), "flat".into()),
        _ => ("—".into(), "flat".into()),
    }
}

fn shown(v: Option<Decimal>, unit: Unit) -> String {
    match v {
        None => "—".into(),
        Some(v) => match unit {
            Unit::Ratio => v.round_dp(4).normalize().to_string(),
            Unit::Currency => v.round_dp(2).to_string(),
            _ => v.round_dp(2).normalize().to_string(),
        },
    }
}

/// What one page of due reports came to.
#[derive(Default)]
struct PageRun {
    sent: usize,
    /// One stays due (a transient failure, or the time ran out): no next page
    /// in this tick, since it would hold the same report again.
    stopped: bool,
}

impl ReportSender {
    /// Sends every report due at `now` (once per period) and schedules the
    /// next, until `until`: a report not begun by then, or cut short by it,
    /// stays due, and the next tick sends it under the same idempotency key
    /// (so Resend sends a cut-short one once).
    pub async fn run_due(
        &self,
        now: DateTime<Utc>,
        until: Option<tokio::time::Instant>,
    ) -> Result<usize> {
        let mut sent = 0;
        // Pages of 200 until fewer come back; each one sent or failed for good
        // is rescheduled past `now`, so the next page holds the next ones.
        for _ in 0..50 {
            let due = self.outbox.store.due_reports(now, PAGE).await?;
            let full = due.len() as u32 == PAGE;
            let page = self.run_page(now, due, until).await?;
            sent += page.sent;
            if !full || page.stopped {
                break;
            }
        }
        Ok(sent)
    }

    /// One page of due reports.
    async fn run_page(
        &self,
        now: DateTime<Utc>,
        due: Vec<(WorkspaceId, DateTime<Utc>)>,
        until: Option<tokio::time::Instant>,
    ) -> Result<PageRun> {
        let mut run = PageRun::default();
        for (workspace, at) in due {
            let scope =
                WorkspaceScope::for_system(workspace.clone(), "a scheduled report that is due");
            let send = self.send(&scope, &workspace, at);
            let result = match until {
                Some(until) => match tokio::time::timeout_at(until, send).await {
                    Ok(result) => result,
                    Err(_) => {
                        tracing::warn!(%workspace, "the tick's time ran out; the report stays due for the next one");
                        run.stopped = true;
                        return Ok(run);
                    }
                },
                None => send.await,
            };
            match result {
                Ok(Delivery::Sent(_)) => run.sent += 1,
                Ok(Delivery::NotSent(why)) => tracing::warn!(%workspace, why, "report not emailed"),
                Err(e)
                    if matches!(
                        e.kind(),
                        kpi_core::ErrorKind::Transient | kpi_core::ErrorKind::RateLimited { .. }
                    ) =>
                {
                    // Still due: the next tick tries again under the same key.
                    tracing::warn!(%workspace, error = %e.log_chain(), "report not sent yet");
                    run.stopped = true;
                    continue;
                }
                Err(e) => tracing::error!(%workspace, error = %e.log_chain(), "report failed"),
            }
            let next = match ReportSettings::load(&*self.outbox.store, &scope).await? {
                Some(s) => s.next_run(at.max(now))?,
                None => None,
            };
            self.outbox.store.schedule_report(&scope, next).await?;
        }
        Ok(run)
    }

    /// Renders and sends the report of the period before `at`.
    pub async fn send(
        &self,
        scope: &WorkspaceScope,
        workspace: &WorkspaceId,
        at: DateTime<Utc>,
    ) -> Result<Delivery> {
        let Some(settings) = ReportSettings::load(&*self.outbox.store, scope).await? else {
            return Ok(Delivery::NotSent("no report settings".into()));
        };
        let tz = settings.tz()?;
        let (period, previous) = periods(settings.frequency, tz, at);
        let message = self.build(scope, &settings, period, previous).await?;
        let key = format!("report/{workspace}/{}..{}", period.from, period.to);
        self.outbox
            .deliver(scope, &message, &key, &settings.recipients, false)
            .await
    }

    /// The report as it would go out now, sent to `to` only. Returns the
    /// delivery and the subject.
    pub async fn preview(
        &self,
        scope: &WorkspaceScope,
        settings: &ReportSettings,
        to: &str,
        now: DateTime<Utc>,
    ) -> Result<(Delivery, String)> {
        let (period, previous) = periods(settings.frequency, settings.tz()?, now);
        let message = self.build(scope, settings, period, previous).await?;
        let subject = message.render()?.subject;
        let key = format!(
            "preview/report/{}/{}",
            scope.workspace(),
            now.timestamp_millis()
        );
        let delivery = self
            .outbox
            .deliver_to_caller(scope, &message, &key, to)
            .await?;
        Ok((delivery, subject))
    }

    async fn build(
        &self,
        scope: &WorkspaceScope,
        settings: &ReportSettings,
        period: DateRange,
        previous: DateRange,
    ) -> Result<Message> {
        let store = &self.outbox.store;
        let mut integrations = Vec::new();
        let mut page = PageRequest::first(100);
        loop {
            let found = store.list_integrations(scope, &page).await?;
            integrations.extend(found.items);
            match found.next {
                Some(c) => page = PageRequest::after(100, c),
                None => break,
            }
        }
        let live: Vec<_> = integrations
            .iter()
            .filter(|i| i.status() != IntegrationStatus::Disconnected && i.credentials.is_some())
            .collect();
        let wanted: Vec<Metric> = if settings.metrics.is_empty() {
            HEADLINE.iter().map(|m| Metric::new(m)).collect()
        } else {
            settings.metrics.clone()
        };
        let mut rows = Vec::new();
        let mut notes = Vec::new();
        for i in &live {
            let Ok(descriptor) = self.registry.descriptor(i.provider) else {
                continue;
            };
            let specs: Vec<_> = descriptor
                .metrics
                .iter()
                .filter(|m| wanted.contains(&m.metric))
                .copied()
                .collect();
            if specs.is_empty() {
                continue;
            }
            if matches!(
                i.status(),
                IntegrationStatus::Error | IntegrationStatus::NeedsReauth
            ) {
                notes.push(format!(
                    "{} is not syncing ({}): its numbers may be incomplete.",
                    i.display_name,
                    i.status()
                ));
            }
            for spec in specs {
                let mut points = Vec::new();
                for metric in spec.inputs() {
                    points.extend(
                        store
                            .query_kpis(
                                scope,
                                &KpiQuery {
                                    metric,
                                    from: previous.from,
                                    to: period.to,
                                    integration: Some(i.id),
                                },
                            )
                            .await?,
                    );
                }
                let now = aggregate(&spec, &points, &period);
                let before = aggregate(&spec, &points, &previous);
                let currency = points
                    .iter()
                    .find_map(|p| p.currency.as_ref())
                    .map(|c| format!(" ({})", c.as_str()))
                    .unwrap_or_default();
                let (change, direction) = percent_change(now, before);
                rows.push((
                    spec.unit,
                    now,
                    ReportRow {
                        metric_label: format!("{} — {}{currency}", spec.metric, i.display_name),
                        value: shown(now, spec.unit),
                        change,
                        direction,
                        bar_percent: 0,
                    },
                ));
            }
        }
        // Bars compare rows of the same unit.
        let mut out = Vec::with_capacity(rows.len());
        for (unit, value, mut row) in rows.iter().cloned() {
            let largest = rows
                .iter()
                .filter(|(u, _, _)| *u == unit)
                .filter_map(|(_, v, _)| *v)
                .max()
                .unwrap_or(Decimal::ZERO);
            if let (Some(v), false) = (value, largest.is_zero()) {
                let pct = (v / largest * Decimal::from(100)).round();
                row.bar_percent = u8::try_from(pct.mantissa().clamp(0, 100)).unwrap_or(0);
            }
            out.push(row);
        }
        let label = |r: &DateRange| {
            use chrono::Datelike as _;
            let to = r.to.format("%-d %B %Y");
            if r.from == r.to {
                to.to_string()
            } else if (r.from.year(), r.from.month()) == (r.to.year(), r.to.month()) {
                format!("{} – {to}", r.from.format("%-d"))
            } else if r.from.year() == r.to.year() {
                format!("{} – {to}", r.from.format("%-d %B"))
            } else {
                format!("{} – {to}", r.from.format("%-d %B %Y"))
            }
        };
        let mut settings_url = self.public_url.clone();
        settings_url.set_path("/settings/integrations");
        settings_url
            .query_pairs_mut()
            .clear()
            .append_pair("workspace", scope.workspace().as_str());
        Ok(Message::KpiReport(messages::KpiReport {
            workspace: scope.workspace().to_string(),
            period_label: label(&period),
            previous_label: label(&previous),
            rows: out,
            notes,
            settings_url: settings_url.to_string(),
        }))
    }
}

#[async_trait::async_trait]
impl kpi_sync::DueWork for ReportSender {
    async fn run_due(
        &self,
        now: DateTime<Utc>,
        until: Option<tokio::time::Instant>,
    ) -> Result<usize> {
        ReportSender::run_due(self, now, until).await
    }
}
