use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{
    MessageSystemAttributeName, QueueAttributeName, SendMessageBatchRequestEntry,
};
use chrono::{DateTime, Utc};
use kpi_core::ports::queue::{
    MAX_SEND_BATCH, OutgoingMessage, QueueStats, ReceiptHandle, ReceivedMessage, WORK_RETENTION,
};
use kpi_core::ports::{Queue, QueueName};
use kpi_core::{Error, Provider, Result};
use tokio::sync::OnceCell;

use crate::error::aws_error;

/// SQS queues, one per provider. The dead-letter queue of each is found from its
/// redrive policy on first use, so only the work queue URLs are configured.
pub struct SqsQueue {
    client: Client,
    work: HashMap<Provider, String>,
    dead: HashMap<Provider, OnceCell<String>>,
}

impl SqsQueue {
    pub fn new(config: &SdkConfig, work_queue_urls: HashMap<Provider, String>) -> Self {
        let dead = work_queue_urls
            .keys()
            .map(|p| (*p, OnceCell::new()))
            .collect();
        Self {
            client: Client::new(config),
            work: work_queue_urls,
            dead,
        }
    }

    async fn url(&self, queue: QueueName) -> Result<&str> {
        let provider = queue.provider();
        let work = self
            .work
            .get(&provider)
            .ok_or_else(|| Error::config(format!("no queue URL configured for {provider}")))?;
        match queue {
            QueueName::Work(_) => Ok(work),
            QueueName::DeadLetter(_) => {
                let cell = &self.dead[&provider];
                cell.get_or_try_init(|| self.discover_dlq(work))
                    .await
                    .map(String::as_str)
            }
        }
    }

    async fn discover_dlq(&self, work_url: &str) -> Result<String> {
        let attrs = self
            .client
            .get_queue_attributes()
            .queue_url(work_url)
            .attribute_names(QueueAttributeName::RedrivePolicy)
            .send()
            .await
            .map_err(|e| aws_error("SQS GetQueueAttributes", e))?;
        let policy = attrs
            .attributes()
            .and_then(|a| a.get(&QueueAttributeName::RedrivePolicy))
            .ok_or_else(|| Error::config("the work queue has no redrive policy (no DLQ)"))?;
        let policy: serde_json::Value = serde_json::from_str(policy)
            .map_err(|_| Error::config("the work queue's redrive policy is not JSON"))?;
        let arn = policy["deadLetterTargetArn"]
            .as_str()
            .ok_or_else(|| Error::config("the redrive policy names no DLQ"))?;
        // arn:aws:sqs:REGION:ACCOUNT:NAME
        let mut parts = arn.rsplitn(2, ':');
        let name = parts.next().unwrap_or_default();
        let account = parts
            .next()
            .and_then(|rest| rest.rsplit(':').next())
            .unwrap_or_default();
        let out = self
            .client
            .get_queue_url()
            .queue_name(name)
            .queue_owner_aws_account_id(account)
            .send()
            .await
            .map_err(|e| aws_error("SQS GetQueueUrl", e))?;
        out.queue_url()
            .map(str::to_owned)
            .ok_or_else(|| Error::config("SQS returned no URL for the DLQ"))
    }
}

impl SqsQueue {
    /// [`Queue::holds_since`] of every work queue (the template keeps messages
    /// for [`WORK_RETENTION`]), for a caller without the queues' URLs.
    pub fn holds_since_at(now: DateTime<Utc>) -> DateTime<Utc> {
        now - WORK_RETENTION
    }
}

fn whole_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs() + u64::from(d.subsec_nanos() > 0)).unwrap_or(i32::MAX)
}

#[async_trait]
impl Queue for SqsQueue {
    fn serves(&self, queue: QueueName) -> bool {
        self.work.contains_key(&queue.provider())
    }

    fn holds_since(&self, now: DateTime<Utc>) -> DateTime<Utc> {
        Self::holds_since_at(now)
    }

    async fn send_batch(&self, queue: QueueName, messages: Vec<OutgoingMessage>) -> Result<()> {
        if messages.is_empty() {
            return Ok(());
        }
        if messages.len() > MAX_SEND_BATCH {
            return Err(Error::validation(
                "messages",
                format!("at most {MAX_SEND_BATCH} messages per batch"),
            ));
        }
        let url = self.url(queue).await?;
        let entries = messages
            .into_iter()
            .enumerate()
            .map(|(i, m)| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(m.body)
                    .set_delay_seconds(m.delay.map(|d| whole_seconds(d).min(900)))
                    .build()
                    .map_err(|e| Error::internal("invalid SQS batch entry").with_source(e))
            })
            .collect::<Result<Vec<_>>>()?;
        let out = self
            .client
            .send_message_batch()
            .queue_url(url)
            .set_entries(Some(entries))
            .send()
            .await
            .map_err(|e| aws_error("SQS SendMessageBatch", e))?;
        if let Some(failed) = out.failed().first() {
            return Err(Error::transient(format!(
                "SQS refused {} of the batch ({})",
                out.failed().len(),
                failed.code()
            )));
        }
        Ok(())
    }

    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        wait: Duration,
    ) -> Result<Vec<ReceivedMessage>> {
        let url = self.url(queue).await?;
        let out = self
            .client
            .receive_message()
            .queue_url(url)
            .max_number_of_messages(max.clamp(1, 10) as i32)
            .wait_time_seconds(whole_seconds(wait).min(20))
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await
            .map_err(|e| aws_error("SQS ReceiveMessage", e))?;
        Ok(out
            .messages()
            .iter()
            .filter_map(|m| {
                Some(ReceivedMessage {
                    message_id: m.message_id()?.to_owned(),
                    body: m.body().unwrap_or_default().to_owned(),
                    receipt: ReceiptHandle(m.receipt_handle()?.to_owned()),
                    receive_count: m
                        .attributes()
                        .and_then(|a| a.get(&MessageSystemAttributeName::ApproximateReceiveCount))
                        .and_then(|c| c.parse().ok())
                        .unwrap_or(1),
                })
            })
            .collect())
    }

    async fn delete(&self, queue: QueueName, receipt: &ReceiptHandle) -> Result<()> {
        let url = self.url(queue).await?;
        self.client
            .delete_message()
            .queue_url(url)
            .receipt_handle(&receipt.0)
            .send()
            .await
            .map_err(|e| aws_error("SQS DeleteMessage", e))?;
        Ok(())
    }

    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &ReceiptHandle,
        timeout: Duration,
    ) -> Result<()> {
        let url = self.url(queue).await?;
        // SQS caps visibility at 12 hours.
        let seconds = whole_seconds(timeout).min(12 * 3600);
        self.client
            .change_message_visibility()
            .queue_url(url)
            .receipt_handle(&receipt.0)
            .visibility_timeout(seconds)
            .send()
            .await
            .map_err(|e| aws_error("SQS ChangeMessageVisibility", e))?;
        Ok(())
    }

    async fn stats(&self, queue: QueueName) -> Result<QueueStats> {
        let url = self.url(queue).await?;
        let out = self
            .client
            .get_queue_attributes()
            .queue_url(url)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
            .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesDelayed)
            .send()
            .await
            .map_err(|e| aws_error("SQS GetQueueAttributes", e))?;
        let get = |name: QueueAttributeName| {
            out.attributes()
                .and_then(|a| a.get(&name))
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Ok(QueueStats {
            visible: get(QueueAttributeName::ApproximateNumberOfMessages),
            in_flight: get(QueueAttributeName::ApproximateNumberOfMessagesNotVisible),
            delayed: get(QueueAttributeName::ApproximateNumberOfMessagesDelayed),
        })
    }
}
