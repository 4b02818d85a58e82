//! The sync engine's notices by email: a failure notice per run of failures,
//! a recovery notice when it ends, a reconnect reminder before a connection
//! expires. Each goes to the workspace's notification list from the
//! workspace's own Resend account, else the platform's; when no email can go
//! out the notice is logged and the integration's `last_notice` says why.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::integration::NoticeRecord;
use kpi_core::{Error, Integration, IntegrationId, Registry, Result, WorkspaceId, WorkspaceScope};
use kpi_sync::notifier::LogNotifier;
use kpi_sync::{FailureNotice, Notifier, ReconnectReminder, RecoveryNotice};
use url::Url;

use crate::messages::{self, Message};
use crate::outbox::{Delivery, Outbox};
use crate::recipients::NotificationSettings;

pub struct EmailNotifier {
    pub outbox: Arc<Outbox>,
    pub registry: Arc<Registry>,
    /// Links in emails point here (`KPI_PUBLIC_URL`).
    pub public_url: Url,
}

/// The integration's page in the settings UI.
pub fn settings_url(public: &Url, workspace: &WorkspaceId, integration: IntegrationId) -> String {
    let mut url = public.clone();
    url.set_path("/settings/integrations");
    url.query_pairs_mut()
        .clear()
        .append_pair("workspace", workspace.as_str())
        .append_pair("integration", &integration.to_string());
    url.to_string()
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%-d %B %Y, %H:%M UTC").to_string()
}

/// What failed and what to do, by the error's code, for people.
pub fn explain(code: &str, message: &str, provider: &str) -> (String, String) {
    match code {
        "reauth_required" => (
            format!("{provider} no longer accepts the connection. {message}"),
            format!("Reconnect the integration: open it and choose Reconnect, then sign in to {provider} again."),
        ),
        "configuration" | "validation" => (
            message.to_owned(),
            "Check the integration's settings (the account or property it reads, and its access there), then choose Sync now.".to_owned(),
        ),
        "rate_limited" => (
            format!("{provider} kept asking us to slow down. {message}"),
            "Nothing for now: syncing resumes on the next schedule. If this repeats, sync less often.".to_owned(),
        ),
        _ => (
            format!("{provider} did not answer properly several times. {message}"),
            "Nothing for now: we try again on the next schedule. If it keeps failing, choose Sync now later or contact support.".to_owned(),
        ),
    }
}

impl EmailNotifier {
    fn provider_name(&self, i: &Integration) -> String {
        self.registry
            .descriptor(i.provider)
            .map(|d| d.display_name.to_owned())
            .unwrap_or_else(|_| i.provider.to_string())
    }

    async fn integration(
        &self,
        scope: &WorkspaceScope,
        id: IntegrationId,
    ) -> Result<Option<Integration>> {
        match self.outbox.store.get_integration(scope, id).await {
            Ok(i) => Ok(Some(i)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Delivers to the notification list and notes the outcome on the integration.
    async fn notify(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        message: Message,
        key: String,
    ) -> Result<()> {
        let settings = NotificationSettings::load(&*self.outbox.store, scope).await?;
        let delivery = self
            .outbox
            .deliver(scope, &message, &key, &settings.recipients, true)
            .await;
        let (emailed, reason) = match &delivery {
            Ok(Delivery::Sent(_)) => (true, None),
            Ok(Delivery::NotSent(why)) => (false, Some(why.clone())),
            Err(e) => (
                false,
                Some(format!("the email provider refused it: {}", e.message())),
            ),
        };
        if let Some(why) = &reason {
            tracing::warn!(%integration, kind = message.kind(), why, "notice not emailed");
        }
        let record = NoticeRecord {
            kind: message.kind().to_owned(),
            emailed,
            reason,
            at: self.outbox.clock.now(),
        };
        // The note on the integration is written like every other change to
        // it; an integration removed meanwhile needs none.
        match kpi_sync::cas::modify_integration(
            &*self.outbox.store,
            &*self.outbox.clock,
            scope,
            integration,
            |i| {
                i.last_notice = Some(record.clone());
                Ok(())
            },
        )
        .await
        {
            Ok(_) => {}
            Err(e) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        delivery.map(|_| ())
    }
}

#[async_trait]
impl Notifier for EmailNotifier {
    async fn sync_failed(&self, n: &FailureNotice) -> Result<()> {
        LogNotifier.sync_failed(n).await?;
        let scope = WorkspaceScope::for_system(n.workspace.clone(), "a sync failure notice");
        let Some(i) = self.integration(&scope, n.integration).await? else {
            return Ok(());
        };
        let provider = self.provider_name(&i);
        let (what_failed, what_to_do) = explain(&n.error_code, &n.error_message, &provider);
        let started = i.failing_since.unwrap_or_else(|| self.outbox.clock.now());
        let message = Message::SyncFailure(messages::SyncFailure {
            integration_name: i.display_name.clone(),
            provider_name: provider,
            what_failed,
            what_to_do,
            failed_at: when(started),
            settings_url: settings_url(&self.public_url, &n.workspace, n.integration),
        });
        let key = format!("notice/{}/{}", n.integration, started.timestamp());
        self.notify(&scope, n.integration, message, key).await
    }

    async fn sync_recovered(&self, n: &RecoveryNotice) -> Result<()> {
        LogNotifier.sync_recovered(n).await?;
        let scope = WorkspaceScope::for_system(n.workspace.clone(), "a recovery notice");
        let Some(i) = self.integration(&scope, n.integration).await? else {
            return Ok(());
        };
        let message = Message::Recovery(messages::Recovery {
            integration_name: i.display_name.clone(),
            provider_name: self.provider_name(&i),
            failing_since: when(n.failing_since),
            settings_url: settings_url(&self.public_url, &n.workspace, n.integration),
        });
        let key = format!("recovery/{}/{}", n.integration, n.failing_since.timestamp());
        self.notify(&scope, n.integration, message, key).await
    }

    async fn reconnect_reminder(&self, r: &ReconnectReminder) -> Result<()> {
        LogNotifier.reconnect_reminder(r).await?;
        let scope = WorkspaceScope::for_system(r.workspace.clone(), "a reconnect reminder");
        let Some(i) = self.integration(&scope, r.integration).await? else {
            return Ok(());
        };
        let provider = self.provider_name(&i);
        let deadline = r.expires_at.format("%-d %B %Y").to_string();
        let message = Message::ReconnectReminder(messages::ReconnectReminder {
            integration_name: i.display_name.clone(),
            reason: format!(
                "The {provider} connection of {} expires on {deadline}. After that its numbers stop updating until someone reconnects it.",
                i.display_name
            ),
            provider_name: provider,
            deadline,
            settings_url: settings_url(&self.public_url, &r.workspace, r.integration),
        });
        let key = format!("reminder/{}/{}", r.integration, r.expires_at.timestamp());
        self.notify(&scope, r.integration, message, key).await
    }
}

impl From<Error> for Delivery {
    fn from(e: Error) -> Self {
        Delivery::NotSent(e.message().to_owned())
    }
}
