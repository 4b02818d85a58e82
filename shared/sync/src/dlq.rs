//! The end of a job that cannot succeed: its message ran out of receives (DLQ)
//! or it failed with an error that retrying cannot fix.

use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use kpi_core::integration::ErrorRecord;
use kpi_core::job::SyncMessage;
use kpi_core::ports::queue::ReceivedMessage;
use kpi_core::ports::{Clock, Store};
use kpi_core::{Error, Integration, IntegrationStatus, JobStatus, Result, SyncJob, WorkspaceScope};

use crate::notifier::{FailureNotice, Notifier};
use crate::worker::{Disposition, mark_if_unchanged, mark_integration};

/// At most one failure notice per integration in this period.
pub const NOTICE_PERIOD_HOURS: i64 = 24;

/// After a job that an outage outlasted, the integration's next sync comes
/// no later than this: an outage costs at most this much more than itself,
/// not a whole sync interval (six hours by default), and a long outage costs
/// the provider one job's retries per half hour.
pub const RESYNC_AFTER_OUTAGE: Duration = Duration::minutes(30);

/// Marks `job` dead with `error`, records the failure on its integration, and
/// sends a failure notice unless one went out for this integration in the
/// last day.
///
/// The integration's status moves only for errors that retrying cannot fix
/// (`error` for configuration, `needs_reauth` for credentials), and only with
/// `read` — what the failed attempt saw of it — while the user has not
/// reconnected or disconnected since. A transient or rate-limited failure
/// that used up its retries (a provider outage) leaves it `connected` and
/// scheduled, its next sync brought forward to [`RESYNC_AFTER_OUTAGE`] from
/// now; the first sync that succeeds ends the run of failures. Without `read` (the dead-letter
/// handler, the scheduler's give-ups) nothing is known of the attempt's view,
/// so the status is never changed there: a reconnect made meanwhile stands.
pub async fn finish_dead(
    store: &dyn Store,
    notifier: &dyn Notifier,
    scope: &WorkspaceScope,
    mut job: SyncJob,
    error: &Error,
    now: DateTime<Utc>,
    read: Option<&Integration>,
) -> Result<SyncJob> {
    let target = error.integration_status().filter(|_| read.is_some());
    let record = ErrorRecord::from_error(error, now);
    let clock = FixedClock(now);
    let job_id = job.id;
    let mark = |i: &mut Integration| {
        i.last_error = Some(record.clone());
        i.failing_since.get_or_insert(now);
        i.last_sync_at = Some(now);
        if i.active_job == Some(job_id) {
            i.active_job = None;
        }
        if error.integration_status().is_none()
            && let Some(next) = i.next_sync_at
        {
            i.next_sync_at = Some(next.min(now + RESYNC_AFTER_OUTAGE));
        }
        if let Some(target) = target
            && i.status() != target
            && i.status().can_become(target)
            && i.status() != IntegrationStatus::Paused
        {
            i.transition(target, now)?;
        }
        Ok(())
    };
    let marked = match read {
        Some(read) => mark_if_unchanged(store, &clock, scope, read, mark).await,
        None => mark_integration(store, &clock, scope, job.integration, mark)
            .await
            .map(Some),
    };
    let integration = match marked {
        Ok(i) => i,
        Err(e) if e.is_not_found() => None,
        Err(e) => return Err(e),
    };
    // The job's end is written last: whoever sees it dead (the jobs list, a
    // script polling it) finds the integration's status and error already
    // telling why. Cut short before this write, the message comes again.
    // (A dead-lettered copy racing a late success may leave the failure on
    // the integration until its next sync clears it; nothing is lost.)
    if job.status() != JobStatus::Dead {
        job.last_error = Some(record);
        job.transition(JobStatus::Dead, now)?;
        job = store.update_job(scope, &job).await?;
    }
    // One notice per run of failures: when this failure began the run (and,
    // as a second guard, none went out for the integration in the last day).
    let key = format!("failure-notice:{}", job.integration);
    let Some(integration) = integration else {
        return Ok(job);
    };
    if integration.failing_since == Some(now)
        && store
            .first_seen(&key, now + Duration::hours(NOTICE_PERIOD_HOURS), now)
            .await?
    {
        let notice = FailureNotice {
            workspace: job.workspace.clone(),
            integration: job.integration,
            provider: job.provider,
            display_name: integration.display_name.clone(),
            job: job.id,
            error_code: error.code().to_owned(),
            error_message: error.message().to_owned(),
        };
        // A notice that cannot be sent is logged, not retried forever: the job
        // record and the integration status already tell the story.
        if let Err(e) = notifier.sync_failed(&notice).await {
            tracing::error!(integration = %job.integration, error = %e.log_chain(), "failure notice not sent");
        }
    }
    Ok(job)
}

struct FixedClock(DateTime<Utc>);

impl Clock for FixedClock {
    fn now(&self) -> DateTime<Utc> {
        self.0
    }
}

/// Consumes dead-lettered sync messages.
pub struct DlqHandler {
    pub store: Arc<dyn Store>,
    pub notifier: Arc<dyn Notifier>,
    pub clock: Arc<dyn Clock>,
}

impl DlqHandler {
    pub async fn handle(&self, message: &ReceivedMessage) -> Disposition {
        match self.attempt(message).await {
            Ok(()) => Disposition::Done,
            Err(e) => {
                tracing::warn!(error = %e.log_chain(), "dead-letter handling failed; will retry");
                Disposition::RetryAfter(std::time::Duration::from_secs(30))
            }
        }
    }

    async fn attempt(&self, message: &ReceivedMessage) -> Result<()> {
        let Ok(msg) = serde_json::from_str::<SyncMessage>(&message.body) else {
            tracing::error!(message = %message.message_id, "unreadable dead-lettered message dropped");
            return Ok(());
        };
        let scope = WorkspaceScope::for_system(msg.workspace.clone(), "dead-lettered sync message");
        let job = match self.store.get_job(&scope, msg.job).await {
            Ok(job) => job,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => return Err(e),
        };
        if crate::settled::Consumer::DeadLetters.done_with(job.status()) {
            return Ok(()); // a late duplicate of a finished job
        }
        let last = job
            .last_error
            .as_ref()
            .map(|e| format!("{} ({})", e.message, e.code))
            .unwrap_or_else(|| "no attempt finished".to_owned());
        let error = Error::transient(format!(
            "gave up after {} attempts; last error: {last}",
            job.attempts
        ));
        finish_dead(
            &*self.store,
            &*self.notifier,
            &scope,
            job,
            &error,
            self.clock.now(),
            None,
        )
        .await?;
        Ok(())
    }
}
