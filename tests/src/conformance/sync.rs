//! The sync engine on a pair of backends (store + queue): the same cases run on
//! SQLite with the in-process queue and on DynamoDB with SQS through moto.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::job::{JobTrigger, SyncMessage};
use kpi_core::kpi::DateRange;
use kpi_core::ports::clock::ManualClock;
use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::ports::store::KpiQuery;
use kpi_core::ports::{
    Clock, CredentialContext, CredentialVault, Queue, QueueName, Store, SystemClock,
};
use kpi_core::{
    Integration, IntegrationId, IntegrationStatus, JobId, JobStatus, Provider, Registry, SyncJob,
    WorkspaceId, WorkspaceScope,
};
use kpi_sync::dlq::DlqHandler;
use kpi_sync::mock::{MockAdapter, Outcome};
use kpi_sync::notifier::RecordingNotifier;
use kpi_sync::runner::poll_once;
use kpi_sync::scheduler::SchedulerSettings;
use kpi_sync::{RetryPolicy, Scheduler, SchedulerReport, Worker, WorkerSettings};
use secrecy::SecretString;

use crate::GA4_SESSIONS;
use crate::fixtures::Guard;

pub const WORK: QueueName = QueueName::Work(kpi_providers::ga4::ID);
pub const DLQ: QueueName = QueueName::DeadLetter(kpi_providers::ga4::ID);
/// Receives before the DLQ, for the engine's backends.
pub const ENGINE_MAX_RECEIVES: u32 = 4;

pub struct Engine {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub vault: Arc<dyn CredentialVault>,
    pub clock: Arc<dyn Clock>,
    pub notifier: Arc<RecordingNotifier>,
    pub adapter: Arc<MockAdapter>,
    /// Whether two scheduler runs may race on this backend. Not on moto: it rolls
    /// a failed transaction back by restoring a snapshot of the whole table,
    /// which also undoes a concurrent winner (DynamoDB itself does not).
    pub concurrent_transactions: bool,
    /// Due integrations in the backlog case.
    pub backlog: usize,
    pub _guard: Guard,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        queue: Arc<dyn Queue>,
        vault: Arc<dyn CredentialVault>,
        guard: Guard,
    ) -> Self {
        Self {
            store,
            queue,
            vault,
            clock: Arc::new(SystemClock),
            notifier: Arc::new(RecordingNotifier::default()),
            adapter: Arc::new(MockAdapter::new(kpi_providers::ga4::DESCRIPTOR)),
            concurrent_transactions: true,
            backlog: 2_000,
            _guard: guard,
        }
    }

    pub fn settings() -> WorkerSettings {
        WorkerSettings {
            retry: RetryPolicy {
                base: Duration::from_millis(200),
                cap: Duration::from_secs(1),
            },
            backfill_days: 10,
            sync_timeout: Duration::from_millis(800),
            takeover_grace: Duration::from_millis(200),
            ..WorkerSettings::default()
        }
    }

    pub fn worker(&self, id: &str) -> Worker {
        let registry = Registry::new()
            .with(self.adapter.clone())
            .expect("one provider");
        Worker {
            store: self.store.clone(),
            vault: self.vault.clone(),
            clock: self.clock.clone(),
            notifier: self.notifier.clone(),
            observer: None,
            registry: Arc::new(registry),
            settings: Self::settings(),
            id: id.to_owned(),
        }
    }

    pub fn dlq(&self) -> DlqHandler {
        DlqHandler {
            store: self.store.clone(),
            notifier: self.notifier.clone(),
            clock: self.clock.clone(),
        }
    }

    pub fn scheduler(&self) -> Scheduler {
        Scheduler {
            store: self.store.clone(),
            queue: self.queue.clone(),
            clock: self.clock.clone(),
            notifier: self.notifier.clone(),
            due_work: None,
            settings: SchedulerSettings::default(),
        }
    }

    pub fn scope(ws: &str) -> WorkspaceScope {
        WorkspaceScope::for_system(WorkspaceId::parse(ws).unwrap(), "engine test")
    }

    /// A connected GA4 integration whose token expires in `expires_in`.
    pub async fn integration(&self, ws: &str, expires_in: chrono::Duration) -> Integration {
        self.integration_with(ws, expires_in, |_| {}).await
    }

    /// Like [`Self::integration`], changed by `adjust` before it is stored.
    pub async fn integration_with(
        &self,
        ws: &str,
        expires_in: chrono::Duration,
        adjust: impl FnOnce(&mut Integration),
    ) -> Integration {
        let now = Utc::now();
        let mut i = Integration::new(
            IntegrationId::new_random(),
            WorkspaceId::parse(ws).unwrap(),
            kpi_providers::ga4::ID,
            "GA4",
            now,
        );
        let creds = ConnectionCredentials::OAuth(OAuthTokens {
            access_token: SecretString::from("initial-access".to_owned()),
            refresh_token: Some(SecretString::from("initial-refresh".to_owned())),
            expires_at: Some(now + expires_in),
            scopes: vec!["analytics.readonly".into()],
        });
        i.credentials = Some(
            self.vault
                .seal(&CredentialContext::of(&i), &creds)
                .await
                .unwrap(),
        );
        i.settings.insert("property".into(), "properties/1".into());
        i.transition(IntegrationStatus::Connected, now).unwrap();
        adjust(&mut i);
        self.store
            .create_integration(&Self::scope(ws), &i)
            .await
            .unwrap()
    }

    pub async fn job(&self, i: &Integration) -> SyncJob {
        let today = Utc::now().date_naive();
        let job = SyncJob::new(
            JobId::new_time_ordered(),
            i.workspace.clone(),
            i.id,
            i.provider,
            JobTrigger::Manual,
            Some(DateRange {
                from: today - chrono::Duration::days(2),
                to: today,
            }),
            Utc::now(),
        );
        self.store
            .create_job(&Self::scope(i.workspace.as_str()), &job)
            .await
            .unwrap();
        job
    }

    pub async fn send(&self, jobs: &[SyncJob]) {
        for chunk in jobs.chunks(10) {
            let messages = chunk
                .iter()
                .map(|j| {
                    OutgoingMessage::new(serde_json::to_string(&SyncMessage::for_job(j)).unwrap())
                })
                .collect();
            self.queue.send_batch(WORK, messages).await.unwrap();
        }
    }

    pub async fn status(&self, job: &SyncJob) -> SyncJob {
        self.store
            .get_job(&Self::scope(job.workspace.as_str()), job.id)
            .await
            .unwrap()
    }

    /// Runs workers and the DLQ handler until every job in `jobs` is final or
    /// `patience` runs out. Returns every retry delay the workers asked for.
    pub async fn drain(&self, jobs: &[SyncJob], patience: Duration) -> Vec<Duration> {
        let worker = self.worker("drain-worker");
        let dlq = self.dlq();
        let deadline = tokio::time::Instant::now() + patience;
        let mut retries = Vec::new();
        loop {
            let work = poll_once(&*self.queue, WORK, Duration::from_millis(200), |m| {
                let worker = &worker;
                async move { worker.handle(&m).await }
            })
            .await;
            let dead = poll_once(&*self.queue, DLQ, Duration::ZERO, |m| {
                let dlq = &dlq;
                async move { dlq.handle(&m).await }
            })
            .await;
            // A failed receive (the emulator answering 500 under load) is
            // polled again, as the deployed pollers do.
            for polled in [work.map(|r| retries.extend(r.retries)), dead.map(|_| ())] {
                if let Err(e) = polled {
                    eprintln!("poll failed, polling again: {}", e.log_chain());
                }
            }
            let mut open = 0;
            for j in jobs {
                if !self.status(j).await.status().is_final() {
                    open += 1;
                }
            }
            if open == 0 || tokio::time::Instant::now() > deadline {
                return retries;
            }
        }
    }

    /// Runs four workers and the DLQ handler until both queues are empty.
    /// Returns the number of worker polls.
    pub async fn drain_all(&self, patience: Duration) -> usize {
        let workers: Vec<_> = (0..4).map(|k| self.worker(&format!("fleet-{k}"))).collect();
        let dlq = self.dlq();
        let deadline = tokio::time::Instant::now() + patience;
        let mut polls = 0;
        loop {
            let reports = futures::future::join_all(workers.iter().map(|w| {
                poll_once(
                    &*self.queue,
                    WORK,
                    Duration::from_millis(100),
                    move |m| async move { w.handle(&m).await },
                )
            }))
            .await;
            polls += reports.len();
            let dead = poll_once(&*self.queue, DLQ, Duration::ZERO, |m| {
                let dlq = &dlq;
                async move { dlq.handle(&m).await }
            })
            .await;
            // Like the deployed pollers, a failed receive (the emulator
            // answering 500 under load) is polled again, never counted as drained.
            let mut failed = false;
            let mut received = 0;
            for report in reports.into_iter().chain(std::iter::once(dead)) {
                match report {
                    Ok(r) => received += r.received,
                    Err(e) => {
                        eprintln!("poll failed, polling again: {}", e.log_chain());
                        failed = true;
                    }
                }
            }
            if received == 0 && !failed {
                let (w, d) = (
                    self.queue.stats(WORK).await.unwrap(),
                    self.queue.stats(DLQ).await.unwrap(),
                );
                if w == Default::default() && d == Default::default() {
                    return polls;
                }
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "queues did not drain in {patience:?}"
            );
        }
    }

    /// The access and refresh token stored for `i` now.
    pub async fn stored_tokens(&self, ws: &str, i: &Integration) -> (String, Option<String>) {
        use secrecy::ExposeSecret as _;
        let stored = self
            .store
            .get_integration(&Self::scope(ws), i.id)
            .await
            .unwrap();
        let sealed = stored.credentials.as_ref().unwrap();
        match self
            .vault
            .open(&CredentialContext::of(&stored), sealed)
            .await
            .unwrap()
        {
            ConnectionCredentials::OAuth(t) => (
                t.access_token.expose_secret().to_owned(),
                t.refresh_token.map(|r| r.expose_secret().to_owned()),
            ),
            other => panic!("{other:?}"),
        }
    }

    /// Every job of `ws` in `status`, through the operators' listing.
    pub async fn jobs_in(&self, ws: &str, status: JobStatus) -> Vec<SyncJob> {
        let admin = kpi_core::AdminScope::for_system("engine test");
        let filter = kpi_core::ports::store::JobFilter {
            status,
            provider: None,
            workspace: Some(WorkspaceId::parse(ws).unwrap()),
            since: None,
            until: None,
        };
        let mut out = Vec::new();
        let mut page = kpi_core::page::PageRequest::first(100);
        loop {
            let p = self
                .store
                .list_jobs_by_status(&admin, &filter, &page)
                .await
                .unwrap();
            out.extend(p.items);
            match p.next {
                Some(c) => page = kpi_core::page::PageRequest::after(100, c),
                None => return out,
            }
        }
    }

    pub async fn count_jobs(&self, ws: &str, status: JobStatus) -> usize {
        self.jobs_in(ws, status).await.len()
    }

    pub async fn kpi_rows(&self, i: &Integration) -> usize {
        let today = Utc::now().date_naive();
        self.store
            .query_kpis(
                &Self::scope(i.workspace.as_str()),
                &KpiQuery {
                    metric: GA4_SESSIONS.metric,
                    from: today - chrono::Duration::days(400),
                    to: today,
                    integration: Some(i.id),
                },
            )
            .await
            .unwrap()
            .len()
    }
}

