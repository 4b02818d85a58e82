//! The worker: one queue message, one attempt of one sync job.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, Utc};
use futures::FutureExt as _;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::error::RetryDecision;
use kpi_core::integration::ErrorRecord;
use kpi_core::job::SyncMessage;
use kpi_core::kpi::DateRange;
use kpi_core::ports::provider::{ProviderAdapter, SyncRequest, SyncResult};
use kpi_core::ports::queue::ReceivedMessage;
use kpi_core::ports::{Clock, CredentialContext, CredentialVault, Store};
use kpi_core::{
    Error, Integration, IntegrationStatus, JobStatus, Provider, Registry, Result, SyncJob,
    WorkspaceScope,
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
    /// KPI points per store write.
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

    /// Marks the job of a crashed attempt as waiting for its retry.
    async fn record_crash(&self, message: &ReceivedMessage) -> Result<()> {
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
        let mut job = match self.store.get_job(&scope, msg.job).await {
            Ok(job) => job,
            Err(e) if e.is_not_found() => return Ok(Disposition::Done),
            Err(e) => return Err(e),
        };
        if job.status().is_final() {
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
        job.transition(JobStatus::Running, now)?;
        let mut job = match self.store.update_job(&scope, &job).await {
            Ok(j) => j,
            // Another worker has this job right now: look again later.
            Err(e) if e.is_conflict() => {
                return Ok(Disposition::RetryAfter(self.settings.retry.delay(1, None)));
            }
            Err(e) => return Err(e),
        };

        // What this attempt last read or wrote of the integration: its later
        // writes apply only while the user has not changed it meanwhile.
        let mut current = integration.clone();
        let outcome = self.run(&scope, &mut current, &job, deadline).await;
        let now = self.clock.now();
        let disposition = match outcome {
            Ok((result, window)) => {
                job.rows_written = result.points.len() as u64;
                job.provider_calls = result.provider_calls;
                job.quota_remaining = result.quota_remaining;
                job.last_error = None;
                job.transition(JobStatus::Succeeded, now)?;
                let job = self.store.update_job(&scope, &job).await?;
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

    /// Credentials, refresh, the provider calls and the upsert. Errors carry the
    /// provider calls made so far.
    async fn run(
        &self,
        scope: &WorkspaceScope,
        current: &mut Integration,
        job: &SyncJob,
        deadline: Option<Instant>,
    ) -> std::result::Result<(SyncResult, kpi_core::kpi::DateRange), (Error, u32)> {
        let integration = current.clone();
        let adapter = self
            .registry
            .adapter(integration.provider)
            .cloned()
            .map_err(|e| (e, 0))?;
        let max_window_days = adapter.descriptor().max_window_days;
        if let Some(at) = integration.credentials_expire_at
            && at <= self.clock.now()
        {
            // Nothing to refresh with: only the user can reconnect.
            return Err((
                Error::reauth(format!(
                    "the {} connection expired on {}; reconnect the integration",
                    adapter.descriptor().display_name,
                    at.date_naive()
                )),
                0,
            ));
        }
        let (integration, credentials) = self
            .fresh_credentials(scope, &integration, &*adapter)
            .await
            .map_err(|e| (e, 0))?;
        *current = integration.clone();
        let today = self.clock.now().date_naive();
        let window = job.window.unwrap_or_else(|| {
            self.window_for(&integration, adapter.descriptor().lookback_days, today)
        });
        let mut total = SyncResult::default();
        for chunk in chunks(window, max_window_days) {
            let records = ScopedRecords {
                store: &*self.store,
                scope,
            };
            let request = SyncRequest {
                integration: &integration,
                credentials: &credentials,
                window: chunk,
                records: Some(&records),
            };
            let timeout = match deadline {
                Some(d) => self
                    .settings
                    .sync_timeout
                    .min(d.saturating_duration_since(Instant::now())),
                None => self.settings.sync_timeout,
            };
            if timeout.is_zero() {
                return Err((
                    Error::transient(
                        "the worker ran out of time in this invocation; the next delivery goes on",
                    ),
                    total.provider_calls,
                ));
            }
            let result = match tokio::time::timeout(timeout, adapter.sync(request)).await {
                Ok(Ok(r)) => r,
                Ok(Err(e)) => return Err((e, total.provider_calls)),
                Err(_) => {
                    return Err((
                        Error::transient(format!(
                            "{} did not finish in time",
                            integration.provider
                        )),
                        total.provider_calls,
                    ));
                }
            };
            total.provider_calls += result.provider_calls;
            if let Some(refreshed) = result.refreshed_credentials.clone() {
                // The adapter refreshed mid-sync (a 401 answered by a refresh):
                // keep the new token, compare-and-swap like the leased refresh.
                if let Some(stored) = self
                    .store_credentials(scope, current, &credentials, refreshed)
                    .await
                    .map_err(|e| (e, total.provider_calls))?
                {
                    *current = stored;
                }
            }
            total.quota_remaining = match (total.quota_remaining, result.quota_remaining) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
            for batch in result.points.chunks(self.settings.upsert_batch.max(1)) {
                if let Some(p) = batch.iter().find(|p| {
                    p.integration != integration.id || p.workspace != integration.workspace
                }) {
                    return Err((
                        Error::internal(format!(
                            "adapter returned a point of another integration ({})",
                            p.integration
                        )),
                        total.provider_calls,
                    ));
                }
                self.store
                    .upsert_kpis(scope, batch)
                    .await
                    .map_err(|e| (e, total.provider_calls))?;
            }
            total.points.extend(result.points);
        }
        Ok((total, window))
    }

    /// The window of an unscheduled sync: a backfill the first time, then from
    /// the last success minus the provider's lookback (`default_lookback` unless
    /// the settings override it).
    pub fn window_for(
        &self,
        integration: &Integration,
        default_lookback: u32,
        today: NaiveDate,
    ) -> DateRange {
        let from = match integration.last_success_at {
            None => {
                today - chrono::Duration::days(i64::from(self.settings.backfill_days.max(1)) - 1)
            }
            Some(last) => {
                let lookback = self
                    .settings
                    .lookback_days
                    .get(&integration.provider)
                    .copied()
                    .unwrap_or(default_lookback);
                last.date_naive().min(today) - chrono::Duration::days(i64::from(lookback))
            }
        };
        DateRange { from, to: today }
    }

    /// The integration's credentials, refreshed first when they are about to
    /// expire. One worker per integration refreshes (a lease); the others wait
    /// for its result and re-read instead of refreshing too.
    async fn fresh_credentials(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        adapter: &dyn ProviderAdapter,
    ) -> Result<(Integration, ConnectionCredentials)> {
        let mut current = integration.clone();
        let lease = format!("refresh:{}", integration.id);
        // The owner is this attempt, not this process: two records of one
        // Lambda batch must not both hold the lease and refresh together.
        let owner = format!("{}:{}", self.id, uuid::Uuid::new_v4());
        for _ in 0..100 {
            let credentials = self.open(&current).await?;
            let now = self.clock.now();
            if !self.needs_refresh(&credentials, now) {
                return Ok((current, credentials));
            }
            if self
                .store
                .try_acquire_lease(&lease, &owner, now + self.settings.lease_ttl, now)
                .await?
            {
                let result = self
                    .refresh_holding_lease(scope, &current, credentials, adapter)
                    .await;
                let _ = self.store.release_lease(&lease, &owner).await;
                match result {
                    Ok(done) => return Ok(done),
                    // Someone changed the record meanwhile: read again and decide anew.
                    Err(e) if e.is_conflict() => {}
                    Err(e) => return Err(e),
                }
            } else {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            current = self.store.get_integration(scope, integration.id).await?;
            if current.status() != IntegrationStatus::Connected {
                return Err(Error::reauth("the integration needs to be reconnected"));
            }
        }
        Err(Error::transient(
            "another worker is still refreshing the token",
        ))
    }

    async fn refresh_holding_lease(
        &self,
        scope: &WorkspaceScope,
        current: &Integration,
        credentials: ConnectionCredentials,
        adapter: &dyn ProviderAdapter,
    ) -> Result<(Integration, ConnectionCredentials)> {
        // Re-read under the lease: the previous holder may have just refreshed.
        let latest = self.store.get_integration(scope, current.id).await?;
        let latest_credentials = self.open(&latest).await?;
        if !self.needs_refresh(&latest_credentials, self.clock.now()) {
            return Ok((latest, latest_credentials));
        }
        let _ = credentials;
        let refreshed = match adapter.refresh(&latest_credentials).await {
            Ok(r) => keep_refresh_token(&latest_credentials, r),
            Err(e) => {
                if e.is_reauth() {
                    let now = self.clock.now();
                    let record = ErrorRecord::from_error(&e, now);
                    // Not if the user reconnected meanwhile: the new grant stands.
                    let _ = mark_if_unchanged(&*self.store, &*self.clock, scope, &latest, |i| {
                        i.last_error = Some(record.clone());
                        if i.status() == IntegrationStatus::Connected {
                            i.transition(IntegrationStatus::NeedsReauth, now)?;
                        }
                        Ok(())
                    })
                    .await;
                }
                return Err(e);
            }
        };
        // What the provider returned is kept whatever bookkeeping happened to
        // the record meanwhile (a rotated refresh token is the only one that
        // works now); only a reconnect or disconnect by the user wins, and
        // then the caller reads again and uses theirs.
        let sealed = self
            .vault
            .seal(&CredentialContext::of(&latest), &refreshed)
            .await?;
        match mark_if_unchanged(&*self.store, &*self.clock, scope, &latest, |i| {
            i.credentials = Some(sealed.clone());
            Ok(())
        })
        .await?
        {
            Some(stored) => Ok((stored, refreshed)),
            None => Err(Error::conflict(
                "the integration was reconnected or disconnected during the refresh",
            )),
        }
    }

    /// Stores credentials the adapter renewed, unless the user reconnected or
    /// disconnected since `read`: then theirs stand and these are dropped.
    async fn store_credentials(
        &self,
        scope: &WorkspaceScope,
        read: &Integration,
        old: &ConnectionCredentials,
        new: ConnectionCredentials,
    ) -> Result<Option<Integration>> {
        let new = keep_refresh_token(old, new);
        let sealed = self.vault.seal(&CredentialContext::of(read), &new).await?;
        let stored = mark_if_unchanged(&*self.store, &*self.clock, scope, read, |i| {
            i.credentials = Some(sealed.clone());
            Ok(())
        })
        .await?;
        if stored.is_none() {
            tracing::info!(
                "renewed credentials dropped: the integration was reconnected or disconnected meanwhile"
            );
        }
        Ok(stored)
    }

    fn needs_refresh(&self, credentials: &ConnectionCredentials, now: DateTime<Utc>) -> bool {
        match credentials {
            ConnectionCredentials::OAuth(t) => {
                t.refresh_token.is_some() && t.expires_within(now, self.settings.refresh_margin)
            }
            ConnectionCredentials::ApiKey { .. } => false,
        }
    }

    async fn open(&self, integration: &Integration) -> Result<ConnectionCredentials> {
        let sealed = integration
            .credentials
            .as_ref()
            .ok_or_else(|| Error::reauth("the integration has no credentials; reconnect it"))?;
        self.vault
            .open(&CredentialContext::of(integration), sealed)
            .await
    }

    async fn end_job(
        &self,
        scope: &WorkspaceScope,
        mut job: SyncJob,
        to: JobStatus,
        why: &Error,
    ) -> Result<()> {
        let now = self.clock.now();
        job.last_error = Some(ErrorRecord::from_error(why, now));
        if job.status() == JobStatus::Queued || job.status() == JobStatus::Retrying {
            job.transition(JobStatus::Running, now)?;
        }
        job.transition(to, now)?;
        self.store.update_job(scope, &job).await?;
        Ok(())
    }

    /// Credentials that cannot be refreshed and expire within a week: one
    /// reconnect reminder per expiry. The integration is marked first
    /// (compare-and-swap), so of two workers only one reminds.
    async fn remind_before_expiry(
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

    async fn mark_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
        change: impl Fn(&mut Integration) -> Result<()>,
    ) -> Result<Integration> {
        mark_integration(&*self.store, &*self.clock, scope, integration.id, change).await
    }
}

/// Read-modify-write of an integration (the one policy of `kpi_sync::cas`).
pub use crate::cas::modify_integration as mark_integration;
/// The same, dropped when the user reconnected or disconnected since `read`.
pub use crate::cas::modify_integration_if_unchanged as mark_if_unchanged;

/// Providers that do not rotate refresh tokens send none back: keep the old one.
fn keep_refresh_token(
    old: &ConnectionCredentials,
    new: ConnectionCredentials,
) -> ConnectionCredentials {
    match (old, new) {
        (ConnectionCredentials::OAuth(o), ConnectionCredentials::OAuth(mut n)) => {
            if n.refresh_token.is_none() {
                n.refresh_token = o.refresh_token.clone();
            }
            if n.scopes.is_empty() {
                n.scopes = o.scopes.clone();
            }
            ConnectionCredentials::OAuth(n)
        }
        (_, n) => n,
    }
}

/// Splits `window` into consecutive windows of at most `days` days.
pub fn chunks(window: DateRange, days: u32) -> Vec<DateRange> {
    let days = i64::from(days.max(1));
    let mut out = Vec::new();
    let mut from = window.from;
    while from <= window.to {
        let to = (from + chrono::Duration::days(days - 1)).min(window.to);
        out.push(DateRange { from, to });
        from = to + chrono::Duration::days(1);
    }
    out
}

/// The store's records of one workspace, as a sync reads them.
struct ScopedRecords<'a> {
    store: &'a dyn Store,
    scope: &'a WorkspaceScope,
}

#[async_trait::async_trait]
impl kpi_core::ports::provider::SentEmails for ScopedRecords<'_> {
    async fn sent_by(
        &self,
        integration: &Integration,
        from: chrono::DateTime<chrono::Utc>,
        to: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<kpi_core::ports::store::EmailRecord>> {
        self.store
            .emails_sent_by(self.scope, integration.id, from, to)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backfills_are_chunked_without_gaps_or_overlaps() {
        let d = |m, day| NaiveDate::from_ymd_opt(2026, m, day).unwrap();
        let parts = chunks(
            DateRange {
                from: d(1, 1),
                to: d(3, 31),
            },
            30,
        );
        assert_eq!(parts.len(), 3);
        assert_eq!(
            parts[0],
            DateRange {
                from: d(1, 1),
                to: d(1, 30)
            }
        );
        assert_eq!(parts[2].to, d(3, 31));
        for w in parts.windows(2) {
            assert_eq!(w[0].to + chrono::Duration::days(1), w[1].from);
        }
        assert_eq!(
            chunks(
                DateRange {
                    from: d(5, 5),
                    to: d(5, 5)
                },
                90
            )
            .len(),
            1
        );
    }
}
