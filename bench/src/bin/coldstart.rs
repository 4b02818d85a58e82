//! Cold start of every function, against a local Lambda Runtime API, beside
//! the floor (`hello`, the smallest `lambda_runtime` function, built in the
//! same run): exec → first poll of the Runtime API, exec → first answer, and
//! half a second later the same event again, warm, and peak RSS after both
//! (by then every function is configured, whichever event made it). The
//! functions run their real start-up (configuration, the Secrets Manager
//! secret, AWS clients) against `moto_server` behind a proxy that answers each
//! AWS call [`AWS_LATENCY`] late, as a region's services would, each on its
//! sample event from `events/`.
//!
//! A function's cold start is its first answer less the same event's warm
//! answer: what the event itself needs (a scheduler tick's queries, a job's
//! lookup) is not start-up, while start-up work an event waits for (a secret
//! fetched before or while it runs) is.
//!
//! `coldstart <dir of release binaries> [runs] [function,…]` writes
//! `coldstart.json`. `make bench` gives it the functions and `hello` built as
//! the Lambda package is (position-dependent), for this machine.

use std::path::PathBuf;
use std::time::Duration;

use kpi_bench::quantile;
use kpi_tests::aws_calls::AwsCalls;
use kpi_tests::moto::MotoServer;
use kpi_tests::runtime::Function;
use kpi_tests::stack::Stack;
use serde_json::{Value, json};

/// (function as deployed, binary, sample event, the provider whose work
/// queue the event comes from)
const FUNCTIONS: [(&str, &str, &str, Option<&str>); 11] = [
    ("hello", "hello", "sync-scheduler-tick.json", None),
    ("api", "api", "api-healthz.json", None),
    ("oauth", "oauth", "oauth-callback-replayed.json", None),
    ("ui", "ui", "ui-settings-signed-out.json", None),
    (
        "webhook (meta)",
        "webhook",
        "meta-webhook-forged.json",
        None,
    ),
    (
        "webhook (resend)",
        "webhook",
        "resend-webhook-stale.json",
        None,
    ),
    (
        "sync-scheduler",
        "sync-scheduler",
        "sync-scheduler-tick.json",
        None,
    ),
    (
        "sync-worker (ga4)",
        "sync-worker",
        "sync-ga4-batch.json",
        Some("ga4"),
    ),
    (
        "sync-worker (meta_ads)",
        "sync-worker",
        "sync-meta-batch.json",
        Some("meta_ads"),
    ),
    (
        "sync-worker (resend)",
        "sync-worker",
        "sync-resend-batch.json",
        Some("resend"),
    ),
    ("sync-dlq", "sync-dlq", "sync-dlq-batch.json", None),
];

/// The pause before the warm event, for work started after the first answer.
const SETTLE: Duration = Duration::from_millis(500);