pub async fn a_message_delivered_twice_runs_once(e: &Engine) {
    let i = e.integration("ws-dup", chrono::Duration::hours(1)).await;
    let job = e.job(&i).await;
    e.send(&[job.clone(), job.clone()]).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    // Let the duplicate arrive too.
    for _ in 0..3 {
        e.drain(std::slice::from_ref(&job), Duration::from_millis(300))
            .await;
    }
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        1,
        "the job ran once"
    );
    assert_eq!(e.kpi_rows(&i).await, 3, "one set of KPI rows");
    assert_eq!(done.rows_written, 3);
}

pub async fn rate_limits_errors_and_timeouts_are_retried_with_growing_delays(e: &Engine) {
    let i = e.integration("ws-retry", chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [
            Outcome::Transient,
            Outcome::Timeout,
            Outcome::RateLimited(Duration::from_millis(1500)),
        ],
    );
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    let retries = e
        .drain(std::slice::from_ref(&job), Duration::from_secs(60))
        .await;
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{:?}", done.last_error);
    assert_eq!(done.attempts, 4);
    assert_eq!(retries.len(), 3, "{retries:?}");
    // Ceilings double (200 ms, 400 ms, …); the provider's 1.5 s wait is a floor.
    let policy = Engine::settings().retry;
    for (k, d) in retries.iter().enumerate() {
        assert!(
            *d <= policy
                .ceiling(k as u32 + 1)
                .max(Duration::from_millis(1500)),
            "{retries:?}"
        );
    }
    assert!(
        retries[2] >= Duration::from_millis(1500),
        "the provider's wait was honoured"
    );
    assert!(done.last_error.is_none());
}

pub async fn a_permanent_error_kills_the_job_and_notifies_once_a_day(e: &Engine) {
    let i = e.integration("ws-perm", chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [Outcome::Permanent, Outcome::Permanent, Outcome::Permanent],
    );
    let jobs = vec![e.job(&i).await, e.job(&i).await, e.job(&i).await];
    for job in &jobs {
        // One after the other, as three scheduled runs would.
        e.send(std::slice::from_ref(job)).await;
        e.drain(std::slice::from_ref(job), Duration::from_secs(20))
            .await;
        // The integration is in error now; a later run would not be scheduled,
        // but a manual retry might be: put it back to connected to let it run.
        let scope = Engine::scope("ws-perm");
        let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
        assert_eq!(current.status(), IntegrationStatus::Error);
        current
            .transition(IntegrationStatus::Connected, Utc::now())
            .unwrap();
        e.store.update_integration(&scope, &current).await.unwrap();
    }
    for job in &jobs {
        let done = e.status(job).await;
        assert_eq!(done.status(), JobStatus::Dead);
        assert_eq!(done.last_error.as_ref().unwrap().code, "configuration");
    }
    assert_eq!(e.notifier.count(), 1, "one notice per integration per day");
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        3,
        "no retries of a permanent error"
    );
}

