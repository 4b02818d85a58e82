//! An in-process queue with the semantics of SQS with a redrive policy: a received
//! message is hidden for the visibility timeout, comes back if not deleted, and
//! once it has been received `max_receives` times the next receive moves it to
//! the dead-letter queue instead of delivering it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::queue::{
    MAX_SEND_BATCH, OutgoingMessage, QueueStats, ReceiptHandle, ReceivedMessage,
};
use kpi_core::ports::{Queue, QueueName};
use kpi_core::{Error, Result};
use tokio::sync::Notify;
use tokio::time::Instant;

#[derive(Debug, Clone, Copy)]
pub struct LocalQueueSettings {
    pub visibility_timeout: Duration,
    /// Receives before a message moves to the DLQ (SQS `maxReceiveCount`).
    pub max_receives: u32,
}

impl Default for LocalQueueSettings {
    fn default() -> Self {
        Self {
            visibility_timeout: Duration::from_secs(300),
            max_receives: 5,
        }
    }
}

struct Message {
    id: String,
    body: String,
    visible_at: Instant,
    receive_count: u32,
    /// Handle of the latest receive; only it can delete or extend the message.
    receipt: Option<String>,
}

#[derive(Default)]
struct State {
    queues: HashMap<QueueName, VecDeque<Message>>,
}

pub struct LocalQueue {
    settings: LocalQueueSettings,
    state: Mutex<State>,
    arrived: Notify,
    /// When this process's queue began: whatever was sent before is lost.
    started: DateTime<Utc>,
}

impl LocalQueue {
    pub fn new(settings: LocalQueueSettings) -> Self {
        Self {
            settings,
            state: Mutex::new(State::default()),
            arrived: Notify::new(),
            started: Utc::now(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass over the queue: deliver what is visible, dead-letter what has run
    /// out of receives. Returns the delivered messages and the earliest time a
    /// hidden message becomes visible.
    fn take_visible(
        &self,
        queue: QueueName,
        max: usize,
        now: Instant,
    ) -> (Vec<ReceivedMessage>, Option<Instant>) {
        let mut state = self.lock();
        let mut out = Vec::new();
        let mut dead = Vec::new();
        let mut next_visible: Option<Instant> = None;
        let msgs = state.queues.entry(queue).or_default();
        let mut i = 0;
        while i < msgs.len() && out.len() < max {
            let m = &mut msgs[i];
            if m.visible_at > now {
                next_visible = Some(next_visible.map_or(m.visible_at, |t| t.min(m.visible_at)));
                i += 1;
                continue;
            }
            if matches!(queue, QueueName::Work(_)) && m.receive_count >= self.settings.max_receives
            {
                if let Some(mut m) = msgs.remove(i) {
                    m.receipt = None;
                    m.visible_at = now;
                    m.receive_count = 0;
                    dead.push(m);
                }
                continue;
            }
            m.receive_count += 1;
            m.visible_at = now + self.settings.visibility_timeout;
            let receipt = uuid::Uuid::new_v4().to_string();
            m.receipt = Some(receipt.clone());
            out.push(ReceivedMessage {
                message_id: m.id.clone(),
                body: m.body.clone(),
                receipt: ReceiptHandle(receipt),
                receive_count: m.receive_count,
            });
            i += 1;
        }
        if !dead.is_empty() {
            tracing::warn!(queue = %queue, count = dead.len(), "messages moved to the dead-letter queue");
            state
                .queues
                .entry(QueueName::DeadLetter(queue.provider()))
                .or_default()
                .extend(dead);
        }
        (out, next_visible)
    }
}

#[async_trait]
impl Queue for LocalQueue {
    /// Every provider's queues exist in process, each polled by the dev server.
    fn serves(&self, _: QueueName) -> bool {
        true
    }

    fn holds_since(&self, _: DateTime<Utc>) -> DateTime<Utc> {
        // Messages live in this process only and never expire.
        self.started
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<()> {
        if messages.len() > MAX_SEND_BATCH {
            return Err(Error::validation(
                "messages",
                format!("at most {MAX_SEND_BATCH} messages per batch"),
            ));
        }
        let now = Instant::now();
        {
            let mut state = self.lock();
            let q = state.queues.entry(queue).or_default();
            for m in messages {
                q.push_back(Message {
                    id: uuid::Uuid::new_v4().to_string(),
                    body: m.body,
                    visible_at: now + m.delay.unwrap_or_default(),
                    receive_count: 0,
                    receipt: None,
                });
            }
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let max = max.clamp(1, 10) as usize;
        let deadline = Instant::now() + wait;
        loop {
            // Register interest before looking, so a send between the look and the
            // wait is not missed.
            let arrived = self.arrived.notified();
            let now = Instant::now();
            let (got, next_visible) = self.take_visible(queue, max, now);
            if !got.is_empty() || now >= deadline {
                return Ok(got);
            }
            let wake = next_visible.map_or(deadline, |t| t.min(deadline));
            let _ = tokio::time::timeout_at(wake, arrived).await;
        }
    }

    async fn delete(&self, queue: QueueName, receipt: &ReceiptHandle) -> Result<()> {
        let mut state = self.lock();
        if let Some(q) = state.queues.get_mut(&queue) {
            q.retain(|m| m.receipt.as_deref() != Some(receipt.0.as_str()));
        }
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<()> {
        let now = Instant::now();
        {
            let mut state = self.lock();
            let m = state
                .queues
                .get_mut(&queue)
                .and_then(|q| {
                    q.iter_mut()
                        .find(|m| m.receipt.as_deref() == Some(receipt.0.as_str()))
                })
                .filter(|m| m.visible_at > now)
                .ok_or_else(|| Error::not_found("the message is not in flight"))?;
            m.visible_at = now + timeout;
        }
        self.arrived.notify_waiters();
        Ok(())
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        let now = Instant::now();
        let state = self.lock();
        let mut stats = QueueStats::default();
        for m in state.queues.get(&queue).into_iter().flatten() {
            if m.visible_at <= now {
                stats.visible += 1;
            } else if m.receipt.is_some() {
                stats.in_flight += 1;
            } else {
                stats.delayed += 1;
            }
        }
        Ok(stats)
    }
}
