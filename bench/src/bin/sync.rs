//! Two sync measurements, each against its floor in the same run:
//!
//! * **overhead**: 1,000 Meta Ads integrations synced by 32 concurrent worker
//!   lanes (the embedded store, queue and key) against the sandbox answering
//!   every call 50 ms late, beside the provider floor: the same provider calls
//!   (as many per integration as its sync made, one after another, each the
//!   first sync's 90-day insights request, its answer read whole) from 32
//!   lanes that do nothing else;
//! * **KMS calls**: 1,000 syncs of 100 integrations (ten rounds) on DynamoDB,
//!   SQS and KMS (moto), counted on the wire: the data-key cache bounds the
//!   decrypts by the integrations, not the syncs.
//!
//! `sync [integrations] [lanes]` writes `sync.json`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use kpi_bench::engine::{self, WORKSPACE};
use kpi_core::job::{JobTrigger, SyncMessage};
use kpi_core::kpi::DateRange;
use kpi_core::page::PageRequest;
use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::ports::{CredentialVault, Queue, QueueName, Store};
use kpi_core::{JobId, JobStatus, SyncJob, WorkspaceId};
use kpi_local::{LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_sandbox::{Faults, Sandbox, SandboxConfig};
use kpi_tests::aws_calls::AwsCalls;
use kpi_tests::moto::{MotoServer, sdk_config_at};
use kpi_vault::{CacheSettings, EnvelopeVault};
use serde_json::json;

const LATENCY_MS: u64 = 50;

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1_000);
    let lanes: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(32);
    let sandbox = Sandbox::new(SandboxConfig::default());
    let base = sandbox.serve().await.unwrap();
    let registry = Arc::new(engine::registry(&sandbox, &base));

    let overhead = overhead(&sandbox, &base, registry.clone(), n, lanes).await;
    println!("{overhead}");
    let kms = kms_calls(&sandbox, registry, 100, 10).await;
    println!("{kms}");

    let out = kpi_bench::results_dir().join("sync.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({ "overhead": overhead, "kms": kms })).unwrap(),
    )
    .unwrap();
    println!("written: {}", out.display());
}

async fn overhead(
    sandbox: &Sandbox,
    base: &str,
    registry: Arc<kpi_core::Registry>,
    n: usize,
    lanes: usize,
) -> serde_json::Value {
    let dir = kpi_tests::moto::temp_dir("kpi-bench-sync");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&dir.join("kpi.db")).unwrap());
    let queue: Arc<dyn Queue> = Arc::new(LocalQueue::new(LocalQueueSettings::default()));
    let vault: Arc<dyn CredentialVault> = Arc::new(kpi_tests::fixtures::local_vault());
    let made = engine::meta_integrations(n, 16, &*store, &*vault, sandbox).await;
    let report = engine::scheduler(
        store.clone(),
        queue.clone(),
        kpi_sync::scheduler::EMBEDDED_CLAIMS_AT_ONCE,
    )
    .run_once()
    .await
    .unwrap();
    assert_eq!(report.jobs_created, n, "{report:?}");

    sandbox.set_faults(Faults {
        latency_ms: Some(LATENCY_MS),
        ..Faults::default()
    });
    let worker = Arc::new(engine::worker(store.clone(), vault, registry));
    let run = engine::run_lanes(queue, worker, kpi_providers::meta::ID, lanes, n).await;

    // What each sync asked of the provider, from the jobs' records.
    let jobs = all_jobs(&*store, &made).await;
    let succeeded = jobs
        .iter()
        .filter(|j| j.status() == JobStatus::Succeeded)
        .count();
    let calls: Vec<u32> = jobs.iter().map(|j| j.provider_calls).collect();
    let total_calls: u32 = calls.iter().sum();

    // The floor: the same calls, in the same lanes, and nothing else.
    let token = sandbox.meta_token();
    let floor = latency_floor(base, &token, &calls, lanes).await;
    sandbox.set_faults(Faults::default());
    kpi_tests::moto::remove_dir(&dir);
    json!({
        "integrations": n,
        "lanes": lanes,
        "latency_ms": LATENCY_MS,
        "succeeded": succeeded,
        "retries": run.retries,
        "provider_calls": total_calls,
        "worker_ms": run.elapsed.as_secs_f64() * 1000.0,
        "floor_ms": floor.as_secs_f64() * 1000.0,
        "ratio": run.elapsed.as_secs_f64() / floor.as_secs_f64(),
    })
}

/// Every job of `integrations`.
async fn all_jobs(store: &dyn Store, integrations: &[kpi_core::Integration]) -> Vec<SyncJob> {
    let mut out = Vec::new();
    for i in integrations {
        let page = store
            .list_jobs(
                &engine::scope(),
                i.id,
                &PageRequest {
                    limit: 100,
                    cursor: None,
                },
            )
            .await
            .unwrap();
        out.extend(page.items);
    }
    out
}

