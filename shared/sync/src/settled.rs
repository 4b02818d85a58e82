//! What the store alone can tell of a sync message: that nothing is left to
//! do for it (its job is gone, or ended as far as its consumer is concerned).
//!
//! The consumers judge a job's status by the same rule
//! ([`Consumer::done_with`]), and a Lambda asks [`settled`] before its
//! configuration is ready: a late duplicate, or the message of a removed
//! integration, needs neither the application secret nor a provider, so a
//! cold function answers it without waiting for either.

use kpi_core::job::SyncMessage;
use kpi_core::ports::Store;
use kpi_core::{JobStatus, Result, WorkspaceScope};

/// Who reads a sync message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consumer {
    /// A provider's worker: runs the job.
    Worker,
    /// The dead-letter handler: ends a job that ran out of receives.
    DeadLetters,
}

impl Consumer {
    /// Whether a job in `status` needs nothing more from this consumer.
    pub fn done_with(self, status: JobStatus) -> bool {
        match self {
            Self::Worker => status.is_final(),
            // A job that failed (its integration was removed or paused) still
            // becomes dead, with its notice, when its message is dead-lettered.
            Self::DeadLetters => matches!(status, JobStatus::Succeeded | JobStatus::Dead),
        }
    }
}

/// What the store alone says of one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Settled {
    /// Its job is gone, or done with as far as the consumer is concerned.
    Yes,
    /// Not a sync message: every consumer drops it (and logs it).
    Unreadable,
    /// The consumer has work to do.
    No,
}

/// Looks the message's job up in the store.
pub async fn settled(store: &dyn Store, consumer: Consumer, body: &str) -> Result<Settled> {
    let Ok(msg) = serde_json::from_str::<SyncMessage>(body) else {
        return Ok(Settled::Unreadable);
    };
    let scope = WorkspaceScope::for_system(msg.workspace, "sync message sent by the system");
    match store.get_job(&scope, msg.job).await {
        Ok(job) if consumer.done_with(job.status()) => Ok(Settled::Yes),
        Ok(_) => Ok(Settled::No),
        Err(e) if e.is_not_found() => Ok(Settled::Yes),
        Err(e) => Err(e),
    }
}
