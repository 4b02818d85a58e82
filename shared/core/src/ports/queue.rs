use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::provider::Provider;

/// The queues of the system: one work queue per provider, each with its DLQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueName {
    Work(Provider),
    DeadLetter(Provider),
}

impl QueueName {
    pub fn provider(self) -> Provider {
        match self {
            Self::Work(p) | Self::DeadLetter(p) => p,
        }
    }
}

impl fmt::Display for QueueName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Work(p) => write!(f, "{p}"),
            Self::DeadLetter(p) => write!(f, "{p}-dlq"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    pub body: String,
    pub delay: Option<Duration>,
}

impl OutgoingMessage {
    pub fn new(body: impl Into<String>) -> Self {
        Self {
            body: body.into(),
            delay: None,
        }
    }
}

/// A token to acknowledge or extend one receipt of one message.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ReceiptHandle(pub String);

#[derive(Debug, Clone)]
pub struct ReceivedMessage {
    pub message_id: String,
    pub body: String,
    pub receipt: ReceiptHandle,
    /// How many times this message has been received, this time included.
    pub receive_count: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
}

/// Largest batch a single send call takes (the SQS limit).
pub const MAX_SEND_BATCH: usize = 10;

/// How long a work queue keeps a message nobody took: the
/// `MessageRetentionPeriod` of the work queues in `template.yaml` (its test
/// holds the two equal). A job waiting longer is sent again.
pub const WORK_RETENTION: chrono::Duration = chrono::Duration::days(4);

/// A queue with SQS semantics: at-least-once delivery, a visibility timeout
/// after each receive, a receive count, and a move to the DLQ once a message has
/// been received the queue's maximum number of times without being deleted.
#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends up to [`MAX_SEND_BATCH`] messages in one call. All or none: a partial
    /// failure is an error, and the caller resends the whole batch (receivers
    /// are idempotent).
    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<()>;

    /// Receives up to `max` (≤ 10) messages, waiting up to `wait` for the first.
    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>>;

    async fn delete(&self, queue: QueueName, receipt: &ReceiptHandle) -> Result<()>;

    /// Makes the message visible again after `timeout` from now (0: at once).
    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<()>;

    async fn stats(&self, queue: QueueName) -> Result<QueueStats>;

    /// Whether this deployment has `queue` (and so a worker consuming it). No
    /// job is created for a provider whose work queue is not served.
    fn serves(&self, queue: QueueName) -> bool;

    /// The earliest send time whose messages this queue still holds at `now`.
    /// A message sent before it may be gone (SQS drops what outlives the
    /// retention period; the in-process queue holds nothing from before it
    /// started), so its job is sent again; one sent after it only waits.
    fn holds_since(&self, now: DateTime<Utc>) -> DateTime<Utc>;
}
