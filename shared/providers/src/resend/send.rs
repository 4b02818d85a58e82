//! Sending through Resend: `POST /emails/batch` (up to 100 messages a call)
//! with an `Idempotency-Key` on every call, so a call retried after a lost
//! response sends nothing twice. Rate limits are followed from the
//! `ratelimit-*` headers of each team (never a hard-coded rate); quota errors
//! are not retried.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kpi_core::{Error, Result};
use ring::digest;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use super::client::{ResendClient, api_error, error_name};
use crate::http::{Reply, read, send_error};

const NAME: &str = "Resend";
/// Resend's limit on messages per batch call.
pub const MAX_BATCH: usize = 100;
/// Resend's limit on recipients per message.
pub const MAX_RECIPIENTS: usize = 50;
/// Longest wait a send sits out inside one call (longer ones go back to the caller).
const MAX_INLINE_WAIT: Duration = Duration::from_secs(30);
/// Attempts of one call (transient failures, rate limits, in-flight twins).
const ATTEMPTS: u32 = 4;

/// One message, as Resend's `SendEmailRequest`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EmailRequest {
    /// `Name <address>` or an address.
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reply_to: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<Tag>,
    /// Custom headers, as Resend's `headers` object.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub headers: std::collections::BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tag {
    pub name: String,
    pub value: String,
}

/// What Resend's headers say about one team's limit.
#[derive(Debug, Clone, Copy)]
struct Window {
    remaining: u64,
    resets_at: Instant,
}

/// Waits as the `ratelimit-*` headers of each team's last answer say: when
/// none are left in the window, until it resets. Keyed by a digest of the
/// API key (one Resend team per key).
#[derive(Default)]
pub struct RateGate {
    windows: Mutex<HashMap<Vec<u8>, Window>>,
}

fn team(key: &SecretString) -> Vec<u8> {
    digest::digest(&digest::SHA256, key.expose_secret().as_bytes())
        .as_ref()
        .to_vec()
}

fn header_u64(reply: &Reply, name: &str) -> Option<u64> {
    reply.headers.get(name)?.to_str().ok()?.trim().parse().ok()
}

impl RateGate {
    async fn wait(&self, key: &[u8]) {
        let until = {
            let windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
            windows
                .get(key)
                .filter(|w| w.remaining == 0)
                .map(|w| w.resets_at)
        };
        if let Some(until) = until {
            let wait = until
                .saturating_duration_since(Instant::now())
                .min(MAX_INLINE_WAIT);
            tokio::time::sleep(wait).await;
        }
    }

    fn note(&self, key: &[u8], reply: &Reply) {
        let (Some(remaining), Some(reset)) = (
            header_u64(reply, "ratelimit-remaining"),
            header_u64(reply, "ratelimit-reset"),
        ) else {
            return;
        };
        let mut windows = self.windows.lock().unwrap_or_else(|e| e.into_inner());
        windows.insert(
            key.to_vec(),
            Window {
                remaining,
                resets_at: Instant::now() + Duration::from_secs(reset),
            },
        );
    }
}

/// How long a 429 asks us to wait: `retry-after`, else `ratelimit-reset`.
fn rate_limit_wait(reply: &Reply) -> Duration {
    reply
        .retry_after
        .or_else(|| header_u64(reply, "ratelimit-reset").map(Duration::from_secs))
        .unwrap_or(Duration::from_secs(1))
        .max(Duration::from_millis(100))
}

#[derive(Deserialize)]
struct BatchIds {
    #[serde(default)]
    data: Vec<Id>,
}

#[derive(Deserialize)]
struct Id {
    id: String,
}

