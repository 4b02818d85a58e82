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
