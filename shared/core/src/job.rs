//! Sync jobs: one run of one integration's sync, through all its attempts.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{IntegrationId, JobId, WorkspaceId};
use crate::integration::ErrorRecord;
use crate::kpi::DateRange;
use crate::provider::Provider;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Queued,
    Running,
    /// Failed an attempt and waits in the queue for the next one.
    Retrying,
    Succeeded,
    /// Failed with an error that retrying cannot fix.
    Failed,
    /// Out of attempts: its message reached the dead-letter queue.
    Dead,
}

impl JobStatus {
    pub const ALL: [JobStatus; 6] = [
        JobStatus::Queued,
        JobStatus::Running,
        JobStatus::Retrying,
        JobStatus::Succeeded,
        JobStatus::Failed,
        JobStatus::Dead,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Running => "running",
            Self::Retrying => "retrying",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        Self::ALL
            .into_iter()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| Error::validation("status", "unknown job status"))
    }

    pub fn is_final(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Dead)
    }

    pub fn can_become(self, to: JobStatus) -> bool {
        use JobStatus::*;
        match self {
            Queued => matches!(to, Running | Dead),
            // A worker that dies mid-attempt leaves `running`; the redelivered message
            // starts the attempt again, so running -> running is allowed.
            Running => matches!(to, Running | Retrying | Succeeded | Failed | Dead),
            Retrying => matches!(to, Running | Dead),
            Succeeded => false,
            // An operator's retry or a DLQ redrive queues a finished failure again.
            Failed | Dead => matches!(to, Queued | Dead),
        }
    }
}

impl fmt::Display for JobStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobTrigger {
    Schedule,
    Manual,
    Backfill,
    Webhook,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncJob {
    pub id: JobId,
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    pub trigger: JobTrigger,
    /// Days to sync; `None` lets the engine pick (incremental with lookback).
    pub window: Option<DateRange>,
    status: JobStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_written: u64,
    pub provider_calls: u32,
    /// Share of the provider quota left after the last call, when it reports one.
    pub quota_remaining: Option<rust_decimal::Decimal>,
    pub last_error: Option<ErrorRecord>,
    /// How often its message was sent to the queue (the first send included);
    /// a send that failed counts too.
    #[serde(default)]
    pub sends: u32,
    /// When its message last reached the queue; `None` while queued means the
    /// send failed or its outcome was never recorded, so it is sent again.
    /// A job that only waits behind others is never sent twice.
    #[serde(default)]
    pub sent_at: Option<DateTime<Utc>>,
    /// The compare-and-swap version: 1 as created and stored, one more with
    /// each update.
    pub version: u64,
    pub updated_at: DateTime<Utc>,
}

impl SyncJob {
    pub fn new(
        id: JobId,
        workspace: WorkspaceId,
        integration: IntegrationId,
        provider: Provider,
        trigger: JobTrigger,
        window: Option<DateRange>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            workspace,
            integration,
            provider,
            trigger,
            window,
            status: JobStatus::Queued,
            attempts: 0,
            created_at: now,
            started_at: None,
            finished_at: None,
            rows_written: 0,
            provider_calls: 0,
            quota_remaining: None,
            last_error: None,
            sends: 1,
            sent_at: None,
            // As the stores keep it: the job just made is the job stored, so
            // its first update (the scheduler's note that its message was
            // sent) needs no read to learn its version.
            version: 1,
            updated_at: now,
        }
    }

    pub fn status(&self) -> JobStatus {
        self.status
    }

    pub fn transition(&mut self, to: JobStatus, now: DateTime<Utc>) -> Result<(), Error> {
        if !self.status.can_become(to) {
            return Err(Error::conflict(format!(
                "job cannot go from {} to {}",
                self.status, to
            )));
        }
        match to {
            JobStatus::Running => {
                self.attempts += 1;
                self.started_at.get_or_insert(now);
            }
            JobStatus::Queued => {
                self.finished_at = None;
                // Queued anew: its next message is not sent yet.
                self.sent_at = None;
            }
            s if s.is_final() => self.finished_at = Some(now),
            _ => {}
        }
        self.status = to;
        self.updated_at = now;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use JobStatus::*;

    fn job() -> SyncJob {
        SyncJob::new(
            JobId::new_time_ordered(),
            WorkspaceId::parse("ws").unwrap(),
            IntegrationId::new_random(),
            Provider::new("ga4"),
            JobTrigger::Schedule,
            None,
            Utc::now(),
        )
    }

    #[test]
    fn attempts_count_runs_and_final_states_record_the_end() {
        let mut j = job();
        let now = Utc::now();
        j.transition(Running, now).unwrap();
        j.transition(Retrying, now).unwrap();
        j.transition(Running, now).unwrap();
        assert_eq!(j.attempts, 2);
        j.transition(Succeeded, now).unwrap();
        assert_eq!(j.finished_at, Some(now));
        assert!(j.transition(Running, now).is_err());
    }

    #[test]
    fn dead_jobs_can_be_queued_again_but_succeeded_ones_cannot() {
        assert!(Dead.can_become(Queued));
        assert!(Failed.can_become(Queued));
        assert!(!Succeeded.can_become(Queued));
        assert!(!Queued.can_become(Succeeded));
        let mut j = job();
        assert_eq!(
            j.transition(Succeeded, Utc::now()).unwrap_err().code(),
            "conflict"
        );
    }

    #[test]
    fn status_names_round_trip() {
        for s in JobStatus::ALL {
            assert_eq!(JobStatus::parse(s.as_str()).unwrap(), s);
        }
        assert!(JobStatus::parse("done").is_err());
    }
}

/// The body of a sync queue message. Only ids: the worker loads everything else
/// through the workspace scope, so a message can never carry stale data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SyncMessage {
    pub job: JobId,
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    /// The API request that asked for the job, so its logs can be followed
    /// from the request to the worker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl SyncMessage {
    pub fn for_job(job: &SyncJob) -> Self {
        Self {
            job: job.id,
            workspace: job.workspace.clone(),
            integration: job.integration,
            provider: job.provider,
            request_id: None,
        }
    }

    pub fn with_request_id(mut self, request_id: Option<&str>) -> Self {
        // Only a well-formed id travels: it ends up in every log line of the job.
        self.request_id = request_id
            .filter(|r| r.len() <= 128 && r.bytes().all(|b| b.is_ascii_graphic()))
            .map(str::to_owned);
        self
    }
}
