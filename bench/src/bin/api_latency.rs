//! API latency of the dev server (release build, its own process): the
//! integration list and a 90-day KPI query at 1, 16 and 64 concurrent
//! connections, beside the floor — `/healthz`, a static answer through the same
//! stack (router, request id, body limit, logging). A Rust load generator
//! (keep-alive connections, one task each) runs each case for a few seconds.
//!
//! `api_latency <dev-server binary> [seconds per case]` writes `api_latency.json`.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kpi_bench::quantile;
use serde_json::{Value, json};

const SECRET: &str = "bench-dev-secret-0123456789abcdef";

async fn load(url: &str, token: &str, connections: usize, seconds: f64) -> Value {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .unwrap();
        let url = url.to_owned();
        let token = token.to_owned();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let t = Instant::now();
                let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
                assert!(resp.status().is_success(), "{url}: {}", resp.status());
                let _ = resp.bytes().await.unwrap();
                latencies.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            latencies
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    json!({
        "connections": connections,
        "requests": all.len(),
        "throughput_rps": all.len() as f64 / seconds,
        "p50_ms": quantile(&all, 0.5),
        "p99_ms": quantile(&all, 0.99),
    })
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let binary = args
        .get(1)
        .expect("usage: api_latency <dev-server> [seconds]");
    let seconds: f64 = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let dir = kpi_tests::moto::temp_dir("kpi-bench-api");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = Command::new(binary)
        .current_dir(&dir)
        .env("KPI_LISTEN", format!("127.0.0.1:{port}"))
        .env("KPI_AUTH_DEV_SECRET", SECRET)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the dev server");
    let client = kpi_tests::client();
    for _ in 0..200 {
        if client.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // A workspace with GA4 connected, its property picked and 90 days synced.
    let browser = kpi_tests::client_builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    kpi_tests::flows::dev_login(&browser, &base, "demo").await;
    let back =
        kpi_tests::flows::consent(&browser, &base, "ga4", "workspace=demo", "allow", true).await;
    let (_, pairs, _) = kpi_tests::flows::finish(&browser, &base, &back.callback).await;
    let id = kpi_tests::flows::param(&pairs, "integration")
        .unwrap()
        .to_owned();
    let token = kpi_app::auth::sign_dev_token(
        &secrecy::SecretString::from(SECRET.to_owned()),
        "bench",
        &[kpi_core::WorkspaceId::parse("demo").unwrap()],
        false,
        Duration::from_secs(3600),
    )
    .unwrap();
    let api = |path: &str| format!("{base}/v1/workspaces/demo{path}");
    let resp = client
        .patch(api(&format!("/integrations/{id}")))
        .bearer_auth(&token)
        .json(&json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let today = chrono::Utc::now().date_naive();
    let from = today - chrono::Duration::days(89);
    let resp = client
        .post(api(&format!("/integrations/{id}/sync")))
        .bearer_auth(&token)
        .json(&json!({"from": from, "to": today}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    for _ in 0..300 {
        let jobs: Value = client
            .get(api(&format!("/integrations/{id}/jobs")))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if jobs["items"][0]["status"] == "succeeded" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    let cases = [
        ("floor: /healthz", format!("{base}/healthz")),
        ("integration list", api("/integrations")),
        (
            "KPI query (90 days)",
            api(&format!("/kpis?metric=ga4.sessions&from={from}&to={today}")),
        ),
    ];
    let mut results = Vec::new();
    for connections in [1, 16, 64] {
        for (name, url) in &cases {
            // A short warm-up, then the measured run.
            load(url, &token, connections, 0.5).await;
            let mut row = load(url, &token, connections, seconds).await;
            row["case"] = json!(name);
            println!("{row}");
            results.push(row);
        }
    }
    let _ = server.kill();
    let _ = server.wait();
    kpi_tests::moto::remove_dir(&dir);
    let out = kpi_bench::results_dir().join("api_latency.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&Value::Array(results)).unwrap(),
    )
    .unwrap();
    println!("written: {}", out.display());
}
