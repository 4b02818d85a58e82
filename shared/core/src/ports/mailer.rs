//! The mailer port: sending email through a provider account (Resend). The
//! caller chooses the account (its key) and a key that names what is being
//! sent, so a retried send goes out once.

use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::Result;

/// One message to one or more recipients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingEmail {
    /// `Name <address>` or an address.
    pub from: String,
    pub to: Vec<String>,
    pub reply_to: Vec<String>,
    pub subject: String,
    pub html: String,
    pub text: String,
    /// Provider tags (ASCII letters, digits, `_`, `-`).
    pub tags: Vec<(String, String)>,
    /// Extra headers (`List-Unsubscribe`, …), names as sent.
    pub headers: Vec<(String, String)>,
}

#[async_trait]
pub trait Mailer: Send + Sync {
    /// Largest number of messages one `send` takes.
    fn max_batch(&self) -> usize;

    /// Sends the messages with the account's `key` under `idempotency_key`
    /// (the same key for every retry of the same messages). Returns the
    /// provider's message ids, in order.
    async fn send(
        &self,
        key: &SecretString,
        emails: &[OutgoingEmail],
        idempotency_key: &str,
    ) -> Result<Vec<String>>;
}
