//! Pulling messages from a queue and applying each handler's [`Disposition`]:
//! the one-machine equivalent of the Lambda SQS event source (delete on success,
//! change visibility for a retry, leave alone on a crash).

use std::future::Future;
use std::time::Duration;

use kpi_core::Result;
use kpi_core::ports::queue::ReceivedMessage;
use kpi_core::ports::{Queue, QueueName};

use crate::worker::Disposition;

/// What one poll did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PollReport {
    pub received: usize,
    pub done: usize,
    pub retries: Vec<Duration>,
}

/// Receives up to ten messages of `queue` (waiting up to `wait`), handles them
/// concurrently and applies the dispositions.
pub async fn poll_once<F, Fut>(
    queue: &dyn Queue,
    name: QueueName,
    wait: Duration,
    handle: F,
) -> Result<PollReport>
where
    F: Fn(ReceivedMessage) -> Fut,
    Fut: Future<Output = Disposition>,
{
    let messages = queue.receive(name, 10, wait).await?;
    let mut report = PollReport {
        received: messages.len(),
        ..PollReport::default()
    };
    let outcomes = futures::future::join_all(messages.into_iter().map(|m| {
        let receipt = m.receipt.clone();
        let fut = handle(m);
        async move { (receipt, fut.await) }
    }))
    .await;
    for (receipt, disposition) in outcomes {
        match disposition {
            Disposition::Done => {
                // A receipt goes stale when the message was received again
                // meanwhile; that delivery finds the job finished and deletes it.
                if let Err(e) = queue.delete(name, &receipt).await {
                    tracing::warn!(queue = %name, error = %e.log_chain(), "could not delete a handled message");
                }
                report.done += 1;
            }
            Disposition::RetryAfter(delay) => {
                // The message may already be visible again; then SQS semantics
                // (a later receive) take over.
                let _ = queue.change_visibility(name, &receipt, delay).await;
                report.retries.push(delay);
            }
        }
    }
    Ok(report)
}
