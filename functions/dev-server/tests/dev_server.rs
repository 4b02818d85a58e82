//! The dev server binary as `make run` starts it: on the embedded backends by
//! default, and on the AWS ones (through moto) when configured so.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use kpi_tests::fixtures;
use kpi_tests::moto::{MotoServer, remove_dir, temp_dir};

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(dir: &Path, env: &[(&str, String)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dev-server"));
    cmd.current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KPI_LISTEN", "127.0.0.1:0")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the binary and reads the address from its first line.
fn start(dir: &Path, env: &[(&str, String)]) -> Server {
    let mut child = command(dir, env)
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dev-server");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    stdout.read_line(&mut first).unwrap();
    // Keep reading so the server never writes into a closed pipe.
    std::thread::spawn(move || std::io::copy(&mut stdout, &mut std::io::sink()));
    let base = first
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first:?}"))
        .to_owned();
    Server { child, base }
}

async fn get_json(base: &str, path: &str) -> (u16, String, serde_json::Value) {
    let resp = kpi_tests::client()
        .get(format!("{base}{path}"))
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let ctype = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (status, ctype, resp.json().await.unwrap())
}

#[tokio::test]
async fn serves_on_the_embedded_backends() {
    let dir = temp_dir("kpi-dev");
    let server = start(&dir, &[]);
    let (status, _, health) = get_json(&server.base, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");

    let (status, _, providers) = get_json(&server.base, "/v1/providers").await;
    assert_eq!(status, 200);
    let ids: Vec<_> = providers
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["ga4", "meta_ads", "resend"]);
    assert_eq!(providers[0]["metrics"].as_array().unwrap().len(), 10);
    assert_eq!(providers[2]["auth_mode"], "api_key");

    let (status, ctype, problem) = get_json(&server.base, "/v1/nothing-here").await;
    assert_eq!(status, 404);
    assert_eq!(ctype, "application/problem+json");
    assert_eq!(problem["status"], 404);

    // The embedded store and the local key were created in the working folder.
    assert!(dir.join(".kpi/kpi.db").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join(".kpi/master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(server);
    remove_dir(&dir);
}

#[tokio::test]
async fn serves_on_aws_backends_through_the_endpoint_variable() {
    let moto = MotoServer::start();
    let config = moto.sdk_config().await;
    let urls = fixtures::create_sqs_queues(&config).await;
    let key = fixtures::create_kms_key(&config).await;
    let dir = temp_dir("kpi-dev-aws");
    let mut env = moto.env();
    env.extend([
        ("KPI_STORE", "dynamodb:kpi-dev-table".to_owned()),
        ("KPI_QUEUE", "sqs".to_owned()),
        ("KPI_QUEUE_URL_GA4", urls[&kpi_providers::ga4::ID].clone()),
        (
            "KPI_QUEUE_URL_META_ADS",
            urls[&kpi_providers::meta::ID].clone(),
        ),
        (
            "KPI_QUEUE_URL_RESEND",
            urls[&kpi_providers::resend::ID].clone(),
        ),
        ("KPI_VAULT", format!("kms:{key}")),
    ]);
    let server = start(&dir, &env);
    let (status, _, health) = get_json(&server.base, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ok");
    // Nothing embedded was created: the AWS backends are in use.
    assert!(!dir.join(".kpi").exists());
    drop(server);
    remove_dir(&dir);
}

#[test]
fn a_bad_setting_stops_start_up_naming_the_variable() {
    let dir = temp_dir("kpi-dev-bad");
    let out = command(&dir, &[("KPI_STORE", "postgres://nope".to_owned())])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KPI_STORE"), "{stderr}");
    remove_dir(&dir);
}

#[test]
fn production_is_refused_whatever_else_is_set() {
    let dir = temp_dir("kpi-dev-prod");
    let production = [
        ("KPI_ENV", "production"),
        ("KPI_PUBLIC_URL", "https://kpi.example.com"),
        ("KPI_STORE", "dynamodb:kpi-prod"),
        ("KPI_QUEUE", "sqs"),
        ("KPI_VAULT", "kms:alias/kpi"),
        ("KPI_AUTH_JWKS_URL", "https://auth.example.com/jwks.json"),
        ("KPI_AUTH_ISSUER", "https://auth.example.com/"),
        ("KPI_AUTH_AUDIENCE", "kpi"),
    ]
    .map(|(k, v)| (k, v.to_owned()));
    let out = command(&dir, &production).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("KPI_ENV"), "{stderr}");
    assert!(stderr.contains("development only"), "{stderr}");
    remove_dir(&dir);
}

#[test]
fn listening_beyond_loopback_warns_about_the_dev_login() {
    let dir = temp_dir("kpi-dev-wide");
    let mut child = command(&dir, &[("KPI_LISTEN", "0.0.0.0:0".to_owned())])
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(first.contains("WARNING"), "{first}");
    assert!(first.contains("/dev/login"), "{first}");
    assert!(dev_server::listen_warning("127.0.0.1:3000".parse().unwrap()).is_none());
    assert!(dev_server::listen_warning("[::1]:3000".parse().unwrap()).is_none());
    remove_dir(&dir);
}