/// A run of failures sends one failure notice; the first success after it
/// sends one recovery notice and ends the run; later successes send nothing.
pub async fn a_run_of_failures_ends_with_one_recovery_notice(e: &Engine) {
    let ws = "ws-recover";
    let scope = Engine::scope(ws);
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [
            Outcome::Permanent,
            Outcome::Permanent,
            Outcome::Success,
            Outcome::Success,
        ],
    );
    let recovered = || {
        e.notifier
            .recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    };
    let mut failing_since = None;
    for round in 0..4 {
        let job = e.job(&i).await;
        e.send(std::slice::from_ref(&job)).await;
        e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
            .await;
        let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
        if round < 2 {
            assert_eq!(current.status(), IntegrationStatus::Error);
            let since = current.failing_since.expect("a run of failures");
            assert_eq!(*failing_since.get_or_insert(since), since, "one run");
            // The user fixes it.
            current
                .transition(IntegrationStatus::Connected, Utc::now())
                .unwrap();
            e.store.update_integration(&scope, &current).await.unwrap();
        } else {
            assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
            assert_eq!(current.failing_since, None);
        }
    }
    let sent = e
        .notifier
        .sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(sent.len(), 1, "one failure notice for the run");
    assert_eq!(sent[0].display_name, "GA4");
    let back = recovered();
    assert_eq!(back.len(), 1, "one recovery notice: {back:?}");
    assert_eq!(back[0].integration, i.id);
    assert_eq!(Some(back[0].failing_since), failing_since);
}

pub async fn an_auth_failure_needs_reauth(e: &Engine) {
    let i = e.integration("ws-auth", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::Auth]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Dead);
    let current = e
        .store
        .get_integration(&Engine::scope("ws-auth"), i.id)
        .await
        .unwrap();
    assert_eq!(current.status(), IntegrationStatus::NeedsReauth);
}

pub async fn retries_run_out_into_the_dead_letter_queue(e: &Engine) {
    let i = e.integration("ws-dlq", chrono::Duration::hours(1)).await;
    // Failing for exactly as long as the queue delivers the job.
    e.adapter.script(
        i.id,
        std::iter::repeat_n(Outcome::Transient, ENGINE_MAX_RECEIVES as usize),
    );
    // Its regular schedule: six hours on.
    let scope = Engine::scope("ws-dlq");
    let mut scheduled = e.store.get_integration(&scope, i.id).await.unwrap();
    scheduled.next_sync_at = Some(Utc::now() + chrono::Duration::hours(6));
    e.store
        .update_integration(&scope, &scheduled)
        .await
        .unwrap();
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(60))
        .await;
    let dead = e.status(&job).await;
    assert_eq!(dead.status(), JobStatus::Dead, "{:?}", dead.last_error);
    assert_eq!(dead.attempts, ENGINE_MAX_RECEIVES);
    assert!(dead.last_error.as_ref().unwrap().message.contains("500"));
    let current = e
        .store
        .get_integration(&Engine::scope("ws-dlq"), i.id)
        .await
        .unwrap();
    // A provider outage longer than every retry: the integration stays
    // connected and scheduled, with the failure on show, and one notice.
    assert_eq!(current.status(), IntegrationStatus::Connected);
    assert!(current.failing_since.is_some());
    assert!(current.last_error.is_some());
    // Tried again soon, not a whole interval later.
    let soon = Utc::now() + kpi_sync::dlq::RESYNC_AFTER_OUTAGE;
    assert!(
        current.next_sync_at.is_some_and(|t| t <= soon),
        "next sync {:?}, after an outage no later than {soon}",
        current.next_sync_at
    );
    assert_eq!(current.active_job, None);
    assert_eq!(e.notifier.count(), 1);
    // The provider is back. Its next regular time comes (the clock moved on):
    // the scheduler makes the job, nobody acting, and it succeeds.
    let mut due = current.clone();
    due.next_sync_at = Some(Utc::now() - chrono::Duration::seconds(1));
    e.store
        .update_integration(&Engine::scope("ws-dlq"), &due)
        .await
        .unwrap();
    let report = e.scheduler().run_once().await.unwrap();
    assert_eq!(report.jobs_created, 1, "{report:?}");
    let jobs = e
        .store
        .list_jobs(
            &Engine::scope("ws-dlq"),
            i.id,
            &kpi_core::page::PageRequest::first(10),
        )
        .await
        .unwrap();
    let next = jobs
        .items
        .into_iter()
        .find(|j| j.status() == JobStatus::Queued)
        .expect("the scheduled job");
    e.drain(std::slice::from_ref(&next), Duration::from_secs(30))
        .await;
    assert_eq!(e.status(&next).await.status(), JobStatus::Succeeded);
    let healed = e
        .store
        .get_integration(&Engine::scope("ws-dlq"), i.id)
        .await
        .unwrap();
    assert_eq!(healed.status(), IntegrationStatus::Connected);
    assert_eq!(healed.failing_since, None);
    assert_eq!(e.notifier.recovered.lock().unwrap().len(), 1);
}

pub async fn a_sync_brings_an_integration_back_from_error_and_a_dead_letter_never_undoes_a_reconnect(
    e: &Engine,
) {
    let scope = Engine::scope("ws-heal");
    let i = e.integration("ws-heal", chrono::Duration::hours(1)).await;
    // A failure retrying cannot fix (the property was deleted): `error`.
    e.adapter.script(i.id, [Outcome::Permanent]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(30))
        .await;
    let failed = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(failed.status(), IntegrationStatus::Error);
    // The user fixes it and asks for a sync: it runs, and brings it back.
    let job = e.job(&failed).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(30))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let back = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(back.status(), IntegrationStatus::Connected);
    assert_eq!(back.failing_since, None);

    // A job of the old grant reaches the dead-letter handler after the user
    // reconnected: the reconnect stands.
    let old = e.job(&back).await;
    let dead_letter = kpi_core::ports::queue::ReceivedMessage {
        message_id: "dead-1".into(),
        body: serde_json::to_string(&SyncMessage::for_job(&old)).unwrap(),
        receipt: kpi_core::ports::queue::ReceiptHandle("r-1".into()),
        receive_count: ENGINE_MAX_RECEIVES + 1,
    };
    assert_eq!(
        e.dlq().handle(&dead_letter).await,
        kpi_sync::Disposition::Done
    );
    assert_eq!(e.status(&old).await.status(), JobStatus::Dead);
    let after = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(after.status(), IntegrationStatus::Connected);
    assert!(after.next_sync_at.is_some(), "still scheduled");
}

