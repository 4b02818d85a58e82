//! Cold start of every function, against a local Lambda Runtime API, beside
//! the floor (`hello`, the smallest `lambda_runtime` function, built in the
//! same run): exec → first poll of the Runtime API, exec → first answer, and
//! peak RSS after that one invocation. The functions run their real start-up
//! (configuration, the Secrets Manager secret, AWS clients) against
//! `moto_server`, each on its sample event from `events/`.
//!
//! `coldstart <dir of release binaries> [runs]` writes `coldstart.json`.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kpi_bench::quantile;
use kpi_bench::runtime_api::RuntimeApi;
use kpi_tests::moto::MotoServer;
use serde_json::{Value, json};

/// (binary, sample event, what the answer must be)
const FUNCTIONS: [(&str, &str); 11] = [
    ("hello", "sync-scheduler-tick.json"),
    ("api", "api-healthz.json"),
    ("oauth", "oauth-callback-replayed.json"),
    ("ui", "ui-settings-signed-out.json"),
    ("meta-webhook", "meta-webhook-forged.json"),
    ("resend-webhook", "resend-webhook-stale.json"),
    ("sync-scheduler", "sync-scheduler-tick.json"),
    ("sync-ga4", "sync-ga4-batch.json"),
    ("sync-meta", "sync-meta-batch.json"),
    ("sync-resend", "sync-resend-batch.json"),
    ("sync-dlq", "sync-dlq-batch.json"),
];

fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let bin_dir = PathBuf::from(args.get(1).expect("usage: coldstart <release dir> [runs]"));
    let runs: usize = args.get(2).and_then(|r| r.parse().ok()).unwrap_or(7);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");

    // What a deployed stack has: the table, the queues, the key, the secret.
    let moto = MotoServer::start();
    let sdk = moto.sdk_config().await;
    let store = kpi_tests::fixtures::dynamo_store_on(&moto).await;
    let queues = kpi_tests::fixtures::create_sqs_queues(&sdk).await;
    let key = kpi_tests::fixtures::create_kms_key(&sdk).await;
    let secret = aws_sdk_secretsmanager::Client::new(&sdk)
        .create_secret()
        .name("kpi-bench/app")
        .secret_string(
            json!({
                "META_APP_SECRET": "sandbox-meta-app-secret",
                "META_WEBHOOK_VERIFY_TOKEN": "sandbox-verify-token",
                "RESEND_WEBHOOK_SECRET": "whsec_c2FuZGJveC1yZXNlbmQtd2ViaG9vay1rZXkh",
            })
            .to_string(),
        )
        .send()
        .await
        .expect("secret")
        .arn()
        .unwrap()
        .to_owned();
    let mut env: Vec<(String, String)> = moto
        .env()
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
    for (k, v) in [
        ("KPI_ENV", "production".to_owned()),
        ("KPI_PUBLIC_URL", "https://kpi.example.com".to_owned()),
        ("KPI_STORE", format!("dynamodb:{}", store.table_name())),
        ("KPI_QUEUE", "sqs".to_owned()),
        ("KPI_VAULT", format!("kms:{key}")),
        ("KPI_SECRET_ID", secret),
        (
            "KPI_AUTH_JWKS_URL",
            "https://auth.example.com/.well-known/jwks.json".to_owned(),
        ),
        ("KPI_AUTH_ISSUER", "https://auth.example.com/".to_owned()),
        ("KPI_AUTH_AUDIENCE", "kpi".to_owned()),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256".to_owned()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "bench".to_owned()),
        ("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/bench".to_owned()),
        ("RUST_LOG", "info".to_owned()),
    ] {
        env.push((k.to_owned(), v));
    }
    for (provider, url) in &queues {
        env.push((
            format!("KPI_QUEUE_URL_{}", provider.as_str().to_uppercase()),
            url.clone(),
        ));
    }

    let (api, addr) = RuntimeApi::start().await;
    let mut results = Vec::new();
    for (name, event_file) in FUNCTIONS {
        let binary = bin_dir.join(name);
        let event = std::fs::read_to_string(root.join("events").join(event_file)).unwrap();
        let (mut poll, mut answer, mut rss) = (Vec::new(), Vec::new(), Vec::new());
        let mut outcome = String::new();
        // One start to warm the page cache, then the measured ones.
        for run in 0..=runs {
            api.reset(&event);
            let start = Instant::now();
            let mut child = Command::new(&binary)
                .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                .env("AWS_LAMBDA_RUNTIME_API", &addr)
                .env("AWS_LAMBDA_FUNCTION_NAME", name)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
            let deadline = start + Duration::from_secs(10);
            loop {
                if api.marks.lock().unwrap().answered.is_some() || Instant::now() > deadline {
                    break;
                }
                tokio::time::sleep(Duration::from_micros(200)).await;
            }
            let peak = peak_rss_kib(child.id());
            let _ = child.kill();
            let _ = child.wait();
            let m = api.marks.lock().unwrap();
            let (Some(first), Some(done)) = (m.first_poll, m.answered) else {
                // Written down as such; the other functions are still measured.
                outcome = "no answer within 10 s".into();
                break;
            };
            outcome = format!(
                "{}: {}",
                m.outcome.clone().unwrap_or_default(),
                m.body
                    .clone()
                    .unwrap_or_default()
                    .chars()
                    .take(160)
                    .collect::<String>()
            );
            if run == 0 {
                continue;
            }
            poll.push((first - start).as_secs_f64() * 1000.0);
            answer.push((done - start).as_secs_f64() * 1000.0);
            rss.push(peak.unwrap_or(0) as f64);
        }
        let row = json!({
            "function": name,
            "runs": runs,
            "first_poll_ms": if poll.is_empty() { Value::Null } else { json!(quantile(&poll, 0.5)) },
            "first_response_ms": if answer.is_empty() { Value::Null } else { json!(quantile(&answer, 0.5)) },
            "first_response_ms_max": if answer.is_empty() { Value::Null } else { json!(quantile(&answer, 1.0)) },
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
