//! Sync-failure notices. The Resend-backed notifier arrives with the Resend
//! integration; until then the dev server logs notices and tests record them.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::{IntegrationId, JobId, Provider, Result, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    /// The integration's name as its users know it.
    pub display_name: String,
    pub job: JobId,
    pub error_code: String,
    pub error_message: String,
}

/// Credentials that cannot be refreshed expire soon: the workspace should
/// reconnect the integration before `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReconnectReminder {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    pub display_name: String,
    pub expires_at: DateTime<Utc>,
}

/// An integration whose syncs had failed synced again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryNotice {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    pub display_name: String,
    pub failing_since: DateTime<Utc>,
    pub job: JobId,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn sync_failed(&self, notice: &FailureNotice) -> Result<()>;
    async fn sync_recovered(&self, notice: &RecoveryNotice) -> Result<()>;
    async fn reconnect_reminder(&self, reminder: &ReconnectReminder) -> Result<()>;
}

/// Writes the notice to the log (dev server without a mail sender).
pub struct LogNotifier;

#[async_trait]
impl Notifier for LogNotifier {
    async fn sync_failed(&self, n: &FailureNotice) -> Result<()> {
        tracing::warn!(
            workspace = %n.workspace,
            integration = %n.integration,
            provider = %n.provider,
            job = %n.job,
            error = %n.error_code,
            "sync failure notice: {}",
            n.error_message
        );
        Ok(())
    }

    async fn sync_recovered(&self, n: &RecoveryNotice) -> Result<()> {
        tracing::info!(
            workspace = %n.workspace,
            integration = %n.integration,
            provider = %n.provider,
            failing_since = %n.failing_since,
            "recovery notice: {} syncs again",
            n.display_name
        );
        Ok(())
    }

    async fn reconnect_reminder(&self, r: &ReconnectReminder) -> Result<()> {
        tracing::warn!(
            workspace = %r.workspace,
            integration = %r.integration,
            provider = %r.provider,
            expires_at = %r.expires_at,
            "reconnect reminder: {} stops syncing when its connection expires",
            r.display_name
        );
        Ok(())
    }
}

/// Keeps every notice, for tests.
#[derive(Default)]
pub struct RecordingNotifier {
    pub sent: Mutex<Vec<FailureNotice>>,
    pub recovered: Mutex<Vec<RecoveryNotice>>,
    pub reminders: Mutex<Vec<ReconnectReminder>>,
}

impl RecordingNotifier {
    pub fn count(&self) -> usize {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[async_trait]
impl Notifier for RecordingNotifier {
    async fn sync_failed(&self, n: &FailureNotice) -> Result<()> {
        self.sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(n.clone());
        Ok(())
    }

    async fn sync_recovered(&self, n: &RecoveryNotice) -> Result<()> {
        self.recovered
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(n.clone());
        Ok(())
    }

    async fn reconnect_reminder(&self, r: &ReconnectReminder) -> Result<()> {
        self.reminders
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(r.clone());
        Ok(())
    }
}

/// Told after each sync that wrote points (alert rules are evaluated here).
/// Whatever it does, the sync stands.
#[async_trait]
pub trait SyncObserver: Send + Sync {
    async fn synced(
        &self,
        scope: &kpi_core::WorkspaceScope,
        integration: &kpi_core::Integration,
        window: kpi_core::kpi::DateRange,
    );
}

/// Work the scheduler's tick runs besides fanning syncs out (scheduled
/// reports). Returns how many it did. It stops by `until` (the tick's
/// invocation must end in time) and leaves the rest due for the next tick.
#[async_trait]
pub trait DueWork: Send + Sync {
    async fn run_due(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        until: Option<tokio::time::Instant>,
    ) -> Result<usize>;
}
