//! The sync engine in process for the sync and fan-out benchmarks: Meta Ads
//! integrations on the sandbox (its tokens need no login dialog), workers in
//! lanes, and the counting of what they did.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::Utc;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::ports::{
    Clock, CredentialContext, CredentialVault, Queue, QueueName, Store, SystemClock,
};
use kpi_core::{
    Integration, IntegrationId, IntegrationStatus, Provider, Registry, WorkspaceId, WorkspaceScope,
};
use kpi_providers::{BuildContext, SandboxSite};
use kpi_sandbox::Sandbox;
use kpi_sync::notifier::LogNotifier;
use kpi_sync::scheduler::SchedulerSettings;
use kpi_sync::{Disposition, Scheduler, Worker, WorkerSettings};
use secrecy::SecretString;

pub const WORKSPACE: &str = "bench";
pub const AD_ACCOUNT: &str = "act_1000000001";

pub fn scope() -> WorkspaceScope {
    WorkspaceScope::for_system(WorkspaceId::parse(WORKSPACE).unwrap(), "benchmark")
}

/// Every provider, on the sandbox served at `base`.
pub fn registry(sandbox: &Sandbox, base: &str) -> Registry {
    let site = SandboxSite {
        base: url::Url::parse(base).unwrap(),
        app_credentials: sandbox.app_credentials(),
    };
    let vars = kpi_core::config::Vars::new(|_| None);
    kpi_providers::registry(&BuildContext {
        vars: &vars,
        http: kpi_providers::http::client(Duration::from_secs(30)).unwrap(),
        sandbox: Some(&site),
        sandbox_setting: Some(true),
        production: false,
    })
    .unwrap()
}

/// A connected Meta Ads integration with its own token, due now.
pub async fn meta_integration(
    store: &dyn Store,
    vault: &dyn CredentialVault,
    token: String,
) -> Integration {
    let now = Utc::now();
    let mut i = Integration::new(
        IntegrationId::new_random(),
        WorkspaceId::parse(WORKSPACE).unwrap(),
        kpi_providers::meta::ID,
        "Meta Ads",
        now,
    );
    i.settings.insert("ad_account".into(), AD_ACCOUNT.into());
    let credentials = ConnectionCredentials::OAuth(OAuthTokens {
        access_token: SecretString::from(token),
        refresh_token: None,
        expires_at: None,
        scopes: vec!["ads_read".into()],
    });
    i.credentials = Some(
        vault
            .seal(&CredentialContext::of(&i), &credentials)
            .await
            .unwrap(),
    );
    i.transition(IntegrationStatus::Connected, now).unwrap();
    store.create_integration(&scope(), &i).await.unwrap()
}

/// `n` integrations, created `concurrency` at a time.
pub async fn meta_integrations(
    n: usize,
    concurrency: usize,
    store: &dyn Store,
    vault: &dyn CredentialVault,
    sandbox: &Sandbox,
) -> Vec<Integration> {
    use futures::StreamExt as _;
    futures::stream::iter(0..n)
        .map(|_| meta_integration(store, vault, sandbox.meta_token()))
        .buffer_unordered(concurrency)
        .collect()
        .await
}

pub fn worker(
    store: Arc<dyn Store>,
    vault: Arc<dyn CredentialVault>,
    registry: Arc<Registry>,
) -> Worker {
    Worker {
        store,
        vault,
        clock: Arc::new(SystemClock),
        notifier: Arc::new(LogNotifier),
        observer: None,
        registry,
        settings: WorkerSettings::default(),
        id: "bench-worker".into(),
    }
}

/// `claims_at_once`: [`kpi_sync::scheduler::EMBEDDED_CLAIMS_AT_ONCE`] on
/// SQLite, the default on DynamoDB, as the dev server and the Lambda have it.
pub fn scheduler(store: Arc<dyn Store>, queue: Arc<dyn Queue>, claims_at_once: usize) -> Scheduler {
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    Scheduler {
        store,
        queue,
        clock,
        notifier: Arc::new(LogNotifier),
        due_work: None,
        settings: SchedulerSettings {
            claims_at_once,
            ..SchedulerSettings::default()
        },
    }
}

/// What the lanes did.
#[derive(Debug, Clone, Copy)]
pub struct LaneRun {
    pub elapsed: Duration,
    pub handled: usize,
    pub retries: usize,
}

/// `lanes` workers, each handling one message at a time from `provider`'s
/// queue, until `expected` messages were handled to the end (a retry is
/// handled again when it shows).
pub async fn run_lanes(
    queue: Arc<dyn Queue>,
    worker: Arc<Worker>,
    provider: Provider,
    lanes: usize,
    expected: usize,
) -> LaneRun {
    let done = Arc::new(AtomicUsize::new(0));
    let retries = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let name = QueueName::Work(provider);
    let tasks: Vec<_> = (0..lanes)
        .map(|_| {
            let (queue, worker, done, retries) =
                (queue.clone(), worker.clone(), done.clone(), retries.clone());
            tokio::spawn(async move {
                while done.load(Ordering::SeqCst) < expected {
                    let Ok(messages) = queue.receive(name, 1, Duration::from_millis(50)).await
                    else {
                        continue;
                    };
                    for m in messages {
                        match worker.handle(&m).await {
                            Disposition::Done => {
                                let _ = queue.delete(name, &m.receipt).await;
                                done.fetch_add(1, Ordering::SeqCst);
                            }
                            Disposition::RetryAfter(delay) => {
                                let _ = queue.change_visibility(name, &m.receipt, delay).await;
                                retries.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    LaneRun {
        elapsed: started.elapsed(),
        handled: done.load(Ordering::SeqCst),
        retries: retries.load(Ordering::SeqCst),
    }
}