pub async fn a_rotated_refresh_token_outlives_a_write_made_during_the_refresh(e: &Engine) {
    use secrecy::ExposeSecret as _;
    let scope = Engine::scope("ws-rotate");
    // Its token is within the refresh margin: the sync refreshes first.
    let i = e
        .integration("ws-rotate", chrono::Duration::minutes(1))
        .await;
    e.adapter.hold_next_refresh.store(true, Ordering::SeqCst);
    let refreshes = e.adapter.refresh_calls.load(Ordering::SeqCst);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    // While the provider answers the refresh (rotating the refresh token),
    // something else writes the integration (a rename): its version moves.
    let meddle = async {
        e.adapter.entered.notified().await;
        let mut renamed = e.store.get_integration(&scope, i.id).await.unwrap();
        renamed.display_name = "Renamed meanwhile".into();
        e.store.update_integration(&scope, &renamed).await.unwrap();
        e.adapter.release.notify_one();
    };
    tokio::join!(
        e.drain(std::slice::from_ref(&job), Duration::from_secs(30)),
        meddle
    );
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    assert_eq!(
        e.adapter.refresh_calls.load(Ordering::SeqCst) - refreshes,
        1,
        "the rotated token was kept, not refreshed again with the old one"
    );
    let stored = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(
        stored.display_name, "Renamed meanwhile",
        "both writes stand"
    );
    let credentials = e
        .vault
        .open(
            &CredentialContext::of(&stored),
            stored.credentials.as_ref().unwrap(),
        )
        .await
        .unwrap();
    let ConnectionCredentials::OAuth(tokens) = credentials else {
        panic!("OAuth credentials")
    };
    assert!(
        tokens
            .refresh_token
            .as_ref()
            .is_some_and(|t| t.expose_secret().starts_with("mock-refresh-")),
        "the rotated refresh token is the stored one"
    );
}

/// An observer (alert rules) that never finishes: a send that hangs.
struct Hangs;

#[async_trait::async_trait]
impl kpi_sync::SyncObserver for Hangs {
    async fn synced(&self, _: &WorkspaceScope, _: &Integration, _: DateRange) {
        std::future::pending::<()>().await
    }
}

pub async fn the_work_after_a_sync_stays_within_the_invocation(e: &Engine) {
    let i = e.integration("ws-after", chrono::Duration::hours(1)).await;
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    let mut worker = e.worker("after");
    worker.observer = Some(Arc::new(Hangs));
    let mut got = Vec::new();
    for _ in 0..20 {
        got = e
            .queue
            .receive(WORK, 1, Duration::from_millis(500))
            .await
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    let message = got.pop().expect("the job's message");
    // An invocation with a second of work left after the record reserve: the
    // sync is recorded and the batch answered although the alert rules hang.
    let budget = kpi_sync::worker::RECORD_RESERVE + Duration::from_secs(1);
    let answered = tokio::time::timeout(
        budget + Duration::from_secs(30),
        worker.handle_within(&message, Some(budget)),
    )
    .await
    .expect("the worker answers within its invocation");
    assert_eq!(answered, kpi_sync::Disposition::Done);
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
}

/// A job recorded dead (as the dead-letter handler leaves it).
async fn dead_job(e: &Engine, i: &Integration) -> SyncJob {
    let made = e.job(i).await;
    let mut job = e.status(&made).await;
    let now = Utc::now();
    job.transition(JobStatus::Running, now).unwrap();
    job.transition(JobStatus::Dead, now).unwrap();
    e.store
        .update_job(&Engine::scope(i.workspace.as_str()), &job)
        .await
        .unwrap()
}

pub async fn redrive_runs_one_job_per_integration_and_none_beside_one_in_flight(e: &Engine) {
    let admin = kpi_core::AdminScope::for_system("redrive test");
    let scope = Engine::scope("ws-redrive");
    // Three dead jobs of one integration: one run brings it up to date.
    let i = e
        .integration("ws-redrive", chrono::Duration::hours(1))
        .await;
    let mut dead = Vec::new();
    for _ in 0..3 {
        dead.push(dead_job(e, &i).await);
    }
    let calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        100,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.jobs_requeued, report.jobs_left),
        (1, 2),
        "{report:?}"
    );
    let newest = dead.iter().map(|j| j.id).max().unwrap();
    let mut queued = Vec::new();
    for job in &dead {
        let now = e.status(job).await;
        match now.status() {
            JobStatus::Queued => queued.push(now),
            other => assert_eq!(other, JobStatus::Dead, "the others are left as recorded"),
        }
    }
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, newest, "the newest one");
    e.drain(&queued, Duration::from_secs(30)).await;
    assert_eq!(e.status(&queued[0]).await.status(), JobStatus::Succeeded);
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst) - calls,
        1,
        "one run"
    );
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.active_job, None);

    // An integration with a job queued: its dead job waits, and the queued
    // one stays its only job in flight.
    let busy = e
        .integration("ws-redrive", chrono::Duration::hours(1))
        .await;
    let stale = dead_job(e, &busy).await;
    let mut in_flight = e.job(&busy).await;
    let mut marked = e.store.get_integration(&scope, busy.id).await.unwrap();
    marked.active_job = Some(in_flight.id);
    e.store.update_integration(&scope, &marked).await.unwrap();
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.jobs_requeued, 0, "{report:?}");
    assert_eq!(e.status(&stale).await.status(), JobStatus::Dead);
    assert_eq!(
        e.store
            .get_integration(&scope, busy.id)
            .await
            .unwrap()
            .active_job,
        Some(in_flight.id)
    );
    // Retrying it by hand is refused the same way.
    let err = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, stale.id)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{}", err.log_chain());
    in_flight = e.status(&in_flight).await;
    assert_eq!(in_flight.status(), JobStatus::Queued);
}

pub async fn a_worker_stopped_mid_job_is_replaced_after_the_visibility_timeout(e: &Engine) {
    let i = e.integration("ws-crash", chrono::Duration::hours(1)).await;
    e.adapter
        .script(i.id, [Outcome::Slow(Duration::from_millis(600))]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    // The first worker receives the message and is killed mid-job (its future
    // dropped): it neither deletes the message nor changes its visibility.
    let worker = e.worker("doomed");
    let mut got = Vec::new();
    for _ in 0..20 {
        got = e
            .queue
            .receive(WORK, 1, Duration::from_millis(500))
            .await
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1);
    let _ = tokio::time::timeout(Duration::from_millis(200), worker.handle(&got[0])).await;
    assert_eq!(
        e.status(&job).await.status(),
        JobStatus::Running,
        "stopped mid-job"
    );
    // After the visibility timeout another worker gets the message and finishes.
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.attempts, 2);
}

pub async fn ten_workers_share_one_token_refresh(e: &Engine) {
    let workers: Vec<_> = (0..10)
        .map(|k| Arc::new(e.worker(&format!("worker-{k}"))))
        .collect();
    one_refresh_for(e, workers).await;
}

