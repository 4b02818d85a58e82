//! The sync engine on a pair of backends (store + queue): the same cases run on
//! SQLite with the in-process queue and on DynamoDB with SQS through moto.

mod credentials;
mod dlq;
mod scheduler;
mod worker;

pub use credentials::{
    a_rotated_refresh_token_outlives_a_write_made_during_the_refresh,
    a_users_reconnect_or_disconnect_during_a_sync_stands, credentials_an_adapter_renewed_are_kept,
    expiring_credentials_remind_once_then_need_a_reconnect, one_worker_refreshes_once_for_a_batch,
    ten_workers_share_one_token_refresh,
};
pub use dlq::{
    a_sync_brings_an_integration_back_from_error_and_a_dead_letter_never_undoes_a_reconnect,
    an_operator_retries_a_dead_job, fault_run, fault_run_of_1000_jobs,
    redrive_runs_one_job_per_integration_and_none_beside_one_in_flight,
    retries_run_out_into_the_dead_letter_queue,
};
pub use scheduler::{
    a_backlog_hours_deep_drains_with_every_job_run_once,
    a_due_integration_with_a_job_in_flight_gets_no_second_one,
    a_job_whose_message_cannot_be_sent_ends_dead_after_a_few_tries,
    a_waiting_job_is_sent_again_only_once_the_queue_no_longer_holds_it,
    nothing_piles_up_for_a_provider_without_a_worker, the_scheduler_fans_out_once_per_tick,
};
pub use worker::{
    a_job_noted_as_sent_after_the_workers_read_is_claimed_at_once,
    a_message_delivered_twice_runs_once, a_panicking_adapter_fails_only_its_message,
    a_permanent_error_kills_the_job_and_notifies_once_a_day,
    a_run_of_failures_ends_with_one_recovery_notice,
    a_sync_that_would_outlive_its_invocation_is_recorded_and_retried,
    a_worker_stopped_mid_job_is_replaced_after_the_visibility_timeout,
    an_auth_failure_needs_reauth, rate_limits_errors_and_timeouts_are_retried_with_growing_delays,
    the_work_after_a_sync_stays_within_the_invocation,
};

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::job::{JobTrigger, SyncMessage};
use kpi_core::kpi::DateRange;
use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::ports::store::KpiQuery;
use kpi_core::ports::{
    Clock, CredentialContext, CredentialVault, Queue, QueueName, Store, SystemClock,
};
use kpi_core::{
    Integration, IntegrationId, IntegrationStatus, JobId, JobStatus, Registry, SyncJob,
    WorkspaceId, WorkspaceScope,
};
use kpi_sync::dlq::DlqHandler;
use kpi_sync::mock::MockAdapter;
use kpi_sync::notifier::RecordingNotifier;
use kpi_sync::runner::poll_once;
use kpi_sync::scheduler::SchedulerSettings;
use kpi_sync::{RetryPolicy, Scheduler, Worker, WorkerSettings};
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
            a_job_noted_as_sent_after_the_workers_read_is_claimed_at_once,
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
