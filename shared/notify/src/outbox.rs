//! Sending a message to a workspace's people: which account sends it, one
//! email per recipient (so a bounce or complaint concerns one address), in
//! batches the mailer takes, under idempotency keys derived from what the
//! message is, each send recorded.

use std::sync::Arc;

use kpi_core::page::PageRequest;
use kpi_core::ports::store::EmailRecord;
use kpi_core::ports::{Clock, CredentialContext, CredentialVault, Mailer, OutgoingEmail, Store};
use kpi_core::{ConnectionCredentials, IntegrationStatus, Provider, Result, WorkspaceScope};
use secrecy::SecretString;

use crate::messages::Message;

/// The platform's own Resend account, for notices to workspaces without one.
#[derive(Clone)]
pub struct PlatformSender {
    pub key: SecretString,
    /// `Name <address>` or an address.
    pub from: String,
}

/// The account a message goes out from.
pub struct Sender {
    pub key: SecretString,
    pub from: String,
    pub reply_to: Vec<String>,
    /// `workspace` (its own Resend integration) or `platform`.
    pub account: &'static str,
    /// The workspace's Resend integration, when it sends.
    pub integration: Option<kpi_core::IntegrationId>,
}

/// What became of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// This many emails went out (or had gone out under the same key).
    Sent(usize),
    /// Nothing went out, and why (said to users as is).
    NotSent(String),
}

pub struct Outbox {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn CredentialVault>,
    /// The Resend client; `None` when no provider sends email here.
    pub mailer: Option<Arc<dyn Mailer>>,
    pub platform: Option<PlatformSender>,
    pub clock: Arc<dyn Clock>,
}

fn sender_from(
    settings: &serde_json::Map<String, serde_json::Value>,
) -> Option<(String, Vec<String>)> {
    let text = |k: &str| {
        settings
            .get(k)
            .and_then(|v| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let address = match (text("from_address"), text("domain")) {
        (Some(a), _) => a.to_owned(),
        (None, Some(domain)) => format!("notifications@{domain}"),
        (None, None) => return None,
    };
    let from = match text("from_name") {
        // Quotes and angle brackets in a display name would break the header.
        Some(name) => format!("{} <{address}>", name.replace(['"', '<', '>'], "")),
        None => address,
    };
    Some((
        from,
        text("reply_to")
            .map(|r| vec![r.to_owned()])
            .unwrap_or_default(),
    ))
}

impl Outbox {
    /// The workspace's own connected Resend integration with a sender
    /// address, else (when `platform_ok`) the platform's account.
    pub async fn sender(
        &self,
        scope: &WorkspaceScope,
        platform_ok: bool,
    ) -> Result<Option<Sender>> {
        let mut page = PageRequest::first(100);
        loop {
            let found = self.store.list_integrations(scope, &page).await?;
            for i in &found.items {
                if i.provider != Provider::RESEND || i.status() != IntegrationStatus::Connected {
                    continue;
                }
                let (Some(sealed), Some((from, reply_to))) =
                    (&i.credentials, sender_from(&i.settings))
                else {
                    continue;
                };
                match self.vault.open(&CredentialContext::of(i), sealed).await? {
                    ConnectionCredentials::ApiKey { key } => {
                        return Ok(Some(Sender {
                            key,
                            from,
                            reply_to,
                            account: "workspace",
                            integration: Some(i.id),
                        }));
                    }
                    ConnectionCredentials::OAuth(_) => continue,
                }
            }
            match found.next {
                Some(cursor) => page = PageRequest::after(100, cursor),
                None => break,
            }
        }
        Ok(match (&self.platform, platform_ok) {
            (Some(p), true) => Some(Sender {
                key: p.key.clone(),
                from: p.from.clone(),
                reply_to: Vec::new(),
                account: "platform",
                integration: None,
            }),
            _ => None,
        })
    }

    /// Renders `message` and sends it to each of `recipients` that is not
    /// suppressed. `key` names the message (`notice/{integration}/{started}`):
    /// the same key never sends twice.
    pub async fn deliver(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        key: &str,
        recipients: &[String],
        platform_ok: bool,
    ) -> Result<Delivery> {
        let to = crate::recipients::deliverable(&*self.store, scope, recipients).await?;
        if to.is_empty() {
            return Ok(Delivery::NotSent(if recipients.is_empty() {
                "no one is on the workspace's notification list".into()
            } else {
                "every address on the notification list is suppressed".into()
            }));
        }
        let Some(mailer) = &self.mailer else {
            return Ok(Delivery::NotSent("no email provider is configured".into()));
        };
        let Some(sender) = self.sender(scope, platform_ok).await? else {
            return Ok(Delivery::NotSent(
                "no Resend account can send it: connect Resend with a sender address".into(),
            ));
        };
        let rendered = message.render()?;
        let kind = message.kind();
        let now = self.clock.now();
        let chunks: Vec<&[String]> = to.chunks(mailer.max_batch().max(1)).collect();
        let mut sent = 0;
        for (n, chunk) in chunks.iter().enumerate() {
            let emails: Vec<OutgoingEmail> = chunk
                .iter()
                .map(|address| OutgoingEmail {
                    from: sender.from.clone(),
                    to: vec![address.clone()],
                    reply_to: sender.reply_to.clone(),
                    subject: rendered.subject.clone(),
                    html: rendered.html.clone(),
                    text: rendered.text.clone(),
                    tags: vec![("kind".into(), kind.into())],
                })
                .collect();
            let batch_key = if chunks.len() == 1 {
                key.to_owned()
            } else {
                format!("{key}/{n}")
            };
            let ids = mailer.send(&sender.key, &emails, &batch_key).await?;
            for (address, provider_id) in chunk.iter().zip(ids) {
                self.store
                    .put_email(
                        scope,
                        &EmailRecord {
                            id: format!("{batch_key}/{address}"),
                            workspace: scope.workspace().clone(),
                            kind: kind.to_owned(),
                            to: vec![address.clone()],
                            subject: rendered.subject.clone(),
                            provider_message_id: Some(provider_id),
                            integration: sender.integration,
                            status: "sent".into(),
                            created_at: now,
                            updated_at: now,
                        },
                    )
                    .await?;
                sent += 1;
            }
        }
        tracing::info!(kind, sent, account = sender.account, "email sent");
        Ok(Delivery::Sent(sent))
    }
}