/// Ten records of one Lambda batch: one worker, one refresh all the same.
pub async fn one_worker_refreshes_once_for_a_batch(e: &Engine) {
    let worker = Arc::new(e.worker("batch-worker"));
    one_refresh_for(e, (0..10).map(|_| worker.clone()).collect()).await;
}

async fn one_refresh_for(e: &Engine, workers: Vec<Arc<Worker>>) {
    let i = e
        .integration("ws-refresh", chrono::Duration::minutes(1))
        .await;
    let mut jobs = Vec::new();
    for _ in 0..10 {
        jobs.push(e.job(&i).await);
    }
    let messages: Vec<_> = jobs
        .iter()
        .map(|j| kpi_core::ports::queue::ReceivedMessage {
            message_id: j.id.to_string(),
            body: serde_json::to_string(&SyncMessage::for_job(j)).unwrap(),
            receipt: kpi_core::ports::queue::ReceiptHandle(j.id.to_string()),
            receive_count: 1,
        })
        .collect();
    let outcomes =
        futures::future::join_all(workers.iter().zip(&messages).map(|(w, m)| w.handle(m))).await;
    assert!(
        outcomes.iter().all(|d| *d == kpi_sync::Disposition::Done),
        "{outcomes:?}"
    );
    assert_eq!(
        e.adapter.refresh_calls.load(Ordering::SeqCst),
        1,
        "one refresh for ten attempts"
    );
    let tokens = e.adapter.tokens_used.lock().unwrap().clone();
    assert_eq!(tokens.len(), 10);
    assert!(tokens.iter().all(|t| t == "mock-access-1"), "{tokens:?}");
    // The refreshed token was stored, and the refresh token kept.
    let (access, refresh) = e.stored_tokens("ws-refresh", &i).await;
    assert_eq!(access, "mock-access-1");
    assert_eq!(refresh.as_deref(), Some("initial-refresh"));
}

pub async fn a_panicking_adapter_fails_only_its_message(e: &Engine) {
    let a = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    let b = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    let c = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    e.adapter.script(b.id, [Outcome::Panic]);
    let jobs = vec![e.job(&a).await, e.job(&b).await, e.job(&c).await];
    e.send(&jobs).await;
    let worker = e.worker("w");
    let mut handled = 0;
    let mut retried = 0;
    for _ in 0..20 {
        let report = poll_once(&*e.queue, WORK, Duration::from_millis(500), |m| {
            let worker = &worker;
            async move { worker.handle(&m).await }
        })
        .await
        .unwrap();
        handled += report.done;
        retried += report.retries.len();
        if handled + retried >= 3 {
            break;
        }
    }
    assert_eq!(
        (handled, retried),
        (2, 1),
        "the panicking message alone is retried"
    );
    assert_eq!(e.status(&jobs[0]).await.status(), JobStatus::Succeeded);
    assert_eq!(e.status(&jobs[2]).await.status(), JobStatus::Succeeded);
    // Its retry then succeeds.
    e.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(e.status(&jobs[1]).await.status(), JobStatus::Succeeded);
}

pub async fn the_scheduler_fans_out_once_per_tick(e: &Engine) {
    let mut ids = Vec::new();
    for _ in 0..23 {
        ids.push(
            e.integration("ws-sched", chrono::Duration::hours(1))
                .await
                .id,
        );
    }
    let scheduler = e.scheduler();
    let (first, second) = if e.concurrent_transactions {
        let (a, b) = tokio::join!(scheduler.run_once(), scheduler.run_once());
        (a.unwrap(), b.unwrap())
    } else {
        (
            scheduler.run_once().await.unwrap(),
            scheduler.run_once().await.unwrap(),
        )
    };
    assert_eq!(
        first.jobs_created + second.jobs_created,
        23,
        "{first:?} {second:?}"
    );
    assert_eq!(first.messages_sent + second.messages_sent, 23);
    assert!(
        first.batch_calls + second.batch_calls <= 4,
        "batches of ten"
    );
    let third = scheduler.run_once().await.unwrap();
    assert_eq!(third.jobs_created, 0, "nothing due any more");
    let scope = Engine::scope("ws-sched");
    for id in &ids {
        let jobs = e
            .store
            .list_jobs(&scope, *id, &kpi_core::page::PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(jobs.items.len(), 1, "one job per integration and tick");
        let i = e.store.get_integration(&scope, *id).await.unwrap();
        assert!(i.next_sync_at.unwrap() > Utc::now(), "next sync moved");
    }
    let stats = e.queue.stats(WORK).await.unwrap();
    assert_eq!(stats.visible + stats.in_flight + stats.delayed, 23);
}

/// `n` jobs with 30% injected faults of mixed kinds: every job ends succeeded or
/// dead with a record, nothing is lost or duplicated; once the faults stop, a
/// redrive brings the dead ones to succeeded.
pub async fn fault_run(e: &Engine, n: usize) {
    let started = std::time::Instant::now();
    let scope = Engine::scope("ws-faults");
    let mut jobs = Vec::with_capacity(n);
    for _ in 0..n {
        let i = e.integration("ws-faults", chrono::Duration::hours(1)).await;
        jobs.push(e.job(&i).await);
    }
    e.adapter.set_random_faults(300, 20261125);
    e.send(&jobs).await;
    e.drain_all(Duration::from_secs(900)).await;
    let succeeded = e.count_jobs("ws-faults", JobStatus::Succeeded).await;
    let dead_jobs = e.jobs_in("ws-faults", JobStatus::Dead).await;
    let dead = dead_jobs.len();
    assert!(
        dead_jobs.iter().all(|j| j.last_error.is_some()),
        "a dead job records why"
    );
    assert_eq!(succeeded + dead, n, "every job ended succeeded or dead");
    assert!(dead > 0, "some faults were permanent");
    let calls_during_faults = e.adapter.sync_calls.load(Ordering::SeqCst);

    // The faults stop; an operator redrives the provider.
    e.adapter.stop_faults();
    let admin = kpi_core::AdminScope::for_system("fault run");
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        n,
    )
    .await
    .unwrap();
    assert_eq!(report.jobs_requeued, dead);
    e.drain_all(Duration::from_secs(900)).await;
    assert_eq!(
        e.count_jobs("ws-faults", JobStatus::Succeeded).await,
        n,
        "all succeeded after the redrive"
    );
    // One set of KPI rows per integration: three days each, nothing doubled.
    let today = Utc::now().date_naive();
    let points = e
        .store
        .query_kpis(
            &scope,
            &KpiQuery {
                metric: GA4_SESSIONS.metric,
                from: today - chrono::Duration::days(2),
                to: today,
                integration: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 3 * n, "no duplicate and no missing KPI row");
    let mut listed = 0;
    let mut page = kpi_core::page::PageRequest::first(100);
    loop {
        let p = e.store.list_integrations(&scope, &page).await.unwrap();
        for i in &p.items {
            assert_eq!(i.status(), IntegrationStatus::Connected);
            listed += 1;
        }
        match p.next {
            Some(c) => page = kpi_core::page::PageRequest::after(100, c),
            None => break,
        }
    }
    assert_eq!(listed, n);
    let total_calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    println!(
        "fault run: {n} jobs, {succeeded} succeeded and {dead} dead under faults, \
         {calls_during_faults} provider calls then {total_calls} in all, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

pub async fn fault_run_of_1000_jobs(e: &Engine) {
    fault_run(e, 1000).await;
}

pub async fn an_operator_retries_a_dead_job(e: &Engine) {
    let i = e.integration("ws-admin", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::Permanent]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Dead);
    let admin = kpi_core::AdminScope::for_system("test");
    let requeued = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, job.id)
        .await
        .unwrap();
    assert_eq!(requeued.status(), JobStatus::Queued);
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let err = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, job.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "a succeeded job is not retried");
}