/// `lanes` tasks make, for each entry of `calls`, that many requests one
/// after another of the insights window a first sync reads (the same URL,
/// the whole answer read): the provider's share of a sync, its latency and
/// its answer, and nothing of ours.
async fn latency_floor(base: &str, token: &str, calls: &[u32], lanes: usize) -> Duration {
    let http = kpi_providers::http::client(Duration::from_secs(30)).unwrap();
    let today = Utc::now().date_naive();
    let window = json!({
        "since": (today - chrono::Duration::days(89)).to_string(),
        "until": today.to_string(),
    })
    .to_string();
    let mut url = url::Url::parse(&format!(
        "{base}/meta/graph/v21.0/{}/insights",
        engine::AD_ACCOUNT
    ))
    .unwrap();
    url.query_pairs_mut()
        .append_pair("level", "account")
        .append_pair("fields", kpi_providers::meta::graph::INSIGHT_FIELDS)
        .append_pair("time_increment", "1")
        .append_pair("time_range", &window);
    let next = Arc::new(std::sync::Mutex::new(calls.to_vec()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..lanes)
        .map(|_| {
            let (http, url, next, token) =
                (http.clone(), url.clone(), next.clone(), token.to_owned());
            tokio::spawn(async move {
                loop {
                    let Some(k) = next.lock().unwrap().pop() else {
                        return;
                    };
                    for _ in 0..k {
                        let answer = http
                            .get(url.clone())
                            .bearer_auth(&token)
                            .send()
                            .await
                            .unwrap();
                        assert!(answer.status().is_success(), "{}", answer.status());
                        let _ = answer.bytes().await;
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    started.elapsed()
}

async fn kms_calls(
    sandbox: &Sandbox,
    registry: Arc<kpi_core::Registry>,
    integrations: usize,
    rounds: usize,
) -> serde_json::Value {
    let moto = MotoServer::start();
    let table = kpi_tests::fixtures::dynamo_store_on(&moto).await;
    let sdk = moto.sdk_config().await;
    let urls =
        kpi_tests::fixtures::create_sqs_queues_visible(&sdk, 5, Duration::from_secs(60)).await;
    let key = kpi_tests::fixtures::create_kms_key(&sdk).await;
    // Everything the engine asks of AWS goes through the recorder.
    let wire = AwsCalls::start(moto.endpoint()).await;
    let sdk = sdk_config_at(&wire.url).await;
    let store: Arc<dyn Store> = Arc::new(kpi_aws::DynamoStore::new(&sdk, table.table_name()));
    let queue: Arc<dyn Queue> = Arc::new(kpi_aws::SqsQueue::new(&sdk, urls));
    let sealing = EnvelopeVault::new(
        kpi_aws::KmsKeySource::new(&sdk, &key),
        CacheSettings::default(),
    );
    let made = engine::meta_integrations(integrations, 8, &*store, &sealing, sandbox).await;
    let connect_calls = wire.counts();
    wire.reset();

    // A worker process of its own (its own data-key cache), as a Lambda is.
    let vault: Arc<dyn CredentialVault> = Arc::new(EnvelopeVault::new(
        kpi_aws::KmsKeySource::new(&sdk, &key),
        CacheSettings::default(),
    ));
    let worker = Arc::new(engine::worker(store.clone(), vault, registry));
    let started = Instant::now();
    let today = Utc::now().date_naive();
    for _ in 0..rounds {
        let mut messages = Vec::new();
        for i in &made {
            let job = SyncJob::new(
                JobId::new_time_ordered(),
                WorkspaceId::parse(WORKSPACE).unwrap(),
                i.id,
                kpi_providers::meta::ID,
                JobTrigger::Manual,
                Some(DateRange {
                    from: today - chrono::Duration::days(2),
                    to: today,
                }),
                Utc::now(),
            );
            store.create_job(&engine::scope(), &job).await.unwrap();
            messages.push(OutgoingMessage::new(
                serde_json::to_string(&SyncMessage::for_job(&job)).unwrap(),
            ));
        }
        for chunk in messages.chunks(10) {
            queue
                .send_batch(QueueName::Work(kpi_providers::meta::ID), chunk.to_vec())
                .await
                .unwrap();
        }
        engine::run_lanes(
            queue.clone(),
            worker.clone(),
            kpi_providers::meta::ID,
            8,
            made.len(),
        )
        .await;
    }
    let elapsed = started.elapsed();
    let counts = wire.counts();
    let kms: HashMap<&str, usize> = counts
        .iter()
        .filter(|(op, _)| op.starts_with("kms:"))
        .map(|(op, n)| (op.as_str(), *n))
        .collect();
    json!({
        "integrations": integrations,
        "syncs": integrations * rounds,
        "connect_kms_calls": connect_calls.iter().filter(|(op, _)| op.starts_with("kms:")).map(|(op, n)| (op.clone(), *n)).collect::<HashMap<_, _>>(),
        "sync_kms_calls": kms,
        "sync_calls": counts,
        "seconds": elapsed.as_secs_f64(),
    })
}
