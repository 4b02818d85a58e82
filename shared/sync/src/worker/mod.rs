//! The worker: one queue message, one attempt of one sync job.

mod credentials;
mod record;
mod run;

pub use run::chunks;

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use kpi_core::error::RetryDecision;
use kpi_core::integration::ErrorRecord;
use kpi_core::job::SyncMessage;
use kpi_core::ports::queue::ReceivedMessage;
use kpi_core::ports::{Clock, CredentialVault, Store};
use kpi_core::{
    Error, IntegrationStatus, JobStatus, Provider, Registry, Result, SyncJob, WorkspaceScope,
};
use tracing::Instrument as _;

use crate::dlq::finish_dead;
use crate::metrics;
use crate::notifier::Notifier;
use crate::retry::RetryPolicy;

/// Time kept back from an invocation's budget to record a sync's outcome.
pub const RECORD_RESERVE: Duration = Duration::from_secs(20);

/// What to do with a message after handling it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Delete it: the job succeeded, ended for good, or there was nothing to do.
    Done,
    /// Leave it in the queue, visible again after this delay.
    RetryAfter(Duration),
}

#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub retry: RetryPolicy,
    /// Days synced on a first sync.
    pub backfill_days: u32,
    /// Re-read days per provider on incremental syncs (default: its descriptor's).
    pub lookback_days: HashMap<Provider, u32>,
    /// Refresh tokens expiring within this margin.
    pub refresh_margin: chrono::Duration,
    /// How long one worker holds the refresh lease.
    pub lease_ttl: chrono::Duration,
    /// Longest one provider sync may take before it counts as a timeout.
    pub sync_timeout: Duration,
    /// KPI points per store write of a backfill's earlier windows (the last
    /// window's points are written with the job's success).
    pub upsert_batch: usize,
    /// A job left `running` this long past its attempt's timeout is taken
    /// over by the next delivery (its worker died); before that, a second
    /// delivery waits.
    pub takeover_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            retry: RetryPolicy::default(),
            backfill_days: 90,
            lookback_days: HashMap::new(),
            refresh_margin: chrono::Duration::minutes(5),
            lease_ttl: chrono::Duration::seconds(30),
            sync_timeout: Duration::from_secs(600),
            upsert_batch: 500,
            takeover_grace: Duration::from_secs(60),
        }
    }
}

pub struct Worker {
    pub store: Arc<dyn Store>,
    pub vault: Arc<dyn CredentialVault>,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<dyn Notifier>,
    /// Told after each sync that wrote points (alert rules); `None`: nobody.
    pub observer: Option<Arc<dyn crate::notifier::SyncObserver>>,
    /// The providers this worker can sync (a Lambda worker serves one queue,
    /// but any registered provider's message is handled the same way).
    pub registry: Arc<Registry>,
    pub settings: WorkerSettings,
    /// Names this worker in logs and in the owners of its leases.
    pub id: String,
}

impl Worker {
    /// Handles one message; never panics, whatever the adapter does.
    pub async fn handle(&self, message: &ReceivedMessage) -> Disposition {
        self.handle_within(message, None).await
    }

    /// Handles one message in at most `budget` (a Lambda invocation's remaining
    /// time): provider calls stop [`RECORD_RESERVE`] before it, so the outcome
    /// is recorded and the message retried instead of the function being killed
    /// with the job left `running`.
    pub async fn handle_within(
        &self,
        message: &ReceivedMessage,
        budget: Option<Duration>,
    ) -> Disposition {
        let started = Instant::now();
        let deadline = budget.map(|b| started + b.saturating_sub(RECORD_RESERVE));
        // One span per attempt: every line of it, down to the provider calls,
        // carries the job's ids (filled in once the message is read).
        let span = tracing::info_span!(
            "sync_attempt",
            attempt = message.receive_count,
            job = tracing::field::Empty,
            workspace = tracing::field::Empty,
            integration = tracing::field::Empty,
            provider = tracing::field::Empty,
            request_id = tracing::field::Empty,
        );
        match AssertUnwindSafe(self.attempt(message, started, deadline).instrument(span))
            .catch_unwind()
            .await
        {
            Ok(Ok(d)) => d,
            Ok(Err(e)) => {
                // The store or vault failed around the attempt: try again later.
                tracing::warn!(error = %e.log_chain(), message = %message.message_id, "sync attempt could not be recorded");
                Disposition::RetryAfter(self.settings.retry.delay(message.receive_count, None))
            }
            Err(_) => {
                tracing::error!(message = %message.message_id, "sync attempt panicked");
                // Recorded, so the retry need not wait for a takeover.
                if let Err(e) = self.record_crash(message).await {
                    tracing::warn!(error = %e.log_chain(), "the crashed attempt could not be recorded");
                }
                Disposition::RetryAfter(self.settings.retry.delay(message.receive_count, None))
            }
        }
    }