pub async fn credentials_an_adapter_renewed_are_kept(e: &Engine) {
    let i = e.integration("ws-renew", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::SuccessWithNewToken]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let (access, refresh) = e.stored_tokens("ws-renew", &i).await;
    assert_eq!(access, "mock-access-1", "the renewed token was stored");
    assert_eq!(
        refresh.as_deref(),
        Some("initial-refresh"),
        "and the refresh token kept"
    );
}

/// The adapter renews the token while the user disconnects, or reconnects: the
/// user's action stands after the job.
pub async fn a_users_reconnect_or_disconnect_during_a_sync_stands(e: &Engine) {
    for action in ["disconnect", "reconnect"] {
        let ws = format!("ws-race-{action}");
        let i = e.integration(&ws, chrono::Duration::hours(1)).await;
        e.adapter.script(i.id, [Outcome::HeldThenNewToken]);
        let job = e.job(&i).await;
        let message = kpi_core::ports::queue::ReceivedMessage {
            message_id: job.id.to_string(),
            body: serde_json::to_string(&SyncMessage::for_job(&job)).unwrap(),
            receipt: kpi_core::ports::queue::ReceiptHandle(job.id.to_string()),
            receive_count: 1,
        };
        let worker = e.worker("race-worker");
        let run = tokio::spawn(async move { worker.handle(&message).await });
        e.adapter.entered.notified().await;
        let scope = Engine::scope(&ws);
        let now = Utc::now();
        let mut user = e.store.get_integration(&scope, i.id).await.unwrap();
        if action == "disconnect" {
            user.transition(IntegrationStatus::Disconnected, now)
                .unwrap();
        } else {
            let fresh = ConnectionCredentials::OAuth(OAuthTokens {
                access_token: SecretString::from("user-reconnected-access".to_owned()),
                refresh_token: Some(SecretString::from("user-reconnected-refresh".to_owned())),
                expires_at: Some(now + chrono::Duration::hours(1)),
                scopes: vec![],
            });
            user.credentials = Some(
                e.vault
                    .seal(&CredentialContext::of(&user), &fresh)
                    .await
                    .unwrap(),
            );
        }
        e.store.update_integration(&scope, &user).await.unwrap();
        e.adapter.release.notify_one();
        run.await.unwrap();
        let after = e.store.get_integration(&scope, i.id).await.unwrap();
        if action == "disconnect" {
            assert_eq!(after.status(), IntegrationStatus::Disconnected);
            assert!(
                after.credentials.is_none(),
                "erased credentials stay erased"
            );
        } else {
            assert_eq!(after.status(), IntegrationStatus::Connected);
            let (access, refresh) = e.stored_tokens(&ws, &i).await;
            assert_eq!(access, "user-reconnected-access", "the reconnect stands");
            assert_eq!(refresh.as_deref(), Some("user-reconnected-refresh"));
        }
    }
}

/// The engine's queue as a deployment may see it: serving only some
/// providers, refusing every send, or keeping messages a shorter time; and
/// counting the messages sent through it.
struct TestQueue {
    inner: Arc<dyn Queue>,
    /// `None`: every provider the inner queue serves.
    providers: Option<Vec<Provider>>,
    refuse_sends: bool,
    retention: Option<chrono::Duration>,
    sent: std::sync::atomic::AtomicUsize,
}

impl TestQueue {
    fn over(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            providers: None,
            refuse_sends: false,
            retention: None,
            sent: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Queue for TestQueue {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> kpi_core::Result<()> {
        if self.refuse_sends {
            return Err(kpi_core::Error::transient("the queue refused the send"));
        }
        let n = messages.len();
        self.inner.send_batch(queue, messages).await?;
        self.sent.fetch_add(n, Ordering::SeqCst);
        Ok(())
    }
    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        wait: Duration,
    ) -> kpi_core::Result<Vec<kpi_core::ports::queue::ReceivedMessage>> {
        self.inner.receive(queue, max, wait).await
    }
    async fn delete(
        &self,
        queue: QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
    ) -> kpi_core::Result<()> {
        self.inner.delete(queue, receipt).await
    }
    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
        timeout: Duration,
    ) -> kpi_core::Result<()> {
        self.inner.change_visibility(queue, receipt, timeout).await
    }
    async fn stats(
        &self,
        queue: QueueName,
    ) -> kpi_core::Result<kpi_core::ports::queue::QueueStats> {
        self.inner.stats(queue).await
    }
    fn serves(&self, queue: QueueName) -> bool {
        match &self.providers {
            Some(p) => p.contains(&queue.provider()),
            None => self.inner.serves(queue),
        }
    }
    fn holds_since(&self, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        match self.retention {
            Some(r) => now - r,
            None => self.inner.holds_since(now),
        }
    }
}

/// Not due for a month: only its queued job is the scheduler's business.
async fn not_due(e: &Engine, ws: &str, i: &Integration) {
    let scope = Engine::scope(ws);
    let mut later = e.store.get_integration(&scope, i.id).await.unwrap();
    later.next_sync_at = Some(Utc::now() + chrono::Duration::days(30));
    e.store.update_integration(&scope, &later).await.unwrap();
}

async fn make_due(e: &Engine, ws: &str, i: &Integration) {
    let scope = Engine::scope(ws);
    let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
    current.next_sync_at = Some(Utc::now() - chrono::Duration::seconds(1));
    e.store.update_integration(&scope, &current).await.unwrap();
}