impl ResendClient {
    /// Sends up to [`MAX_BATCH`] messages in one call under `idempotency_key`
    /// (at most 256 characters, the same for every retry of this batch).
    /// Returns Resend's email ids, in order.
    pub async fn send_batch(
        &self,
        key: &SecretString,
        emails: &[EmailRequest],
        idempotency_key: &str,
    ) -> Result<Vec<String>> {
        if emails.is_empty() {
            return Ok(Vec::new());
        }
        if emails.len() > MAX_BATCH {
            return Err(Error::internal("a Resend batch holds at most 100 messages"));
        }
        if idempotency_key.is_empty() || idempotency_key.len() > 256 {
            return Err(Error::internal("an idempotency key is 1 to 256 characters"));
        }
        if let Some(e) = emails
            .iter()
            .find(|e| e.to.is_empty() || e.to.len() > MAX_RECIPIENTS)
        {
            return Err(Error::internal(format!(
                "a message has {} recipients; 1 to 50 allowed",
                e.to.len()
            )));
        }
        let url = self.url("emails/batch")?;
        let team = team(key);
        let mut last = Error::transient("Resend was not reached");
        for attempt in 1..=ATTEMPTS {
            self.gate.wait(&team).await;
            let sent = self
                .http
                .post(url.clone())
                .bearer_auth(key.expose_secret())
                .header("idempotency-key", idempotency_key)
                .json(emails)
                .send()
                .await;
            let reply = match sent {
                Ok(resp) => read(NAME, resp).await,
                Err(e) => Err(send_error(NAME, e)),
            };
            let reply = match reply {
                Ok(r) => r,
                Err(e) => {
                    // A lost response: Resend may have sent it. The same key
                    // makes the retry return the first answer instead.
                    tracing::warn!(attempt, error = %e.log_chain(), "Resend batch: no answer; retrying with the same key");
                    last = e;
                    tokio::time::sleep(backoff(attempt)).await;
                    continue;
                }
            };
            self.gate.note(&team, &reply);
            if reply.is_success() {
                let ids: BatchIds = reply.json(NAME)?;
                if ids.data.len() != emails.len() {
                    return Err(Error::transient(
                        "Resend answered with another number of ids",
                    ));
                }
                return Ok(ids.data.into_iter().map(|i| i.id).collect());
            }
            let name = error_name(&reply);
            let wait = match (reply.status, name.as_str()) {
                (409, "concurrent_idempotent_requests") => Some(Duration::from_secs(1)),
                (429, "rate_limit_exceeded") => Some(rate_limit_wait(&reply)),
                (s, _) if s >= 500 => Some(backoff(attempt)),
                _ => None,
            };
            last = api_error(&reply);
            match wait {
                Some(w) if w <= MAX_INLINE_WAIT && attempt < ATTEMPTS => {
                    tracing::info!(
                        attempt,
                        status = reply.status,
                        wait_ms = w.as_millis() as u64,
                        "Resend batch: waiting before retrying with the same key"
                    );
                    tokio::time::sleep(w).await;
                }
                _ => return Err(last),
            }
        }
        Err(last)
    }
}

fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(500 * 2u64.pow(attempt.saturating_sub(1).min(4)))
}

impl ResendClient {
    /// Waits as the team's last rate-limit headers say.
    pub(crate) async fn gate_wait(&self, key: &SecretString) {
        self.gate.wait(&team(key)).await;
    }

    /// Notes an answer's rate-limit headers.
    pub(crate) fn gate_note(&self, key: &SecretString, reply: &Reply) {
        self.gate.note(&team(key), reply);
    }
}

#[async_trait::async_trait]
impl kpi_core::ports::Mailer for ResendClient {
    fn max_batch(&self) -> usize {
        MAX_BATCH
    }

    async fn send(
        &self,
        key: &SecretString,
        emails: &[kpi_core::ports::OutgoingEmail],
        idempotency_key: &str,
    ) -> Result<Vec<String>> {
        let requests: Vec<EmailRequest> = emails
            .iter()
            .map(|e| EmailRequest {
                from: e.from.clone(),
                to: e.to.clone(),
                subject: e.subject.clone(),
                html: e.html.clone(),
                text: e.text.clone(),
                reply_to: e.reply_to.clone(),
                tags: e
                    .tags
                    .iter()
                    .map(|(name, value)| Tag {
                        name: name.clone(),
                        value: value.clone(),
                    })
                    .collect(),
                headers: e.headers.iter().cloned().collect(),
            })
            .collect();
        self.send_batch(key, &requests, idempotency_key).await
    }
}
