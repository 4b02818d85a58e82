//! The one way a sync job reaches its provider's work queue.

use chrono::{DateTime, Utc};
use kpi_core::job::SyncMessage;
use kpi_core::ports::queue::{MAX_SEND_BATCH, OutgoingMessage};
use kpi_core::ports::{Queue, QueueName, Store};
use kpi_core::{Error, JobStatus, Result, SyncJob, WorkspaceScope};

/// Sends one message per job to the jobs' provider queue, in batches of ten,
/// and records on each job that its message reached the queue (`sent_at`),
/// so that the scheduler sends again only what was never sent, never a job
/// that merely waits its turn. `request_id` is the API request that asked for
/// them, carried for the logs. Returns the number of batch calls made.
///
/// A crash between a send and its record leaves the job looking unsent: it
/// is sent a second time, which the worker's claim makes harmless.
pub async fn enqueue(
    store: &dyn Store,
    queue: &dyn Queue,
    jobs: &[SyncJob],
    request_id: Option<&str>,
    now: DateTime<Utc>,
) -> Result<usize> {
    let Some(first) = jobs.first() else {
        return Ok(0);
    };
    if jobs.iter().any(|j| j.provider != first.provider) {
        return Err(Error::internal(
            "one enqueue call takes one provider's jobs",
        ));
    }
    let mut calls = 0;
    for chunk in jobs.chunks(MAX_SEND_BATCH) {
        let mut messages = Vec::with_capacity(chunk.len());
        for job in chunk {
            let message = SyncMessage::for_job(job).with_request_id(request_id);
            let body = serde_json::to_string(&message)
                .map_err(|e| Error::internal("cannot encode the sync message").with_source(e))?;
            messages.push(OutgoingMessage::new(body));
        }
        calls += 1;
        queue
            .send_batch(QueueName::Work(first.provider), messages)
            .await?;
        for job in chunk {
            tracing::info!(job = %job.id, integration = %job.integration, provider = %job.provider, "sync job queued");
        }
        // A batch's records side by side: each is a conditional write of its
        // own job, and one after another a run of 5,000 jobs waited on 5,000
        // round trips.
        futures::future::try_join_all(chunk.iter().map(|job| record_sent(store, job, now))).await?;
    }
    Ok(calls)
}

/// Notes that `job`'s message is in the queue, unless a worker took the job
/// already (then there is nothing left to resend).
async fn record_sent(store: &dyn Store, job: &SyncJob, now: DateTime<Utc>) -> Result<()> {
    let scope = WorkspaceScope::for_system(job.workspace.clone(), "a sync job's message was sent");
    crate::cas::modify_job(store, &scope, job, |j| {
        if j.status() != JobStatus::Queued || j.sent_at.is_some_and(|at| at >= now) {
            return false;
        }
        j.sent_at = Some(now);
        j.updated_at = now;
        true
    })
    .await?;
    Ok(())
}
