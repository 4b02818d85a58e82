//! The scheduler's fan-out with 10,000 due integrations on both backends:
//! SQLite with the embedded queue, and DynamoDB with SQS (moto) behind a proxy
//! that counts every AWS call and answers it [`AWS_LATENCY`] late, as a
//! region's services would (what concurrent claims win shows only there). Runs the scheduler until every due integration
//! has its job queued (a run creates at most 5,000), and reports per backend
//! the runs, queue batch calls (budget ≤ 1,000), store calls by operation and
//! that none is a scan (DynamoDB: no `Scan` call; SQLite: the due query's plan
//! is an index search).
//!
//! `fanout [due on SQLite] [due on DynamoDB]` writes `fanout.json`. With 0
//! due on DynamoDB the SQLite figures are measured again and the last run's
//! DynamoDB figures kept (moto takes most of the run's time).

use std::sync::Arc;
use std::time::Instant;

use kpi_bench::engine;
use kpi_core::ports::{CredentialVault, Queue, Store};
use kpi_local::{LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_sandbox::{Sandbox, SandboxConfig};
use kpi_tests::aws_calls::AwsCalls;
use kpi_tests::moto::{MotoServer, sdk_config_at};
use serde_json::{Value, json};

/// What each AWS call costs on top of moto's own answer (a region's
/// round trip from Lambda to DynamoDB or SQS is about 10–20 ms at first).
const AWS_LATENCY: std::time::Duration = std::time::Duration::from_millis(15);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(10_000);
    // One run's worth (a run creates at most 5,000 jobs): on moto every
    // DynamoDB request waits for the one before it.
    let n_dynamodb: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    // Tokens only; no provider is called.
    let sandbox = Sandbox::new(SandboxConfig::default());
    let vault: Arc<dyn CredentialVault> = Arc::new(kpi_tests::fixtures::local_vault());

    // SQLite and the embedded queue.
    let dir = kpi_tests::moto::temp_dir("kpi-bench-fanout");
    let db = dir.join("kpi.db");
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(&db).unwrap());
    let queue: Arc<dyn Queue> = Arc::new(LocalQueue::new(LocalQueueSettings::default()));
    engine::meta_integrations(n, 16, &*store, &*vault, &sandbox).await;
    let mut sqlite = fan_out(
        engine::scheduler(store, queue, kpi_sync::scheduler::EMBEDDED_CLAIMS_AT_ONCE),
        n,
    )
    .await;
    let plan = due_query_plan(&db);
    sqlite["due_query_plan"] = json!(plan);
    sqlite["scan"] = json!(plan.iter().any(|step| step.starts_with("SCAN")));
    println!("sqlite: {sqlite}");
    kpi_tests::moto::remove_dir(&dir);

    let out = kpi_bench::results_dir().join("fanout.json");
    let dynamodb = if n_dynamodb == 0 {
        std::fs::read_to_string(&out)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .map(|last| last["dynamodb"].clone())
            .unwrap_or(Value::Null)
    } else {
        on_dynamodb(n_dynamodb, &*vault, &sandbox).await
    };
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({ "sqlite": sqlite, "dynamodb": dynamodb })).unwrap(),
    )
    .unwrap();
    println!("written: {}", out.display());
}

/// The fan-out of `n` due integrations on DynamoDB and SQS (moto), filled
/// directly and fanned out through the delaying recorder.
async fn on_dynamodb(n_dynamodb: usize, vault: &dyn CredentialVault, sandbox: &Sandbox) -> Value {
    let moto = MotoServer::start();
    let table = kpi_tests::fixtures::dynamo_store_on(&moto).await;
    let urls = kpi_tests::fixtures::create_sqs_queues(&moto.sdk_config().await).await;
    engine::meta_integrations(n_dynamodb, 16, &table, vault, sandbox).await;
    let wire = AwsCalls::start_with_latency(moto.endpoint(), AWS_LATENCY).await;
    let sdk = sdk_config_at(&wire.url).await;
    let store: Arc<dyn Store> = Arc::new(kpi_aws::DynamoStore::new(&sdk, table.table_name()));
    let queue: Arc<dyn Queue> = Arc::new(kpi_aws::SqsQueue::new(&sdk, urls));
    let claims_at_once = kpi_sync::scheduler::SchedulerSettings::default().claims_at_once;
    let mut dynamodb = fan_out(engine::scheduler(store, queue, claims_at_once), n_dynamodb).await;
    dynamodb["claims_at_once"] = json!(claims_at_once);
    dynamodb["aws_latency_ms"] = json!(AWS_LATENCY.as_secs_f64() * 1000.0);
    let calls = wire.counts();
    dynamodb["sqs_send_message_batch_calls"] =
        json!(calls.get("sqs:SendMessageBatch").copied().unwrap_or(0));
    dynamodb["scan"] = json!(calls.get("dynamodb:Scan").copied().unwrap_or(0) > 0);
    dynamodb["aws_calls"] = json!(calls);
    println!("dynamodb: {dynamodb}");
    dynamodb
}

/// Scheduler runs until `n` jobs are queued.
async fn fan_out(scheduler: kpi_sync::Scheduler, n: usize) -> Value {
    let started = Instant::now();
    let (mut runs, mut jobs, mut batch_calls, mut due_seen) = (Vec::new(), 0, 0, 0);
    while jobs < n && runs.len() < 10 {
        let run_started = Instant::now();
        let report = scheduler.run_once().await.unwrap();
        jobs += report.jobs_created;
        batch_calls += report.batch_calls;
        due_seen += report.due_seen;
        runs.push(json!({
            "jobs_created": report.jobs_created,
            "messages_sent": report.messages_sent,
            "batch_calls": report.batch_calls,
            "capped": report.capped,
            "ms": run_started.elapsed().as_secs_f64() * 1000.0,
        }));
    }
    json!({
        "due": n,
        "jobs_created": jobs,
        "due_seen": due_seen,
        "batch_calls": batch_calls,
        "runs": runs,
        "seconds": started.elapsed().as_secs_f64(),
    })
}

/// SQLite's plan for the scheduler's due query, one line per step.
fn due_query_plan(db: &std::path::Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).unwrap();
    let mut stmt = conn
        .prepare(&format!(
            "EXPLAIN QUERY PLAN {}",
            kpi_local::DUE_INTEGRATIONS_QUERY
        ))
        .unwrap();
    stmt.query_map(rusqlite::params!["9999", "", "", 100], |r| {
        r.get::<_, String>(3)
    })
    .unwrap()
    .collect::<Result<_, _>>()
    .unwrap()
}
