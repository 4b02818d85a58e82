//! `/admin/sync-jobs` and `/admin/sync-jobs/{job}`: the operators' dashboard.
//! Jobs by filter (status, provider, workspace, time), one job's detail with
//! retry, queue and dead-letter depths with redrive, and the last 24 hours as
//! charts. Platform admins only; anyone else gets the same 404 as for a page
//! that does not exist.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::{DateTime, Duration, Timelike, Utc};
use kpi_app::AppState;
use kpi_core::page::{Cursor, PageRequest};
use kpi_core::ports::store::JobFilter;
use kpi_core::scope::AdminScope;
use kpi_core::{JobId, JobStatus, Provider, SyncJob, WorkspaceId};
use minijinja::Value;
use serde::{Deserialize, Serialize};

use crate::chart::{self, Series};
use crate::describe::When;
use crate::page::{Frame, PageError, Viewer};

/// Jobs a chart reads per status (the last 24 hours of a busy deployment are
/// summarised from at most this many of each).
const CHART_JOBS_PER_STATUS: usize = 2_000;

const PAGE_SIZE: u32 = 50;

#[derive(Deserialize)]
pub struct Params {
    status: Option<String>,
    provider: Option<String>,
    workspace: Option<String>,
    /// `1h`, `24h`, `7d`, `30d` or `all`.
    since: Option<String>,
    cursor: Option<String>,
}

#[derive(Serialize)]
struct Choice {
    value: String,
    label: String,
    selected: bool,
}

#[derive(Serialize)]
struct JobRow {
    id: String,
    workspace: String,
    provider: String,
    trigger: String,
    status: &'static str,
    attempts: u32,
    window: Option<String>,
    updated: When,
    error: Option<String>,
    rows_written: u64,
    retryable: bool,
}

#[derive(Serialize)]
struct QueueRow {
    provider: String,
    provider_name: &'static str,
    visible: u64,
    in_flight: u64,
    delayed: u64,
    dlq_visible: u64,
    dlq_in_flight: u64,
    dead_jobs: String,
}

#[derive(Serialize)]
struct JobsContext {
    frame: Frame,
    statuses: Vec<Choice>,
    providers: Vec<Choice>,
    periods: Vec<Choice>,
    workspace: String,
    error: Option<String>,
    jobs: Vec<JobRow>,
    next: Option<String>,
    queues: Vec<QueueRow>,
    outcomes_chart: Value,
    durations_chart: Value,
    outcome_legend: Vec<(&'static str, &'static str)>,
    counts_24h: Vec<(&'static str, usize)>,
}

fn admin(viewer: &Viewer) -> Result<AdminScope, PageError> {
    viewer
        .principal
        .admin_scope()
        .map_err(|_| PageError::NotFound)
}

fn row(j: &SyncJob, now: DateTime<Utc>) -> JobRow {
    let status = j.status();
    JobRow {
        id: j.id.to_string(),
        workspace: j.workspace.to_string(),
        provider: j.provider.to_string(),
        trigger: format!("{:?}", j.trigger).to_lowercase(),
        status: status.as_str(),
        attempts: j.attempts,
        window: j.window.map(|w| format!("{} to {}", w.from, w.to)),
        updated: When::of(j.updated_at, now),
        error: j.last_error.as_ref().map(|e| e.message.clone()),
        rows_written: j.rows_written,
        retryable: matches!(status, JobStatus::Dead | JobStatus::Failed),
    }
}

pub async fn jobs_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Query(params): Query<Params>,
) -> Result<Response, PageError> {
    let admin = admin(&viewer)?;
    let now = state.clock.now();
    let mut error = None;
    let status = match params.status.as_deref().filter(|s| !s.is_empty()) {
        None => JobStatus::Dead,
        Some(s) => JobStatus::parse(s).unwrap_or_else(|_| {
            error = Some(format!(
                "There is no job status {s:.40}; showing dead jobs."
            ));
            JobStatus::Dead
        }),
    };
    let provider = match params.provider.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(p) => match state.registry.parse("provider", p) {
            Ok(p) => Some(p),
            Err(_) => {
                error = Some(format!("There is no provider {p:.40}; showing all."));
                None
            }
        },
    };
    let workspace_raw = params.workspace.clone().unwrap_or_default();
    let workspace = match workspace_raw.trim() {
        "" => None,
        w => match WorkspaceId::parse(w) {
            Ok(w) => Some(w),
            Err(_) => {
                error = Some("That is not a workspace id; showing all workspaces.".into());
                None
            }
        },
    };
    let period = params.since.as_deref().unwrap_or("7d");
    let since = match period {
        "1h" => Some(now - Duration::hours(1)),
        "24h" => Some(now - Duration::hours(24)),
        "30d" => Some(now - Duration::days(30)),
        "all" => None,
        _ => Some(now - Duration::days(7)),
    };
    let filter = JobFilter {
        status,
        provider,
        workspace,
        since,
        until: None,
    };
    let page = match params.cursor.clone().filter(|c| !c.is_empty()) {
        Some(c) => PageRequest::after(PAGE_SIZE, Cursor::from_token(c)),
        None => PageRequest::first(PAGE_SIZE),
    };
    let (jobs, next) = match state
        .store
        .list_jobs_by_status(&admin, &filter, &page)
        .await
    {
        Ok(result) => (
            result.items.iter().map(|j| row(j, now)).collect(),
            result
                .next
                .map(|c| next_link(status, provider, &workspace_raw, period, c.as_token())),
        ),
        Err(e) if e.is_validation() => {
            error = Some("That page link is no longer valid; showing the first page.".into());
            let result = state
                .store
                .list_jobs_by_status(&admin, &filter, &PageRequest::first(PAGE_SIZE))
                .await?;
            (result.items.iter().map(|j| row(j, now)).collect(), None)
        }
        Err(e) => return Err(e.into()),
    };

    let queues = queue_rows(&state).await?;
    let (outcomes_chart, durations_chart, counts_24h) = charts(&state, &admin, now).await?;

    let context = JobsContext {
        frame: Frame::new(&viewer, "Sync jobs", "admin", None),
        statuses: JobStatus::ALL
            .iter()
            .map(|s| Choice {
                value: s.as_str().into(),
                label: s.as_str().into(),
                selected: *s == status,
            })
            .collect(),
        providers: std::iter::once(Choice {
            value: String::new(),
            label: "all".into(),
            selected: provider.is_none(),
        })
        .chain(state.registry.entries().map(|e| Choice {
            value: e.descriptor.id.to_string(),
            label: e.descriptor.display_name.into(),
            selected: provider == Some(e.descriptor.id),
        }))
        .collect(),
        periods: [
            ("1h", "last hour"),
            ("24h", "last 24 hours"),
            ("7d", "last 7 days"),
            ("30d", "last 30 days"),
            ("all", "any time"),
        ]
        .iter()
        .map(|(v, l)| Choice {
            value: (*v).into(),
            label: (*l).into(),
            selected: *v == period,
        })
        .collect(),
        workspace: workspace_raw,
        error,
        jobs,
        next,
        queues,
        outcomes_chart,
        durations_chart,
        outcome_legend: OUTCOMES.iter().map(|(s, c)| (s.as_str(), *c)).collect(),
        counts_24h,
    };
    viewer.respond(&state, "admin_jobs.html", context)
}