    async fn attempt(
        &self,
        message: &ReceivedMessage,
        started: Instant,
        deadline: Option<Instant>,
    ) -> Result<Disposition> {
        let Ok(msg) = serde_json::from_str::<SyncMessage>(&message.body) else {
            // Not ours or corrupt: no job to update; retrying cannot help.
            tracing::error!(message = %message.message_id, "unreadable sync message dropped");
            return Ok(Disposition::Done);
        };
        let span = tracing::Span::current();
        span.record("job", tracing::field::display(msg.job));
        span.record("workspace", tracing::field::display(&msg.workspace));
        span.record("integration", tracing::field::display(msg.integration));
        span.record("provider", tracing::field::display(msg.provider));
        if let Some(r) = &msg.request_id {
            span.record("request_id", r.as_str());
        }
        tracing::info!("sync attempt started");
        let scope =
            WorkspaceScope::for_system(msg.workspace.clone(), "sync message sent by the system");
        let job = match self.store.get_job(&scope, msg.job).await {
            Ok(job) => job,
            Err(e) if e.is_not_found() => return Ok(Disposition::Done),
            Err(e) => return Err(e),
        };
        if crate::settled::Consumer::Worker.done_with(job.status()) {
            // Redelivered after it finished: at-least-once delivery, exactly-once work.
            return Ok(Disposition::Done);
        }
        let integration = match self.store.get_integration(&scope, job.integration).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => {
                self.end_job(
                    &scope,
                    job,
                    JobStatus::Failed,
                    &Error::not_found("the integration was removed"),
                )
                .await?;
                return Ok(Disposition::Done);
            }
            Err(e) => return Err(e),
        };
        // Scheduled jobs are made for connected integrations only; a person's
        // "Sync now" also tries one in `error`, which a success brings back.
        if !integration.status().accepts_manual_sync() {
            let why = Error::conflict(format!("the integration is {}", integration.status()));
            self.end_job(&scope, job, JobStatus::Failed, &why).await?;
            return Ok(Disposition::Done);
        }
        let now = self.clock.now();
        if job.status() == JobStatus::Running {
            // Another copy of this message is being worked on (at-least-once
            // delivery): leave it alone until that attempt would have timed
            // out; a worker that died mid-job is replaced after that.
            let busy_until = job.updated_at
                + chrono::Duration::from_std(
                    self.settings.sync_timeout + self.settings.takeover_grace,
                )
                .unwrap_or_default();
            if busy_until > now {
                let wait = (busy_until - now).to_std().unwrap_or_default();
                tracing::info!(
                    wait_ms = wait.as_millis() as u64,
                    "the job is running elsewhere; looking again later"
                );
                return Ok(Disposition::RetryAfter(wait));
            }
        }
        let claimed = match claim(&*self.store, &scope, &job, now).await {
            Err(e) if e.is_conflict() => None,
            other => other?,
        };
        let Some(mut job) = claimed else {
            // Another worker has this job right now: look again later.
            return Ok(Disposition::RetryAfter(self.settings.retry.delay(1, None)));
        };