/// A due integration whose job is still queued gets no second job; once the
/// job has succeeded, the next scheduled sync is a full interval later.
pub async fn a_due_integration_with_a_job_in_flight_gets_no_second_one(e: &Engine) {
    let ws = "ws-inflight";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let scheduler = e.scheduler();
    assert_eq!(scheduler.run_once().await.unwrap().jobs_created, 1);
    make_due(e, ws, &i).await;
    let report = scheduler.run_once().await.unwrap();
    assert_eq!(
        (report.jobs_created, report.still_active),
        (0, 1),
        "{report:?}"
    );
    let scope = Engine::scope(ws);
    let jobs = e
        .store
        .list_jobs(&scope, i.id, &kpi_core::page::PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1);
    e.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(e.status(&jobs[0]).await.status(), JobStatus::Succeeded);
    let after = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(after.active_job, None);
    let interval = chrono::Duration::minutes(i64::from(after.sync_interval_minutes));
    assert!(
        after.next_sync_at.unwrap() > Utc::now() + interval - chrono::Duration::minutes(1),
        "a successful sync moves the next scheduled one"
    );
    // Due again and nothing in flight: a new job.
    make_due(e, ws, &i).await;
    assert_eq!(scheduler.run_once().await.unwrap().jobs_created, 1);
}

/// Twenty scheduler runs with a due integration of a provider that has no
/// worker in the deployment: no job, and its queue stays empty.
pub async fn nothing_piles_up_for_a_provider_without_a_worker(e: &Engine) {
    let ws = "ws-noworker";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let scheduler = Scheduler {
        queue: Arc::new(TestQueue {
            providers: Some(vec![]),
            ..TestQueue::over(e.queue.clone())
        }),
        ..e.scheduler()
    };
    let mut not_served = 0;
    for _ in 0..20 {
        make_due(e, ws, &i).await;
        let report = scheduler.run_once().await.unwrap();
        assert_eq!(report.jobs_created, 0, "{report:?}");
        not_served += report.not_served;
    }
    assert_eq!(not_served, 20);
    let depth = e.queue.stats(WORK).await.unwrap();
    assert_eq!(
        depth.visible + depth.in_flight + depth.delayed,
        0,
        "{depth:?}"
    );
    assert_eq!(e.count_jobs(ws, JobStatus::Queued).await, 0);
}

/// A queued job whose message cannot be sent is tried a bounded number of
/// times, then ends dead with a reason an operator can act on, and a notice.
pub async fn a_job_whose_message_cannot_be_sent_ends_dead_after_a_few_tries(e: &Engine) {
    let ws = "ws-unsendable";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    not_due(e, ws, &i).await;
    // Made, and its first send failed: never recorded as sent.
    let job = e.job(&i).await;
    let scheduler = Scheduler {
        queue: Arc::new(TestQueue {
            refuse_sends: true,
            ..TestQueue::over(e.queue.clone())
        }),
        settings: SchedulerSettings {
            unsent_after: chrono::Duration::zero(),
            max_sends: 3,
            ..SchedulerSettings::default()
        },
        ..e.scheduler()
    };
    let mut resent = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = scheduler.run_once().await.unwrap();
        resent += report.resent;
        if report.given_up > 0 {
            break;
        }
    }
    assert_eq!(resent, 2, "tried three times in all");
    let dead = e.status(&job).await;
    assert_eq!(dead.status(), JobStatus::Dead);
    assert!(
        dead.last_error
            .as_ref()
            .unwrap()
            .message
            .contains("could not be sent"),
        "{:?}",
        dead.last_error
    );
    assert_eq!(e.notifier.count(), 1);
}

/// A job whose message is in the queue only waits, through any number of
/// scheduler runs; one never sent is sent once; one the queue no longer
/// holds (past its retention) is sent again.
pub async fn a_waiting_job_is_sent_again_only_once_the_queue_no_longer_holds_it(e: &Engine) {
    let ws = "ws-waiting";
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let retention = chrono::Duration::days(4);
    let queue = Arc::new(TestQueue {
        retention: Some(retention),
        ..TestQueue::over(e.queue.clone())
    });
    let scheduler = Scheduler {
        queue: queue.clone(),
        clock: clock.clone(),
        ..e.scheduler()
    };
    let waiting = e.integration(ws, chrono::Duration::days(30)).await;
    not_due(e, ws, &waiting).await;
    let sent = e.job(&waiting).await;
    kpi_sync::enqueue(
        &*e.store,
        &*queue,
        std::slice::from_ref(&sent),
        None,
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(e.status(&sent).await.sent_at, Some(clock.now()));
    let unsent_integration = e.integration(ws, chrono::Duration::days(30)).await;
    not_due(e, ws, &unsent_integration).await;
    let unsent = e.job(&unsent_integration).await;

    // Ten hours of runs every five minutes: the unsent job is sent once, the
    // other one is left to wait.
    let mut totals = SchedulerReport::default();
    for _ in 0..120 {
        clock.advance(chrono::Duration::minutes(5));
        let r = scheduler.run_once().await.unwrap();
        totals.resent += r.resent;
        totals.given_up += r.given_up;
    }
    assert_eq!((totals.resent, totals.given_up), (1, 0), "{totals:?}");
    assert_eq!(queue.sent.load(Ordering::SeqCst), 2, "one message each");
    for job in [&sent, &unsent] {
        let now = e.status(job).await;
        assert_eq!(now.status(), JobStatus::Queued);
        assert!(now.sent_at.is_some(), "{now:?}");
    }

    // Past the queue's retention the waiting message is gone: sent again.
    clock.advance(retention);
    let r = scheduler.run_once().await.unwrap();
    assert_eq!((r.resent, r.given_up), (2, 0), "{r:?}");
    let again = e.status(&sent).await;
    assert_eq!((again.sends, again.sent_at), (2, Some(clock.now())));
    e.drain(&[sent, unsent], Duration::from_secs(20)).await;
}

/// A backlog hours deep by the clock: every due integration gets one job at
/// the first tick, two workers take one message at a time while the
/// scheduler keeps ticking, and every job ends succeeded, none dead, none
/// run twice, with no message sent twice.
pub async fn a_backlog_hours_deep_drains_with_every_job_run_once(e: &Engine) {
    let ws = "ws-backlog";
    let n = e.backlog;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let queue = Arc::new(TestQueue::over(e.queue.clone()));
    let scheduler = Scheduler {
        queue: queue.clone(),
        clock: clock.clone(),
        ..e.scheduler()
    };
    for _ in 0..n {
        e.integration_with(ws, chrono::Duration::days(30), |i| {
            i.sync_interval_minutes = 24 * 60;
            i.next_sync_at = Some(clock.now());
        })
        .await;
    }
    let workers: Vec<Worker> = (0..2)
        .map(|k| Worker {
            clock: clock.clone(),
            ..e.worker(&format!("backlog-{k}"))
        })
        .collect();
    // Per five-minute tick the two workers run this many jobs: the queue
    // stays hours deep for most of the run.
    let per_tick = (n / 100).max(2);
    let mut totals = SchedulerReport::default();
    let (mut ran, mut retries, mut ticks) = (0, 0, 0);
    while ran < n && ticks < 1_000 {
        ticks += 1;
        clock.advance(chrono::Duration::minutes(5));
        let r = scheduler.run_once().await.unwrap();
        totals.jobs_created += r.jobs_created;
        totals.resent += r.resent;
        totals.given_up += r.given_up;
        for _ in 0..per_tick / 2 {
            let taken = futures::future::join_all(workers.iter().map(|w| async {
                let Some(m) = queue
                    .receive(WORK, 1, Duration::from_millis(50))
                    .await
                    .unwrap()
                    .pop()
                else {
                    return (0, 0);
                };
                match w.handle(&m).await {
                    kpi_sync::Disposition::Done => {
                        queue.delete(WORK, &m.receipt).await.unwrap();
                        (1, 0)
                    }
                    other => {
                        // A retry comes back after its delay, as from SQS.
                        if let kpi_sync::Disposition::RetryAfter(d) = other {
                            queue.change_visibility(WORK, &m.receipt, d).await.unwrap();
                        }
                        (0, 1)
                    }
                }
            }))
            .await;
            for (done, retried) in taken {
                ran += done;
                retries += retried;
            }
        }
    }
    let hours = ticks as f64 * 5.0 / 60.0;
    assert!(hours >= 3.0, "the backlog lasted {hours:.1} h by the clock");
    assert_eq!(totals.jobs_created, n, "{totals:?}");
    assert_eq!((totals.resent, totals.given_up), (0, 0), "{totals:?}");
    assert_eq!(e.count_jobs(ws, JobStatus::Succeeded).await, n);
    for status in [JobStatus::Dead, JobStatus::Queued, JobStatus::Running] {
        assert_eq!(e.count_jobs(ws, status).await, 0, "{status}");
    }
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst) as usize,
        n + retries,
        "each job ran once (and once per retry)"
    );
    let messages = queue.sent.load(Ordering::SeqCst);
    assert!(
        messages <= n + retries,
        "{messages} messages for {n} jobs and {retries} retries"
    );
}

