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

use crate::consent;
use crate::messages::Message;
use crate::unsubscribe::{Confirmation, Links, Unsubscribe};
use kpi_core::ports::store::normalize_address;

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

impl Sender {
    /// The platform's own account (shared by every workspace: it sends only
    /// to addresses that agreed, and says only our words in subjects).
    pub fn is_platform(&self) -> bool {
        self.account == "platform"
    }
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
    /// The email-sending provider's client; `None` when no provider sends email here.
    pub mailer: Option<Arc<dyn Mailer>>,
    /// The provider `mailer` belongs to: a workspace sends with its own
    /// connected integration of it.
    pub mail_provider: Option<Provider>,
    pub platform: Option<PlatformSender>,
    pub clock: Arc<dyn Clock>,
    /// Signs the one-click unsubscribe links; `None` (no `KPI_LINK_KEY`):
    /// emails go without them, and the log says so.
    pub links: Option<Arc<Links>>,
    /// Emails the platform's account sends for one workspace a day
    /// ([`consent::PLATFORM_DAILY_CAP`]).
    pub platform_daily_cap: usize,
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
                if Some(i.provider) != self.mail_provider
                    || i.status() != IntegrationStatus::Connected
                {
                    continue;
                }
                let (Some(sealed), Some((from, reply_to))) =
                    (&i.credentials, sender_from(&i.settings))
                else {
                    continue;
                };
                match self.vault.open(&CredentialContext::of(i), sealed).await? {
                    ConnectionCredentials::ApiKey { key, .. } => {
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

    /// Of `to`, those the platform's account may send `message` to now: an
    /// address that agreed (a member, or confirmed; the confirmation email
    /// itself goes to whom it asks), within the workspace's daily cap.
    async fn platform_may_send(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        to: Vec<String>,
    ) -> Result<Vec<String>> {
        let now = self.clock.now();
        let asking = matches!(message, Message::ConfirmAddress(_));
        let mut out = Vec::with_capacity(to.len());
        for address in to {
            if consent::platform_suppressed(&*self.store, &address, message.stream(), now).await? {
                tracing::info!("an address on the platform account's suppression list is skipped");
                continue;
            }
            if !asking
                && consent::consent(&*self.store, scope, &address)
                    .await?
                    .is_none()
            {
                tracing::info!(
                    "an address that has not confirmed gets nothing from the platform's account"
                );
                continue;
            }
            if !consent::claim_platform_send(&*self.store, scope, now, self.platform_daily_cap)
                .await?
            {
                tracing::warn!(
                    cap = self.platform_daily_cap,
                    "the workspace reached its daily limit of platform emails"
                );
                break;
            }
            out.push(address);
        }
        Ok(out)
    }

    /// Whether the workspace's notices go out from the platform's account
    /// (it has no Resend account of its own that sends).
    pub async fn sends_from_platform(&self, scope: &WorkspaceScope) -> Result<bool> {
        Ok(self
            .sender(scope, true)
            .await?
            .is_some_and(|s| s.is_platform()))
    }

    /// Asks `address` once (per [`consent::CONFIRMATION_EVERY_DAYS`]) whether
    /// it wants the platform's notices about this workspace; nothing happens
    /// when it agreed already or was asked lately. For a workspace whose
    /// notices go out from the platform's account
    /// ([`Outbox::sends_from_platform`]).
    pub async fn ask_to_confirm(&self, scope: &WorkspaceScope, address: &str) -> Result<Delivery> {
        if consent::consent(&*self.store, scope, address)
            .await?
            .is_some()
        {
            return Ok(Delivery::NotSent("the address agreed already".into()));
        }
        self.ask(scope, address).await
    }

    /// Asks an address that unsubscribed whether it wants this workspace's
    /// emails again (a user asked for it): only its confirmation lifts the
    /// unsubscribe. At most once per [`consent::CONFIRMATION_EVERY_DAYS`].
    pub async fn ask_to_resubscribe(
        &self,
        scope: &WorkspaceScope,
        address: &str,
    ) -> Result<Delivery> {
        self.ask(scope, address).await
    }

    async fn ask(&self, scope: &WorkspaceScope, address: &str) -> Result<Delivery> {
        let Some(links) = &self.links else {
            return Ok(Delivery::NotSent("KPI_LINK_KEY is not set".into()));
        };
        let now = self.clock.now();
        if !consent::may_ask(&*self.store, scope, address, now).await? {
            return Ok(Delivery::NotSent("the address was asked lately".into()));
        }
        let confirmation = Confirmation {
            workspace: scope.workspace().clone(),
            address: normalize_address(address),
        };
        let message = Message::ConfirmAddress(crate::messages::ConfirmAddress {
            confirm_url: links.confirm_url(&confirmation)?,
        });
        let key = format!("confirm/{}/{}", scope.workspace(), confirmation.address);
        self.send(
            scope,
            &message,
            &key,
            std::slice::from_ref(&confirmation.address),
            true,
            false,
        )
        .await
    }

    /// Renders `message` and sends it to each of `recipients` that is not
    /// suppressed, nor unsubscribed from the message's kind; each email
    /// carries its reader's one-click unsubscribe link (body and headers).
    /// `key` names the message (`notice/{integration}/{started}`): the same
    /// key never sends twice.
    pub async fn deliver(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        key: &str,
        recipients: &[String],
        platform_ok: bool,
    ) -> Result<Delivery> {
        self.send(scope, message, key, recipients, platform_ok, true)
            .await
    }

    /// Sends `message` to `to` alone, as the answer to that reader's own
    /// action (a preview): no unsubscribe link, since there is no list to
    /// leave; suppressed addresses still get nothing.
    pub async fn deliver_to_caller(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        key: &str,
        to: &str,
    ) -> Result<Delivery> {
        self.send(scope, message, key, &[to.to_owned()], false, false)
            .await
    }

    async fn send(
        &self,
        scope: &WorkspaceScope,
        message: &Message,
        key: &str,
        recipients: &[String],
        platform_ok: bool,
        listed: bool,
    ) -> Result<Delivery> {
        let stream = message.stream().filter(|_| listed);
        let to = crate::recipients::deliverable(&*self.store, scope, recipients, stream).await?;
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
        let to = if sender.is_platform() {
            self.platform_may_send(scope, message, to).await?
        } else {
            to
        };
        if to.is_empty() {
            return Ok(Delivery::NotSent(
                "the platform's account sends only to addresses that confirmed, within its daily \
                 limit: connect the workspace's own Resend account to send to anyone"
                    .into(),
            ));
        }
        let links = match (stream, &self.links) {
            (Some(_), None) => {
                tracing::warn!(
                    "KPI_LINK_KEY is not set: this email goes without its unsubscribe link"
                );
                None
            }
            (Some(stream), Some(links)) => Some((stream, links)),
            (None, _) => None,
        };
        let kind = message.kind();
        let now = self.clock.now();
        let chunks: Vec<&[String]> = to.chunks(mailer.max_batch().max(1)).collect();
        let mut sent = 0;
        let mut subject = String::new();
        for (n, chunk) in chunks.iter().enumerate() {
            let mut emails: Vec<OutgoingEmail> = Vec::with_capacity(chunk.len());
            for address in chunk.iter() {
                // Each reader's own link: rendered per address.
                let unsubscribe = links
                    .map(|(stream, links)| {
                        links.unsubscribe(&Unsubscribe {
                            workspace: scope.workspace().clone(),
                            address: address.clone(),
                            stream,
                            platform: sender.is_platform(),
                        })
                    })
                    .transpose()?;
                let rendered = message.render_as(
                    unsubscribe.as_ref().map(|(url, _)| url.as_str()),
                    sender.is_platform(),
                )?;
                subject.clone_from(&rendered.subject);
                emails.push(OutgoingEmail {
                    from: sender.from.clone(),
                    to: vec![address.clone()],
                    reply_to: sender.reply_to.clone(),
                    subject: rendered.subject,
                    html: rendered.html,
                    text: rendered.text,
                    tags: vec![("kind".into(), kind.into())],
                    headers: unsubscribe.map(|(_, h)| h).unwrap_or_default(),
                });
            }
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
                            subject: subject.clone(),
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