        // What this attempt last read or wrote of the integration: its later
        // writes apply only while the user has not changed it meanwhile.
        let mut current = integration.clone();
        let outcome = self.run(&scope, &mut current, &job, deadline).await;
        let now = self.clock.now();
        // The success and the last points in one write. Losing the job to
        // another attempt ends this one as before; a store that fails to take
        // the points fails the attempt like a failed upsert (retried).
        let outcome = match outcome {
            Ok(ran) => {
                let mut done = job.clone();
                done.rows_written = ran.result.points.len() as u64;
                done.provider_calls = ran.result.provider_calls;
                done.quota_remaining = ran.result.quota_remaining;
                done.last_error = None;
                done.transition(JobStatus::Succeeded, now)?;
                match self
                    .store
                    .update_job_with_kpis(&scope, &done, ran.unwritten())
                    .await
                {
                    Ok(done) => Ok((done, ran.window)),
                    Err(e) if e.is_conflict() || e.is_not_found() => return Err(e),
                    Err(e) => Err((e, ran.result.provider_calls)),
                }
            }
            Err(failed) => Err(failed),
        };
        let disposition = match outcome {
            Ok((job, window)) => {
                // The job is done whatever happens next: a failure to note the
                // success on the integration must not run the job again.
                // The run of failures this success ends, if any.
                let ended_run = std::sync::Mutex::new(None);
                match self
                    .mark_integration(&scope, &integration, |i| {
                        *ended_run.lock().unwrap_or_else(|e| e.into_inner()) = i.failing_since;
                        i.failing_since = None;
                        i.last_sync_at = Some(now);
                        i.last_success_at = Some(now);
                        i.last_error = None;
                        if i.active_job == Some(job.id) {
                            i.active_job = None;
                        }
                        if i.status() == IntegrationStatus::Error {
                            i.transition(IntegrationStatus::Connected, now)?;
                        }
                        // Whatever started it, a fresh sync moves the next
                        // scheduled one.
                        if i.status().is_syncable() {
                            i.next_sync_at = Some(i.following_sync(now));
                        }
                        Ok(())
                    })
                    .await
                {
                    Ok(marked) => {
                        let ended = *ended_run.lock().unwrap_or_else(|e| e.into_inner());
                        let after = async {
                            if let Some(failing_since) = ended {
                                let notice = crate::notifier::RecoveryNotice {
                                    workspace: marked.workspace.clone(),
                                    integration: marked.id,
                                    provider: marked.provider,
                                    display_name: marked.display_name.clone(),
                                    failing_since,
                                    job: job.id,
                                };
                                if let Err(e) = self.notifier.sync_recovered(&notice).await {
                                    tracing::warn!(integration = %marked.id, error = %e.log_chain(), "recovery notice not sent");
                                }
                            }
                            self.remind_before_expiry(&scope, &marked, now).await;
                            if let Some(observer) = &self.observer
                                && job.rows_written > 0
                            {
                                observer.synced(&scope, &marked, window).await;
                            }
                        };
                        // The job is done and recorded; what follows (emails,
                        // alert rules) must not outlive the invocation, which
                        // would fail the whole batch. It may use half the
                        // reserve; cut short, it is logged, and the rules are
                        // evaluated again after the next sync.
                        match deadline {
                            Some(d) => {
                                let until = tokio::time::Instant::from_std(d + RECORD_RESERVE / 2);
                                if tokio::time::timeout_at(until, after).await.is_err() {
                                    tracing::warn!(integration = %marked.id, "the work after the sync ran out of the invocation's time and was cut short");
                                }
                            }
                            None => after.await,
                        }
                    }
                    Err(e) => {
                        tracing::warn!(integration = %integration.id, error = %e.log_chain(), "could not record the last success");
                    }
                }
                metrics::record_attempt(&job, started.elapsed(), now.timestamp_millis());
                tracing::info!(
                    rows = job.rows_written,
                    calls = job.provider_calls,
                    "sync job succeeded"
                );
                Disposition::Done
            }
            Err((e, calls)) => {
                tracing::warn!(error = %e.log_chain(), calls, "sync attempt failed");
                job.provider_calls = calls;
                job.last_error = Some(ErrorRecord::from_error(&e, now));
                match e.retry_decision() {
                    RetryDecision::Retry { after } => {
                        job.transition(JobStatus::Retrying, now)?;
                        let job = self.store.update_job(&scope, &job).await?;
                        metrics::record_attempt(&job, started.elapsed(), now.timestamp_millis());
                        Disposition::RetryAfter(
                            self.settings.retry.delay(message.receive_count, after),
                        )
                    }
                    RetryDecision::GiveUp => {
                        // Retrying cannot help: the job ends now, as if dead-lettered.
                        let job = finish_dead(
                            &*self.store,
                            &*self.notifier,
                            &scope,
                            job,
                            &e,
                            now,
                            Some(&current),
                        )
                        .await?;
                        metrics::record_attempt(&job, started.elapsed(), now.timestamp_millis());
                        Disposition::Done
                    }
                }
            }
        };
        Ok(disposition)
    }
}

/// Takes job `seen` (as this attempt read it) for this attempt: `Running`,
/// one attempt more. `None` when another worker took it (or ended an attempt
/// of it) since that read.
///
/// Bookkeeping written since the read does not count: the enqueuer notes a
/// job's message as sent (`sent_at`) just after sending it, so a worker that
/// receives the message at once often reads the job before that note lands.
/// Losing the claim to it would put the job off by a whole retry delay; the
/// claim is made again on the job read afresh instead.
pub async fn claim(
    store: &dyn Store,
    scope: &WorkspaceScope,
    seen: &SyncJob,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<SyncJob>> {
    // A job that cannot run (a final one) is an error, as it always was.
    seen.clone().transition(JobStatus::Running, now)?;
    crate::cas::modify_job(store, scope, seen, |j| {
        j.status() == seen.status()
            && j.attempts == seen.attempts
            && j.transition(JobStatus::Running, now).is_ok()
    })
    .await
}

/// Read-modify-write of an integration (the one policy of `kpi_sync::cas`).
pub use crate::cas::modify_integration as mark_integration;
/// The same, dropped when the user reconnected or disconnected since `read`.
pub use crate::cas::modify_integration_if_unchanged as mark_if_unchanged;
