//! A local stand-in for the Lambda Runtime API: hands one event to the
//! function's first poll and notes when the poll and the answer arrive. Later
//! polls wait forever (the bench ends the process after the first answer).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};

#[derive(Default)]
pub struct Marks {
    pub first_poll: Option<Instant>,
    pub answered: Option<Instant>,
    /// `response` or `error` (an init error counts as `error`).
    pub outcome: Option<String>,
    pub body: Option<String>,
    polls: u32,
}

#[derive(Clone)]
pub struct RuntimeApi {
    pub marks: Arc<Mutex<Marks>>,
    event: Arc<Mutex<String>>,
}

impl RuntimeApi {
    /// Serves on a free loopback port; returns the API and its `host:port`.
    pub async fn start() -> (Self, String) {
        let api = Self {
            marks: Arc::default(),
            event: Arc::default(),
        };
        let router = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(error))
            .with_state(api.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        (api, addr)
    }

    /// The next function start gets `event`.
    pub fn reset(&self, event: &str) {
        *self.marks.lock().unwrap() = Marks::default();
        *self.event.lock().unwrap() = event.to_owned();
    }
}

async fn next(State(api): State<RuntimeApi>) -> impl IntoResponse {
    let first = {
        let mut m = api.marks.lock().unwrap();
        m.polls += 1;
        if m.first_poll.is_none() {
            m.first_poll = Some(Instant::now());
        }
        m.polls == 1
    };
    if !first {
        // Lambda freezes the function here; the bench ends it.
        std::future::pending::<()>().await;
    }
    let mut headers = HeaderMap::new();
    let deadline = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 300_000;
    for (name, value) in [
        (
            "lambda-runtime-aws-request-id",
            "8476a536-e9f4-11e8-9739-2dfe598c3fcd".to_owned(),
        ),
        ("lambda-runtime-deadline-ms", deadline.to_string()),
        (
            "lambda-runtime-invoked-function-arn",
            "arn:aws:lambda:eu-west-1:123456789012:function:kpi-bench".to_owned(),
        ),
        (
            "lambda-runtime-trace-id",
            "Root=1-5bef4de7-ad49b0e87f6ef6c87fc2e700;Parent=9a9197af755a6419;Sampled=1".to_owned(),
        ),
        ("content-type", "application/json".to_owned()),
    ] {
        headers.insert(name, HeaderValue::from_str(&value).unwrap());
    }
    let event = api.event.lock().unwrap().clone();
    (StatusCode::OK, headers, event)
}

fn mark(api: &RuntimeApi, outcome: &str, body: Bytes) -> StatusCode {
    let mut m = api.marks.lock().unwrap();
    if m.answered.is_none() {
        m.answered = Some(Instant::now());
        m.outcome = Some(outcome.to_owned());
        m.body = Some(String::from_utf8_lossy(&body).chars().take(2000).collect());
    }
    StatusCode::ACCEPTED
}

async fn response(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    mark(&api, "response", body)
}

async fn error(State(api): State<RuntimeApi>, body: Bytes) -> StatusCode {
    mark(&api, "error", body)
}
