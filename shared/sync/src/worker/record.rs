//! Recording outcomes: crashed attempts, jobs ended early, and the integration's bookkeeping after a sync.

use kpi_core::integration::ErrorRecord;
use kpi_core::job::SyncMessage;
use kpi_core::ports::queue::ReceivedMessage;
use kpi_core::{Error, Integration, JobStatus, Result, SyncJob, WorkspaceScope};

use super::{Worker, mark_integration};

impl Worker {
    /// Marks the job of a crashed attempt as waiting for its retry.
    pub(super) async fn record_crash(&self, message: &ReceivedMessage) -> Result<()> {
        let Ok(msg) = serde_json::from_str::<SyncMessage>(&message.body) else {
            return Ok(());
        };
        let scope = WorkspaceScope::for_system(msg.workspace, "sync message sent by the system");
        let mut job = self.store.get_job(&scope, msg.job).await?;
        if job.status() == JobStatus::Running {
            let now = self.clock.now();
            job.last_error = Some(ErrorRecord::from_error(
                &Error::internal("the sync attempt crashed; it is tried again"),
                now,
            ));
            job.transition(JobStatus::Retrying, now)?;
            self.store.update_job(&scope, &job).await?;
        }
        Ok(())
    }

    /// Ends `job` (as last read) with `to`, saying `why`; after a lost race
    /// (the note that its message was sent lands after the read) on the job
    /// read again, unless that one has ended meanwhile.
    pub(super) async fn end_job(
        &self,
        scope: &WorkspaceScope,
        job: SyncJob,
        to: JobStatus,
        why: &Error,
    ) -> Result<()> {
        let now = self.clock.now();
        let record = ErrorRecord::from_error(why, now);
        crate::cas::modify_job(&*self.store, scope, &job, |j| {
            if j.status().is_final() {
                return false;
            }
            j.last_error = Some(record.clone());
            let waiting = j.status() == JobStatus::Queued || j.status() == JobStatus::Retrying;
            (!waiting || j.transition(JobStatus::Running, now).is_ok())
                && j.transition(to, now).is_ok()
        })
        .await?;
        Ok(())
    }

    /// Credentials that cannot be refreshed and expire within a week: one
    /// reconnect reminder per expiry. The integration is marked first
    /// (compare-and-swap), so of two workers only one reminds.
    pub(super) async fn remind_before_expiry(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        now: chrono::DateTime<chrono::Utc>,
    ) {
        let Some(expires_at) = integration.credentials_expire_at else {
            return;
        };
        if !integration.expires_soon(now) || integration.reminded_for == Some(expires_at) {
            return;
        }
        let marked = self
            .mark_integration(scope, integration, |i| {
                if i.reminded_for == Some(expires_at) || i.credentials_expire_at != Some(expires_at)
                {
                    return Err(Error::conflict("already reminded"));
                }
                i.reminded_for = Some(expires_at);
                Ok(())
            })
            .await;
        let Ok(marked) = marked else {
            return;
        };
        let reminder = crate::notifier::ReconnectReminder {
            workspace: marked.workspace.clone(),
            integration: marked.id,
            provider: marked.provider,
            display_name: marked.display_name.clone(),
            expires_at,
        };
        match self.notifier.reconnect_reminder(&reminder).await {
            Ok(()) => {
                tracing::info!(integration = %marked.id, %expires_at, "reconnect reminder sent")
            }
            Err(e) => {
                tracing::warn!(integration = %marked.id, error = %e.log_chain(), "reconnect reminder not sent")
            }
        }
    }

    pub(super) async fn mark_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        change: impl Fn(&mut Integration) -> Result<()>,
    ) -> Result<Integration> {
        mark_integration(&*self.store, &*self.clock, scope, integration.id, change).await
    }
}