/// A sync that would outlive its Lambda invocation stops in time to record
/// its outcome: the job waits for its retry instead of staying `running`.
pub async fn a_sync_that_would_outlive_its_invocation_is_recorded_and_retried(e: &Engine) {
    let i = e
        .integration("ws-deadline", chrono::Duration::hours(1))
        .await;
    e.adapter
        .script(i.id, [Outcome::Slow(Duration::from_secs(5))]);
    let job = e.job(&i).await;
    let message = kpi_core::ports::queue::ReceivedMessage {
        message_id: job.id.to_string(),
        body: serde_json::to_string(&SyncMessage::for_job(&job)).unwrap(),
        receipt: kpi_core::ports::queue::ReceiptHandle(job.id.to_string()),
        receive_count: 1,
    };
    let budget = kpi_sync::worker::RECORD_RESERVE + Duration::from_millis(300);
    let disposition = e
        .worker("deadline-worker")
        .handle_within(&message, Some(budget))
        .await;
    assert!(
        matches!(disposition, kpi_sync::Disposition::RetryAfter(_)),
        "{disposition:?}"
    );
    let after = e.status(&job).await;
    assert_eq!(after.status(), JobStatus::Retrying);
    assert_eq!(after.last_error.as_ref().unwrap().code, "transient");
}

/// Credentials that cannot be refreshed (Meta's long-lived token): within a
/// week of expiry each successful sync keeps the integration connected and
/// one reconnect reminder goes out; once expired, the job needs a reconnect
/// and the provider is not called.
pub async fn expiring_credentials_remind_once_then_need_a_reconnect(e: &Engine) {
    let ws = "ws-expiry";
    let scope = Engine::scope(ws);
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let expires_at = Utc::now() + chrono::Duration::days(3);
    let mut stored = e.store.get_integration(&scope, i.id).await.unwrap();
    stored.credentials_expire_at = Some(expires_at);
    let stored = e.store.update_integration(&scope, &stored).await.unwrap();
    assert!(stored.expires_soon(Utc::now()));
    assert!(!stored.expires_soon(Utc::now() - chrono::Duration::days(5)));
    let reminders = || {
        e.notifier
            .reminders
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    };
    for _ in 0..2 {
        let job = e.job(&i).await;
        e.send(std::slice::from_ref(&job)).await;
        e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
            .await;
        assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    }
    let sent = reminders();
    assert_eq!(sent.len(), 1, "one reminder per expiry: {sent:?}");
    assert_eq!(sent[0].integration, i.id);
    assert_eq!(sent[0].expires_at, expires_at);
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.reminded_for, Some(expires_at));
    assert_eq!(current.status(), IntegrationStatus::Connected);

    let mut expired = current;
    expired.credentials_expire_at = Some(Utc::now() - chrono::Duration::minutes(1));
    e.store.update_integration(&scope, &expired).await.unwrap();
    let calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    let ended = e.status(&job).await;
    assert_eq!(ended.status(), JobStatus::Dead);
    assert!(
        ended
            .last_error
            .as_ref()
            .unwrap()
            .message
            .contains("expired"),
        "{:?}",
        ended.last_error
    );
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        calls,
        "no provider call"
    );
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.status(), IntegrationStatus::NeedsReauth);
    assert_eq!(reminders().len(), 1);
}

#[macro_export]
macro_rules! sync_conformance {
    ($make:path; $($case:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn $case() {
                let engine = $make().await;
                $crate::conformance::sync::$case(&engine).await;
            }
        )*
    };
}

#[macro_export]
macro_rules! all_sync_cases {
    ($make:path) => {
        $crate::sync_conformance!($make;
            a_message_delivered_twice_runs_once,
            rate_limits_errors_and_timeouts_are_retried_with_growing_delays,
            a_permanent_error_kills_the_job_and_notifies_once_a_day,
            an_auth_failure_needs_reauth,
            a_run_of_failures_ends_with_one_recovery_notice,
            expiring_credentials_remind_once_then_need_a_reconnect,
            retries_run_out_into_the_dead_letter_queue,
            a_sync_brings_an_integration_back_from_error_and_a_dead_letter_never_undoes_a_reconnect,
            redrive_runs_one_job_per_integration_and_none_beside_one_in_flight,
            a_rotated_refresh_token_outlives_a_write_made_during_the_refresh,
            the_work_after_a_sync_stays_within_the_invocation,
            a_worker_stopped_mid_job_is_replaced_after_the_visibility_timeout,
            ten_workers_share_one_token_refresh,
            one_worker_refreshes_once_for_a_batch,
            a_panicking_adapter_fails_only_its_message,
            the_scheduler_fans_out_once_per_tick,
            an_operator_retries_a_dead_job,
            credentials_an_adapter_renewed_are_kept,
            a_users_reconnect_or_disconnect_during_a_sync_stands,
            a_due_integration_with_a_job_in_flight_gets_no_second_one,
            nothing_piles_up_for_a_provider_without_a_worker,
            a_job_whose_message_cannot_be_sent_ends_dead_after_a_few_tries,
            a_waiting_job_is_sent_again_only_once_the_queue_no_longer_holds_it,
            a_backlog_hours_deep_drains_with_every_job_run_once,
            a_sync_that_would_outlive_its_invocation_is_recorded_and_retried,
            fault_run_of_1000_jobs,
        );
    };
}
