//! Sync requests: the manual-sync rate limits, the requested window and queueing a job.

use chrono::Duration;
use kpi_core::job::JobTrigger;
use kpi_core::kpi::DateRange;
use kpi_core::ports::QueueName;
use kpi_core::ports::provider::ProviderDescriptor;
use kpi_core::{Error, Integration, IntegrationId, JobId, Result, SyncJob, WorkspaceScope};

use crate::state::AppState;

/// Longest window one manual sync may ask for.
pub const MAX_SYNC_DAYS: i64 = 400;

/// Manual syncs one workspace may ask for per hour.
pub const MANUAL_SYNCS_PER_HOUR: u32 = 30;

/// The job queued or running for the integration, if any.
pub(crate) async fn active_job(
    state: &AppState,
    scope: &WorkspaceScope,
    integration: &Integration,
) -> Result<Option<SyncJob>> {
    let Some(id) = integration.active_job else {
        return Ok(None);
    };
    match state.store.get_job(scope, id).await {
        Ok(job) if !job.status().is_final() => Ok(Some(job)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A fixed hourly window of [`MANUAL_SYNCS_PER_HOUR`] slots per workspace,
/// kept in the store so every instance counts the same.
async fn take_manual_sync_slot(state: &AppState, scope: &WorkspaceScope) -> Result<()> {
    let now = state.clock.now();
    let hour = now.timestamp() / 3600;
    let window_end = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap_or(now);
    for slot in 0..MANUAL_SYNCS_PER_HOUR {
        let key = format!("manual-sync:{}:{hour}:{slot}", scope.workspace());
        if state.store.first_seen(&key, window_end, now).await? {
            return Ok(());
        }
    }
    let wait = (window_end - now).to_std().unwrap_or_default();
    Err(Error::rate_limited(
        Some(wait.max(std::time::Duration::from_secs(1))),
        format!(
            "this workspace asked for {MANUAL_SYNCS_PER_HOUR} syncs this hour; try again after the hour"
        ),
    ))
}

/// One of `per_hour` slots of a fixed hourly window under `name` (kept in
/// the store, so every instance counts the same), or 429 with the wait.
pub async fn take_hourly_slot(
    state: &AppState,
    name: &str,
    per_hour: u32,
    what: &str,
) -> Result<()> {
    let now = state.clock.now();
    let hour = now.timestamp() / 3600;
    let window_end = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap_or(now);
    for slot in 0..per_hour {
        let key = format!("{name}:{hour}:{slot}");
        if state.store.first_seen(&key, window_end, now).await? {
            return Ok(());
        }
    }
    let wait = (window_end - now).to_std().unwrap_or_default();
    Err(Error::rate_limited(
        Some(wait.max(std::time::Duration::from_secs(1))),
        format!("at most {per_hour} {what} an hour; try again after the hour"),
    ))
}

/// The window a user asked for, checked against what the provider keeps.
fn requested_window(
    descriptor: &ProviderDescriptor,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    today: chrono::NaiveDate,
) -> Result<Option<DateRange>> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to);
    let range = DateRange::new(from, to)?;
    if from > today + Duration::days(1) {
        return Err(Error::validation("from", "cannot sync days in the future"));
    }
    let earliest = today
        .checked_sub_months(chrono::Months::new(descriptor.history_months))
        .unwrap_or(today);
    if from < earliest {
        return Err(Error::validation(
            "from",
            format!(
                "{} keeps {} months of data: from must be {earliest} or later",
                descriptor.display_name, descriptor.history_months
            ),
        ));
    }
    if range.days() > MAX_SYNC_DAYS {
        return Err(Error::validation(
            "from",
            format!("at most {MAX_SYNC_DAYS} days per sync"),
        ));
    }
    Ok(Some(range))
}

/// Creates a manual (or, with a window, backfill) job and queues it; while a
/// job of the integration is queued or running, that job is the answer
/// (`true`: it already existed) and nothing new is made.
pub async fn request_sync(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    request_id: Option<&str>,
) -> Result<(SyncJob, bool)> {
    let mut limited = false;
    for _ in 0..3 {
        let mut integration = state.store.get_integration(scope, id).await?;
        if !integration.status().accepts_manual_sync() {
            return Err(Error::conflict(format!(
                "the integration is {}; only connected integrations (or ones in error) sync",
                integration.status()
            )));
        }
        let descriptor = state.registry.descriptor(integration.provider)?;
        if !state.queue.serves(QueueName::Work(integration.provider)) {
            return Err(Error::conflict(format!(
                "{} does not sync in this deployment (no worker is set up for it)",
                descriptor.display_name
            )));
        }
        let now = state.clock.now();
        // Bad input is refused even while a job runs.
        let window = requested_window(descriptor, from, to, now.date_naive())?;
        if let Some(job) = active_job(state, scope, &integration).await? {
            return Ok((job, true));
        }
        if !limited {
            take_manual_sync_slot(state, scope).await?;
            limited = true;
        }
        let trigger = if window.is_some() {
            JobTrigger::Backfill
        } else {
            JobTrigger::Manual
        };
        if let Some(job) =
            queue_job(state, scope, &mut integration, trigger, window, request_id).await?
        {
            return Ok((job, false));
        }
    }
    Err(Error::conflict(
        "the integration is changing right now; try again",
    ))
}

/// Makes a job for `integration` and queues it. In one step the job is
/// written with the integration naming it as its active job
/// (compare-and-swap), so two callers at once make one job: the loser gets
/// `None` and reads again.
pub(crate) async fn queue_job(
    state: &AppState,
    scope: &WorkspaceScope,
    integration: &mut Integration,
    trigger: JobTrigger,
    window: Option<DateRange>,
    request_id: Option<&str>,
) -> Result<Option<SyncJob>> {
    let now = state.clock.now();
    let job = SyncJob::new(
        JobId::new_time_ordered(),
        scope.workspace().clone(),
        integration.id,
        integration.provider,
        trigger,
        window,
        now,
    );
    integration.active_job = Some(job.id);
    integration.updated_at = now;
    match state
        .store
        .create_job_with_integration(scope, &job, integration)
        .await
    {
        Ok(_) => {
            kpi_sync::enqueue(
                &*state.store,
                &*state.queue,
                std::slice::from_ref(&job),
                request_id,
                now,
            )
            .await?;
            Ok(Some(job))
        }
        Err(e) if e.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}
