//! A local stand-in for the Lambda Runtime API, so the real function binaries
//! run as Lambda runs them: the process polls `/invocation/next`, gets an
//! event, posts its answer (or an init error) back. The end-to-end test and
//! the cold-start bench drive the binaries through it.
//!
//! Also here: the events Lambda's integrations hand the functions (API
//! Gateway's HTTP API v2 request, an SQS batch) and their answers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::{Value, json};
use tokio::sync::{mpsc, oneshot};

/// How a function answered one invocation.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `true` for `/response`, `false` for `/error` (or an init error).
    pub ok: bool,
    pub body: String,
    pub at: Instant,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("answer is not JSON ({e}): {}", self.body))
    }
}

struct Inner {
    /// Events waiting for the function's next poll: (request id, event).
    queued: tokio::sync::Mutex<mpsc::UnboundedReceiver<(String, String)>>,
    send: mpsc::UnboundedSender<(String, String)>,
    /// Invocations handed out or queued, by request id.
    waiting: Mutex<HashMap<String, oneshot::Sender<Answer>>>,
    first_poll: Mutex<Option<Instant>>,
    next_id: AtomicU64,
}

/// One function's Runtime API (a process talks to exactly one).
#[derive(Clone)]
pub struct RuntimeApi {
    inner: Arc<Inner>,
    /// `host:port`, for `AWS_LAMBDA_RUNTIME_API`.
    pub addr: String,
}

impl RuntimeApi {
    /// Serves on a free loopback port.
    pub async fn start() -> Self {
        let (send, queued) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            queued: tokio::sync::Mutex::new(queued),
            send,
            waiting: Mutex::default(),
            first_poll: Mutex::default(),
            next_id: AtomicU64::new(1),
        });
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(inner.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Self { inner, addr }
    }

    /// When the function first asked for an event (its start-up is done).
    pub fn first_poll(&self) -> Option<Instant> {
        *self.inner.first_poll.lock().unwrap()
    }

    /// Hands `event` to the function's next poll; its answer, or `None` when
    /// none came within `timeout`.
    pub async fn invoke_within(&self, event: &str, timeout: Duration) -> Option<Answer> {
        let id = format!(
            "8476a536-e9f4-11e8-9739-{:012x}",
            self.inner.next_id.fetch_add(1, Ordering::SeqCst)
        );
        let (tx, rx) = oneshot::channel();
        self.inner.waiting.lock().unwrap().insert(id.clone(), tx);
        self.inner
            .send
            .send((id.clone(), event.to_owned()))
            .unwrap();
        let answer = tokio::time::timeout(timeout, rx).await.ok()?.ok();
        self.inner.waiting.lock().unwrap().remove(&id);
        answer
    }
}