fn next_link(
    status: JobStatus,
    provider: Option<Provider>,
    workspace: &str,
    period: &str,
    cursor: &str,
) -> String {
    let mut url = url::Url::parse("http://x/admin/sync-jobs").expect("static URL");
    {
        let mut q = url.query_pairs_mut();
        q.append_pair("status", status.as_str());
        if let Some(p) = provider {
            q.append_pair("provider", p.as_str());
        }
        if !workspace.is_empty() {
            q.append_pair("workspace", workspace);
        }
        q.append_pair("since", period);
        q.append_pair("cursor", cursor);
    }
    format!("{}?{}", url.path(), url.query().unwrap_or_default())
}

async fn queue_rows(state: &AppState) -> Result<Vec<QueueRow>, PageError> {
    let depths = kpi_sync::admin::queue_depths(&*state.queue, state.registry.providers()).await?;
    let mut out = Vec::new();
    for d in depths {
        let provider = d.provider;
        out.push(QueueRow {
            provider: provider.to_string(),
            provider_name: state.registry.descriptor(provider)?.display_name,
            visible: d.work.visible,
            in_flight: d.work.in_flight,
            delayed: d.work.delayed,
            dlq_visible: d.dead.visible,
            dlq_in_flight: d.dead.in_flight,
            dead_jobs: format!("/admin/sync-jobs?status=dead&provider={provider}&since=all"),
        });
    }
    Ok(out)
}

/// Outcomes drawn per hour, with their colours (contrast on white ≥ 3:1).
const OUTCOMES: [(JobStatus, &str); 4] = [
    (JobStatus::Succeeded, "#15803d"),
    (JobStatus::Retrying, "#b45309"),
    (JobStatus::Failed, "#b91c1c"),
    (JobStatus::Dead, "#111827"),
];

async fn jobs_since(
    state: &AppState,
    admin: &AdminScope,
    status: JobStatus,
    since: DateTime<Utc>,
) -> Result<Vec<SyncJob>, PageError> {
    let filter = JobFilter {
        status,
        provider: None,
        workspace: None,
        since: Some(since),
        until: None,
    };
    let mut out = Vec::new();
    let mut page = PageRequest::first(PageRequest::MAX_LIMIT);
    loop {
        let result = state
            .store
            .list_jobs_by_status(admin, &filter, &page)
            .await?;
        out.extend(result.items);
        match result.next {
            Some(c) if out.len() < CHART_JOBS_PER_STATUS => {
                page = PageRequest::after(PageRequest::MAX_LIMIT, c)
            }
            _ => break,
        }
    }
    Ok(out)
}

