//! Sync-failure notices. The Resend-backed notifier arrives with the Resend
//! integration; until then the dev server logs notices and tests record them.

use std::sync::Mutex;

use async_trait::async_trait;
use kpi_core::{IntegrationId, JobId, Provider, Result, WorkspaceId};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureNotice {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    pub job: JobId,
    pub error_code: String,
    pub error_message: String,
}

#[async_trait]
pub trait Notifier: Send + Sync {
    async fn sync_failed(&self, notice: &FailureNotice) -> Result<()>;
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
}

/// Keeps every notice, for tests.
#[derive(Default)]
pub struct RecordingNotifier {
    pub sent: Mutex<Vec<FailureNotice>>,
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
}
