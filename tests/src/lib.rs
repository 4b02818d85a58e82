//! Test support shared by every test binary: the moto server harness, backend
//! fixtures, and the conformance suites that the embedded and the AWS backends
//! both have to pass.

pub mod app;
pub mod aws_calls;
pub mod browser;

/// Metrics the engine and store cases write (GA4's, as its plug-in declares them).
pub const GA4_SESSIONS: kpi_core::metric::MetricSpec = kpi_providers::ga4::METRICS[0];
pub const GA4_TOTAL_REVENUE: kpi_core::metric::MetricSpec = kpi_providers::ga4::METRICS[9];
pub mod conformance;
pub mod fixtures;
pub mod flows;
pub mod iam;
pub mod moto;
pub mod oidc;
pub mod runtime;
pub mod stack;
pub mod tally;
pub mod template;

/// A reqwest client builder for tests, with the process's TLS provider (ring,
/// as in production) installed first.
pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = kpi_providers::http::client(std::time::Duration::from_secs(30));
    reqwest::Client::builder()
}

/// A plain test client.
pub fn client() -> reqwest::Client {
    client_builder().build().expect("test HTTP client")
}

/// `GET url` and its JSON body (tests only: panics on any failure).
pub async fn get_json(client: &reqwest::Client, url: impl reqwest::IntoUrl) -> serde_json::Value {
    client
        .get(url)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON body")
}

/// Waits until the integration `id` of `ws` has at least `n` jobs, all ended
/// (succeeded or dead), and returns them newest first.
/// Connects Resend with `key` in `ws` (as `c`) and gives it the sandbox's
/// sender address; the created integration as the API answered it.
pub async fn connect_resend(
    app: &app::TestApp,
    c: &reqwest::Client,
    ws: &str,
    key: &str,
) -> serde_json::Value {
    let created: serde_json::Value = c
        .post(app.url(&format!("/v1/workspaces/{ws}/integrations")))
        .json(&serde_json::json!({"provider": "resend", "api_key": key}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"]
        .as_str()
        .unwrap_or_else(|| panic!("{created}"));
    let patched = c
        .patch(app.url(&format!("/v1/workspaces/{ws}/integrations/{id}")))
        .json(&serde_json::json!({"settings": {"from_address": "kpi@sandbox.example.com"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    created
}

pub async fn wait_for_jobs(
    app: &app::TestApp,
    c: &reqwest::Client,
    ws: &str,
    id: &str,
    n: usize,
) -> Vec<serde_json::Value> {
    for _ in 0..200 {
        let jobs = get_json(
            c,
            app.url(&format!("/v1/workspaces/{ws}/integrations/{id}/jobs")),
        )
        .await;
        let items = jobs["items"].as_array().cloned().unwrap_or_default();
        if items.len() >= n
            && items
                .iter()
                .all(|j| j["status"] == "succeeded" || j["status"] == "dead")
        {
            return items;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("jobs of {id} did not finish");
}

/// The sandbox's Resend outbox once it holds at least `n` emails (or what it
/// holds after a few seconds).
pub async fn wait_for_outbox(
    app: &app::TestApp,
    n: usize,
) -> Vec<kpi_sandbox::resend_send::OutboxEmail> {
    for _ in 0..100 {
        let outbox = app.sandbox().resend_outbox();
        if outbox.len() >= n {
            return outbox;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    app.sandbox().resend_outbox()
}