/// The value at quantile `q` of sorted `values` (nearest rank).
fn quantile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

async fn charts(
    state: &AppState,
    admin: &AdminScope,
    now: DateTime<Utc>,
) -> Result<(Value, Value, Vec<(&'static str, usize)>), PageError> {
    let start = (now - Duration::hours(23))
        .with_minute(0)
        .and_then(|t| t.with_second(0))
        .and_then(|t| t.with_nanosecond(0))
        .unwrap_or(now - Duration::hours(23));
    let labels: Vec<String> = (0..24)
        .map(|h| (start + Duration::hours(h)).format("%H:00").to_string())
        .collect();
    let mut series = Vec::new();
    let mut counts = Vec::new();
    let mut finished: Vec<SyncJob> = Vec::new();
    for (status, colour) in OUTCOMES {
        let jobs = jobs_since(state, admin, status, start).await?;
        let mut values = vec![0u64; 24];
        for j in &jobs {
            let hour = (j.updated_at - start).num_hours();
            if (0..24).contains(&hour) {
                values[hour as usize] += 1;
            }
        }
        counts.push((status.as_str(), jobs.len()));
        if matches!(status, JobStatus::Succeeded | JobStatus::Failed) {
            finished.extend(jobs);
        }
        series.push(Series {
            name: status.as_str(),
            colour,
            values,
        });
    }
    let total: usize = counts.iter().map(|c| c.1).sum();
    let outcomes = chart::stacked_bars(
        &labels,
        &series,
        &format!("Jobs by outcome per hour, last 24 hours: {total} in all"),
    );
    let mut rows = Vec::new();
    for entry in state.registry.entries() {
        let p = entry.descriptor.id;
        let mut durations: Vec<f64> = finished
            .iter()
            .filter(|j| j.provider == p)
            .filter_map(|j| match (j.started_at, j.finished_at) {
                (Some(s), Some(f)) => Some((f - s).num_milliseconds() as f64 / 1000.0),
                _ => None,
            })
            .collect();
        durations.sort_by(f64::total_cmp);
        rows.push((
            entry.descriptor.display_name.to_owned(),
            quantile(&durations, 0.5),
            quantile(&durations, 0.95),
        ));
    }
    let durations = chart::duration_bars(
        &rows,
        "Sync duration per provider, last 24 hours: p50 and p95",
    );
    Ok((outcomes, durations, counts))
}

#[derive(Serialize)]
struct JobContext {
    frame: Frame,
    job: JobRow,
    integration: String,
    created: When,
    started: Option<When>,
    finished: Option<When>,
    queue_wait: Option<String>,
    run_time: Option<String>,
    provider_calls: u32,
    sends: u32,
    quota_remaining: Option<String>,
    error_code: Option<String>,
    error_at: Option<When>,
    api: String,
}

pub async fn job_page(
    State(state): State<AppState>,
    viewer: Viewer,
    Path(job): Path<String>,
) -> Result<Response, PageError> {
    let admin = admin(&viewer)?;
    let id = JobId::parse(&job).map_err(|_| PageError::NotFound)?;
    let j = state.store.find_job(&admin, id).await?;
    let now = state.clock.now();
    let secs = |a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>| match (a, b) {
        (Some(a), Some(b)) => Some(chart::seconds(
            (b - a).num_milliseconds().max(0) as f64 / 1000.0,
        )),
        _ => None,
    };
    let context = JobContext {
        frame: Frame::new(&viewer, "Sync job", "admin", None),
        integration: j.integration.to_string(),
        created: When::of(j.created_at, now),
        started: When::maybe(j.started_at, now),
        finished: When::maybe(j.finished_at, now),
        queue_wait: secs(Some(j.created_at), j.started_at),
        run_time: secs(j.started_at, j.finished_at),
        provider_calls: j.provider_calls,
        sends: j.sends,
        quota_remaining: j
            .quota_remaining
            .map(|q| format!("{}%", (q * rust_decimal::Decimal::from(100)).round_dp(1))),
        error_code: j.last_error.as_ref().map(|e| e.code.clone()),
        error_at: j.last_error.as_ref().map(|e| When::of(e.at, now)),
        api: format!("/v1/admin/sync-jobs/{}", j.id),
        job: row(&j, now),
    };
    viewer.respond(&state, "admin_job.html", context)
}

#[cfg(test)]
mod tests {
    use super::quantile;

    #[test]
    fn nearest_rank_quantiles() {
        let v: Vec<f64> = (1..=20).map(f64::from).collect();
        assert_eq!(quantile(&v, 0.5), Some(10.0));
        assert_eq!(quantile(&v, 0.95), Some(19.0));
        assert_eq!(quantile(&[], 0.5), None);
        assert_eq!(quantile(&[3.0], 0.95), Some(3.0));
    }
}
