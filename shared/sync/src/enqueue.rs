//! The one way a sync job reaches its provider's work queue.

use kpi_core::job::SyncMessage;
use kpi_core::ports::queue::{MAX_SEND_BATCH, OutgoingMessage};
use kpi_core::ports::{Queue, QueueName};
use kpi_core::{Error, Result, SyncJob};

/// Sends one message per job to the jobs' provider queue, in batches of ten.
/// `request_id` is the API request that asked for them, carried for the logs.
/// Returns the number of batch calls made.
pub async fn enqueue(
    queue: &dyn Queue,
    jobs: &[SyncJob],
    request_id: Option<&str>,
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
    }
    Ok(calls)
}