/// What each AWS call costs on top of moto's own answer: a region's
/// DynamoDB, SQS, KMS and Secrets Manager round trips from Lambda take about
/// 10–20 ms for the first calls of a fresh connection.
const AWS_LATENCY: Duration = Duration::from_millis(15);

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin_dir = PathBuf::from(args.get(1).expect("usage: coldstart <release dir> [runs]"));
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(7);
    // Optionally only these functions (comma-separated), the floor always.
    let only: Option<Vec<String>> = args
        .get(3)
        .map(|o| o.split(',').map(str::to_owned).collect());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");

    // What a deployed stack has: the table, the queues, the key, the secret.
    let moto = MotoServer::start();
    let mut stack = Stack::create(
        &moto,
        &json!({
            "META_APP_SECRET": "sandbox-meta-app-secret",
            "META_WEBHOOK_VERIFY_TOKEN": "sandbox-verify-token",
            "RESEND_WEBHOOK_SECRET": "whsec_c2FuZGJveC1yZXNlbmQtd2ViaG9vay1rZXkh",
        }),
    )
    .await;
    // The functions reach AWS through the delaying proxy.
    let wire = AwsCalls::start_with_latency(moto.endpoint(), AWS_LATENCY).await;
    stack.set("AWS_ENDPOINT_URL", wire.url.clone());
    for (k, v) in [
        (
            "KPI_AUTH_JWKS_URL",
            "https://auth.example.com/.well-known/jwks.json",
        ),
        ("KPI_AUTH_ISSUER", "https://auth.example.com/"),
        ("KPI_AUTH_AUDIENCE", "kpi"),
        // The pages sign in at the dashboard's identity provider, as a
        // deployment sets it up (template parameters: the environment).
        ("KPI_OIDC_ISSUER", "https://auth.example.com/"),
        ("KPI_OIDC_CLIENT_ID", "kpi-pages"),
        // The providers' apps as a deployment configures them (no call
        // reaches them: every sample event ends before one).
        (
            "GOOGLE_CLIENT_ID",
            "123456789012-bench.apps.googleusercontent.com",
        ),
        ("GOOGLE_CLIENT_SECRET", "bench-google-client-secret"),
        ("META_APP_ID", "100000000000001"),
    ] {
        stack.set(k, v);
    }
    let logs = kpi_bench::results_dir().join("coldstart-logs");
    std::fs::create_dir_all(&logs).unwrap();

    let mut results = Vec::new();
    for (name, binary, event_file, queue_of) in FUNCTIONS {
        if name != "hello"
            && only
                .as_ref()
                .is_some_and(|o| !o.iter().any(|f| name.starts_with(f.as_str())))
        {
            continue;
        }
        let binary = bin_dir.join(binary);
        let mut event = std::fs::read_to_string(root.join("events").join(event_file)).unwrap();
        if let Some(provider) = queue_of {
            // The worker learns its provider from the queue a batch comes
            // from: this stack's queue, as its event source would name it.
            let arn = stack.queue_arn(provider.parse().unwrap()).await;
            let mut e: Value = serde_json::from_str(&event).unwrap();
            for r in e["Records"].as_array_mut().unwrap() {
                r["eventSourceARN"] = json!(arn);
            }
            event = e.to_string();
        }
        let (mut poll, mut answer, mut warm, mut rss) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let mut outcome = String::new();
        // One start to warm the page cache, then the measured ones.
        for run in 0..=runs {
            let mut function =
                Function::start(binary.clone(), &stack.env, logs.join(format!("{name}.log"))).await;
            let done = match function
                .invoke_within(&event, Duration::from_secs(10))
                .await
            {
                Ok(done) => done,
                Err(why) => {
                    // Written down as such; the other functions are still measured.
                    outcome = why;
                    break;
                }
            };
            let (Some(first), started) = (function.api.first_poll(), function.started) else {
                outcome = format!("failed before its first poll: {}", done.body);
                break;
            };
            // A function that answered the first event without its
            // configuration makes it in the background after that answer:
            // the warm event comes once that has settled.
            tokio::time::sleep(SETTLE).await;
            let sent = std::time::Instant::now();
            let warm_answer = match function
                .invoke_within(&event, Duration::from_secs(10))
                .await
            {
                Ok(again) => again.at - sent,
                Err(why) => {
                    outcome = format!("no warm answer: {why}");
                    break;
                }
            };
            // Configured by now, whichever event made the configuration.
            let peak = function.peak_rss_kib();
            drop(function);
            outcome = format!(
                "{}: {}",
                if done.ok { "response" } else { "error" },
                done.body.chars().take(160).collect::<String>()
            );
            if run == 0 {
                continue;
            }
            poll.push((first - started).as_secs_f64() * 1000.0);
            answer.push((done.at - started).as_secs_f64() * 1000.0);
            warm.push(warm_answer.as_secs_f64() * 1000.0);
            rss.push(peak.unwrap_or(0) as f64);
        }
        let row = json!({
            "function": name,
            "runs": runs,
            "first_poll_ms": if poll.is_empty() { Value::Null } else { json!(quantile(&poll, 0.5)) },
            "first_response_ms": if answer.is_empty() { Value::Null } else { json!(quantile(&answer, 0.5)) },
            "first_response_ms_max": if answer.is_empty() { Value::Null } else { json!(quantile(&answer, 1.0)) },
            "warm_response_ms": if warm.is_empty() { Value::Null } else { json!(quantile(&warm, 0.5)) },
            "aws_latency_ms": AWS_LATENCY.as_secs_f64() * 1000.0,
            "peak_rss_kib": if rss.is_empty() { Value::Null } else { json!(quantile(&rss, 0.5)) },
            "binary_bytes": std::fs::metadata(&binary).map(|m| m.len()).unwrap_or(0),
            "answer": outcome,
        });
        println!("{row}");
        results.push(row);
    }
    let out = kpi_bench::results_dir().join("coldstart.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&Value::Array(results)).unwrap(),
    )
    .unwrap();
    println!("written: {}", out.display());
}
