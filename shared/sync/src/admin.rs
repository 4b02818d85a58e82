//! Operators' levers: retry one job, redrive a provider's dead jobs.
//!
//! The DLQ handler consumes dead-lettered messages (it records the job as dead
//! and sends the notice), so the job store, not the DLQ, is the durable list of
//! dead work. Redrive therefore moves any messages still waiting in the DLQ back
//! to the work queue and queues the provider's dead jobs again — one per
//! integration (its newest), and none for an integration with a job in flight:
//! a sync brings an integration's numbers up to date, however many of its
//! jobs died, and one job at a time runs for it.

use std::time::Duration;

use kpi_core::page::PageRequest;
use kpi_core::ports::queue::{OutgoingMessage, QueueStats};
use kpi_core::ports::store::JobFilter;
use kpi_core::ports::{Clock, Queue, QueueName, Store};
use kpi_core::{
    AdminScope, Error, IntegrationStatus, JobId, JobStatus, Provider, Result, SyncJob,
    WorkspaceScope,
};

use crate::worker::mark_integration;

/// One provider's work queue and dead-letter queue, as operators see them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueDepth {
    pub provider: Provider,
    pub work: QueueStats,
    pub dead: QueueStats,
}

/// The depths of every queue this deployment has among `providers` (a
/// provider without a worker has none).
pub async fn queue_depths(
    queue: &dyn Queue,
    providers: impl IntoIterator<Item = Provider>,
) -> Result<Vec<QueueDepth>> {
    let mut out = Vec::new();
    for provider in providers {
        if !queue.serves(QueueName::Work(provider)) {
            continue;
        }
        out.push(QueueDepth {
            provider,
            work: queue.stats(QueueName::Work(provider)).await?,
            dead: queue.stats(QueueName::DeadLetter(provider)).await?,
        });
    }
    Ok(out)
}

/// Queues a failed or dead job again, and gives its integration another chance
/// when it only went to `error` because of that job.
pub async fn retry_job(
    store: &dyn Store,
    queue: &dyn Queue,
    clock: &dyn Clock,
    admin: &AdminScope,
    id: JobId,
) -> Result<SyncJob> {
    let job = store.find_job(admin, id).await?;
    requeue(store, queue, clock, job).await
}

/// The job of `integration` that is queued or running, if any.
async fn job_in_flight(
    store: &dyn Store,
    scope: &WorkspaceScope,
    integration: &kpi_core::Integration,
) -> Result<Option<JobId>> {
    let Some(active) = integration.active_job else {
        return Ok(None);
    };
    match store.get_job(scope, active).await {
        Ok(job) if !job.status().is_final() => Ok(Some(active)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

async fn requeue(
    store: &dyn Store,
    queue: &dyn Queue,
    clock: &dyn Clock,
    mut job: SyncJob,
) -> Result<SyncJob> {
    if !matches!(job.status(), JobStatus::Dead | JobStatus::Failed) {
        return Err(Error::conflict(format!(
            "the job is {}; only failed or dead jobs can be retried",
            job.status()
        )));
    }
    let now = clock.now();
    let scope =
        WorkspaceScope::for_system(job.workspace.clone(), "operator retry of a recorded job");
    let job_id = job.id;
    // One job at a time per integration: never beside one queued or running.
    let integration = store.get_integration(&scope, job.integration).await?;
    if let Some(other) = job_in_flight(store, &scope, &integration).await? {
        return Err(Error::conflict(format!(
            "job {other} of this integration is queued or running; it syncs the same numbers"
        )));
    }
    let seen_active = integration.active_job;
    mark_integration(store, clock, &scope, job.integration, |i| {
        if i.active_job != seen_active {
            return Err(Error::conflict(
                "the integration got another job meanwhile; try again",
            ));
        }
        if i.status() == IntegrationStatus::Error {
            i.transition(IntegrationStatus::Connected, now)?;
        }
        // The scheduler makes no second job while this one runs.
        i.active_job = Some(job_id);
        Ok(())
    })
    .await?;
    job.transition(JobStatus::Queued, now)?;
    job.sends = 1;
    let job = store.update_job(&scope, &job).await?;
    crate::enqueue(store, queue, std::slice::from_ref(&job), None, now).await?;
    Ok(job)
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RedriveReport {
    pub messages_moved: usize,
    pub jobs_requeued: usize,
    /// Dead jobs left as they are: an integration's older dead jobs beside
    /// its newest, and those of integrations with a job in flight.
    pub jobs_left: usize,
}

/// Moves `provider`'s dead-letter messages back and queues its dead jobs again:
/// the newest of each integration, unless it has a job in flight or has
/// synced since (at most `max` jobs per call).
pub async fn redrive(
    store: &dyn Store,
    queue: &dyn Queue,
    clock: &dyn Clock,
    admin: &AdminScope,
    provider: Provider,
    max: usize,
) -> Result<RedriveReport> {
    let mut report = RedriveReport::default();
    loop {
        let messages = queue
            .receive(QueueName::DeadLetter(provider), 10, Duration::ZERO)
            .await?;
        if messages.is_empty() {
            break;
        }
        for m in messages {
            queue
                .send_batch(
                    QueueName::Work(provider),
                    vec![OutgoingMessage::new(m.body.clone())],
                )
                .await?;
            queue
                .delete(QueueName::DeadLetter(provider), &m.receipt)
                .await?;
            report.messages_moved += 1;
        }
    }
    let filter = JobFilter {
        status: JobStatus::Dead,
        provider: Some(provider),
        workspace: None,
        since: None,
        until: None,
    };
    // The newest dead job of each integration (job ids are time-ordered).
    let mut newest: std::collections::BTreeMap<kpi_core::IntegrationId, SyncJob> =
        std::collections::BTreeMap::new();
    let mut page = PageRequest::first(100);
    loop {
        let dead = store.list_jobs_by_status(admin, &filter, &page).await?;
        for job in dead.items {
            match newest.get(&job.integration) {
                Some(kept) if kept.id >= job.id => report.jobs_left += 1,
                Some(_) => {
                    report.jobs_left += 1;
                    newest.insert(job.integration, job);
                }
                None => {
                    newest.insert(job.integration, job);
                }
            }
        }
        match dead.next {
            Some(cursor) => page = PageRequest::after(100, cursor),
            None => break,
        }
    }
    for job in newest.into_values() {
        if report.jobs_requeued >= max {
            report.jobs_left += 1;
            continue;
        }
        // A dead job older than the integration's last success is behind it:
        // that sync read the same days later.
        let scope = WorkspaceScope::for_system(job.workspace.clone(), "operator redrive");
        match store.get_integration(&scope, job.integration).await {
            Ok(i) if i.last_success_at.is_some_and(|at| at >= job.created_at) => {
                report.jobs_left += 1;
                continue;
            }
            Ok(_) => {}
            Err(e) if e.is_not_found() => {
                report.jobs_left += 1;
                continue;
            }
            Err(e) => return Err(e),
        }
        match requeue(store, queue, clock, job).await {
            Ok(_) => report.jobs_requeued += 1,
            // A job in flight for it (or one just made): this one waits.
            Err(e) if e.is_conflict() => report.jobs_left += 1,
            Err(e) if e.is_not_found() => report.jobs_left += 1,
            Err(e) => return Err(e),
        }
    }
    Ok(report)
}