async fn next(State(inner): State<Arc<Inner>>) -> impl IntoResponse {
    inner
        .first_poll
        .lock()
        .unwrap()
        .get_or_insert_with(Instant::now);
    // Lambda holds the poll until there is an event (and freezes the function meanwhile).
    let Some((id, event)) = inner.queued.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 300_000;
    let mut headers = HeaderMap::new();
    for (name, value) in [
        ("lambda-runtime-aws-request-id", id),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:kpi-local".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    (StatusCode::OK, headers, event).into_response()
}

fn answer(inner: &Inner, id: &str, ok: bool, body: Bytes) -> StatusCode {
    let answer = Answer {
        ok,
        body: String::from_utf8_lossy(&body).into_owned(),
        at: Instant::now(),
    };
    match inner.waiting.lock().unwrap().remove(id) {
        Some(tx) => {
            let _ = tx.send(answer);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

async fn response(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&inner, &id, true, body)
}

async fn error(
    State(inner): State<Arc<Inner>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    answer(&inner, &id, false, body)
}

/// The function could not start: every invocation waiting gets the error.
async fn init_error(State(inner): State<Arc<Inner>>, body: Bytes) -> StatusCode {
    let waiting: Vec<_> = inner.waiting.lock().unwrap().drain().collect();
    for (_, tx) in waiting {
        let _ = tx.send(Answer {
            ok: false,
            body: String::from_utf8_lossy(&body).into_owned(),
            at: Instant::now(),
        });
    }
    StatusCode::ACCEPTED
}

/// A function binary running against its own [`RuntimeApi`]; ended on drop.
pub struct Function {
    pub name: String,
    pub api: RuntimeApi,
    pub started: Instant,
    child: Child,
    log: PathBuf,
}

impl Function {
    /// Starts `binary` with `env` (plus the Lambda variables the runtime sets),
    /// its output into `log`.
    pub async fn start(binary: PathBuf, env: &[(String, String)], log: PathBuf) -> Self {
        let api = RuntimeApi::start().await;
        let name = binary.file_name().unwrap().to_string_lossy().into_owned();
        let out = std::fs::File::create(&log).unwrap();
        let started = Instant::now();
        let child = Command::new(&binary)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .env("AWS_LAMBDA_RUNTIME_API", &api.addr)
            .env("AWS_LAMBDA_FUNCTION_NAME", &name)
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", format!("local/{name}"))
            .env("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", binary.display()));
        Self {
            name,
            api,
            started,
            child,
            log,
        }
    }

    /// Hands `event` to the function: its answer; `Err` saying why when it
    /// exited first (with the end of its log) or did not answer within `timeout`.
    pub async fn invoke_within(
        &mut self,
        event: &str,
        timeout: Duration,
    ) -> Result<Answer, String> {
        let answer = self.api.invoke_within(event, timeout);
        tokio::pin!(answer);
        loop {
            tokio::select! {
                answer = &mut answer => {
                    return answer.ok_or_else(|| format!("no answer within {timeout:?}"));
                }
                _ = tokio::time::sleep(Duration::from_millis(20)) => {
                    if let Ok(Some(status)) = self.child.try_wait() {
                        let log = self.log();
                        let tail: String = log.lines().rev().take(5).collect::<Vec<_>>().join(" | ");
                        return Err(format!("exited ({status}) without answering: {tail}"));
                    }
                }
            }
        }
    }

    /// [`Self::invoke_within`] a minute; no answer fails the caller.
    pub async fn invoke(&mut self, event: &Value) -> Answer {
        let name = self.name.clone();
        self.invoke_within(&event.to_string(), Duration::from_secs(60))
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What the function has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Peak resident memory so far (`VmHWM`), in KiB.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).ok()?;
        status
            .lines()
            .find(|l| l.starts_with("VmHWM:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
    }
}

impl Drop for Function {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// API Gateway's HTTP API (payload 2.0) event for one request.
pub fn http_event(
    method: &str,
    path_and_query: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Value {
    let (path, query) = path_and_query
        .split_once('?')
        .unwrap_or((path_and_query, ""));
    let mut header_map = serde_json::Map::new();
    header_map.insert("host".into(), json!("kpi.example.com"));
    header_map.insert("user-agent".into(), json!("kpi-local/1.0"));
    for (k, v) in headers {
        header_map.insert(k.to_ascii_lowercase(), json!(v));
    }
    let now = chrono::Utc::now();
    let mut event = json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": query,
        "headers": header_map,
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "kpilocal",
            "domainName": "kpi.example.com",
            "domainPrefix": "kpi",
            "http": {
                "method": method,
                "path": path,
                "protocol": "HTTP/1.1",
                "sourceIp": "192.0.2.10",
                "userAgent": "kpi-local/1.0"
            },
            "requestId": uuid::Uuid::new_v4().to_string(),
            "routeKey": "$default",
            "stage": "$default",
            "time": now.format("%d/%b/%Y:%H:%M:%S %z").to_string(),
            "timeEpoch": now.timestamp_millis()
        },
        "isBase64Encoded": false
    });
    if let Some(body) = body {
        event["body"] = json!(body);
    }
    event
}

/// An HTTP function's answer to an [`http_event`].
#[derive(Debug)]
pub struct HttpAnswer {
    pub status: u16,
    pub headers: serde_json::Map<String, Value>,
    pub body: String,
}

impl HttpAnswer {
    pub fn from_answer(answer: &Answer) -> Self {
        assert!(answer.ok, "the function failed: {}", answer.body);
        let v = answer.json();
        let body = v["body"].as_str().unwrap_or_default();
        let body = if v["isBase64Encoded"].as_bool() == Some(true) {
            use base64::Engine as _;
            String::from_utf8(
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap(),
            )
            .unwrap()
        } else {
            body.to_owned()
        };
        Self {
            status: v["statusCode"].as_u64().unwrap_or(0) as u16,
            headers: v["headers"].as_object().cloned().unwrap_or_default(),
            body,
        }
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("{} body is not JSON ({e}): {}", self.status, self.body))
    }
}

/// The SQS event source's batch for messages received from `queue_arn`, as
/// Lambda's event source mapping hands it to a worker.
pub fn sqs_event(queue_arn: &str, messages: &[aws_sdk_sqs::types::Message]) -> Value {
    let records: Vec<Value> = messages
        .iter()
        .map(|m| {
            let attributes: serde_json::Map<String, Value> = m
                .attributes()
                .map(|a| {
                    a.iter()
                        .map(|(k, v)| (k.as_str().to_owned(), json!(v)))
                        .collect()
                })
                .unwrap_or_default();
            json!({
                "messageId": m.message_id(),
                "receiptHandle": m.receipt_handle(),
                "body": m.body(),
                "attributes": attributes,
                "messageAttributes": {},
                "md5OfBody": m.md5_of_body(),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": "us-east-1"
            })
        })
        .collect();
    json!({ "Records": records })
}

/// Where `cargo` puts this build's binaries (the test's own `target/<profile>`).
pub fn binary_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    // target/<profile>/deps/<test binary>
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the function packages `names` (the same profile as the tests) and
/// returns the directory of their binaries.
pub fn build_functions(names: &[&str]) -> PathBuf {
    let dir = binary_dir();
    let release = dir.file_name().is_some_and(|n| n == "release");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.arg("build").arg("--quiet");
    if release {
        cmd.arg("--release");
    }
    for name in names {
        cmd.args(["-p", name]);
    }
    let status = cmd
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .status()
        .expect("cargo build of the functions");
    assert!(status.success(), "cargo build {names:?} failed");
    dir
}
