//! The sync engine's notices by email on the dev server: a GA4 sync that
//! fails for good sends exactly one failure email (from the workspace's own
//! Resend account, through the sandbox), and its fix one recovery email.

mod delivery;
mod failures;
mod platform;

use kpi_tests::app::TestApp;
use serde_json::{Value, json};

/// The sandbox sends an outbox email's delivery event back, signed like Svix.
async fn event(app: &TestApp, email_id: &str, event: &str, times: u8) -> Value {
    let resp = kpi_tests::client()
        .post(app.url("/sandbox/_control/resend/events"))
        .json(&json!({"email_id": email_id, "event": event, "times": times}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}
