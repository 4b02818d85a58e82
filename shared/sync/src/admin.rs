//! Operators' levers: retry one job, redrive a provider's dead jobs.
//!
//! The DLQ handler consumes dead-lettered messages (it records the job as dead
//! and sends the notice), so the job store, not the DLQ, is the durable list of
//! dead work. Redrive therefore moves any messages still waiting in the DLQ back
//! to the work queue and queues the provider's dead jobs again.

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
    mark_integration(store, clock, &scope, job.integration, |i| {
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
    crate::enqueue(queue, std::slice::from_ref(&job), None).await?;
    Ok(job)
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RedriveReport {
    pub messages_moved: usize,
    pub jobs_requeued: usize,
}

/// Moves `provider`'s dead-letter messages back and queues its dead jobs again
/// (at most `max` jobs per call).
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
    while report.jobs_requeued < max {
        // Always the first page: requeued jobs leave the `dead` listing.
        let page = store
            .list_jobs_by_status(admin, &filter, &PageRequest::first(100))
            .await?;
        if page.items.is_empty() {
            break;
        }
        for job in page.items.into_iter().take(max - report.jobs_requeued) {
            requeue(store, queue, clock, job).await?;
            report.jobs_requeued += 1;
        }
    }
    Ok(report)
}
