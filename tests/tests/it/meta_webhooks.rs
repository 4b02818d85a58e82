//! Meta webhooks on the dev server: the endpoint check, signed deliveries
//! turned into one coalesced sync per integration using the ad account (in
//! every workspace), redeliveries and forgeries changing nothing.

use std::time::Duration;

use kpi_tests::app::TestApp;
use serde_json::{Value, json};

/// Connects Meta Ads in `ws` through the sandbox and picks `ad_account`.
/// Returns the integration as the PATCH answered it.
async fn meta_integration(app: &TestApp, ws: &str, ad_account: &str) -> Value {
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, ws).await;
    let back = kpi_tests::flows::consent(
        &browser,
        &app.base,
        "meta_ads",
        &format!("workspace={ws}"),
        "allow",
        true,
    )
    .await;
    let (_, pairs, _) = kpi_tests::flows::finish(&browser, &app.base, &back.callback).await;
    let id = kpi_tests::flows::param(&pairs, "integration")
        .unwrap()
        .to_owned();
    let c = app.client_for(&[ws]);
    let patched: Value = c
        .patch(app.url(&format!("/v1/workspaces/{ws}/integrations/{id}")))
        .json(&json!({"settings": {"ad_account": ad_account}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"], "connected", "{patched}");
    patched
}

async fn jobs(app: &TestApp, ws: &str, id: &str) -> Vec<Value> {
    let c = app.client_for(&[ws]);
    let page = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/{ws}/integrations/{id}/jobs")),
    )
    .await;
    page["items"].as_array().unwrap().clone()
}

/// Waits until the integration has `n` jobs, all ended.
async fn settled(app: &TestApp, ws: &str, id: &str, n: usize) -> Vec<Value> {
    app.wait_for_jobs(&app.client_for(&[ws]), ws, id, n).await
}

/// The sandbox's control: Meta sends a signed delivery about `ad_account`.
async fn meta_sends(app: &TestApp, body: Value) -> Value {
    let resp = kpi_tests::client()
        .post(app.url("/sandbox/_control/meta/webhook"))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn the_endpoint_check_echoes_the_challenge_only_for_our_token() {
    let app = TestApp::spawn().await;
    let c = kpi_tests::client();
    let check = |token: &str, mode: &str| {
        app.url(&format!(
            "/v1/webhooks/meta?hub.mode={mode}&hub.challenge=1158201444&hub.verify_token={token}"
        ))
    };
    let ok = c
        .get(check("sandbox-verify-token", "subscribe"))
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    assert!(
        ok.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    assert_eq!(ok.text().await.unwrap(), "1158201444");
    for url in [
        check("wrong-token", "subscribe"),
        check("sandbox-verify-token", "unsubscribe"),
        app.url("/v1/webhooks/meta?hub.mode=subscribe&hub.challenge=1"),
    ] {
        let refused = c.get(&url).send().await.unwrap();
        assert_eq!(refused.status(), 403, "{url}");
        let body = refused.text().await.unwrap();
        assert!(!body.contains("1158201444") && !body.contains("sandbox-verify-token"));
    }
}

#[tokio::test]
async fn a_signed_delivery_syncs_every_integration_of_the_ad_account_once() {
    let app = TestApp::spawn().await;
    let demo = meta_integration(&app, "demo", "act_1000000001").await;
    let other = meta_integration(&app, "other", "act_1000000001").await;
    let elsewhere = meta_integration(&app, "third", "act_1000000002").await;
    assert_eq!(demo["webhooks"]["subscribed"], true, "{demo}");
    assert_eq!(demo["webhooks"]["resource"], "act_1000000001");
    assert!(
        app.sandbox()
            .meta_subscriptions()
            .contains(&"act_1000000001".to_owned())
    );
    let (demo_id, other_id, elsewhere_id) = (
        demo["id"].as_str().unwrap(),
        other["id"].as_str().unwrap(),
        elsewhere["id"].as_str().unwrap(),
    );
    // No job yet: the scheduler's first run is 30 s after start.
    let demo_before = jobs(&app, "demo", demo_id).await.len();
    let other_before = jobs(&app, "other", other_id).await.len();
    let elsewhere_before = jobs(&app, "third", elsewhere_id).await.len();

    // Meta sends a delivery, then retries the same one.
    let sent = meta_sends(&app, json!({"ad_account": "act_1000000001", "times": 2})).await;
    let answers = sent["answers"].as_array().unwrap();
    assert_eq!(answers[0]["status"], 200, "{sent}");
    assert_eq!(
        answers[0]["body"]["jobs"], 2,
        "one job per integration: {sent}"
    );
    assert_eq!(answers[1]["body"]["duplicate"], true, "{sent}");
    assert_eq!(answers[1]["body"]["jobs"], 0);

    let demo_jobs = settled(&app, "demo", demo_id, demo_before + 1).await;
    assert_eq!(demo_jobs.len(), demo_before + 1);
    let newest = &demo_jobs[0];
    assert_eq!(newest["trigger"], "webhook");
    assert_eq!(newest["status"], "succeeded", "{newest}");
    let today = chrono::Utc::now().date_naive();
    assert_eq!(newest["window"]["to"], today.to_string());
    assert_eq!(
        newest["window"]["from"],
        (today - chrono::Duration::days(2)).to_string()
    );
    assert_eq!(
        settled(&app, "other", other_id, other_before + 1)
            .await
            .len(),
        other_before + 1
    );

    // Another event minutes later (a new delivery): coalesced, no new job.
    let again = meta_sends(
        &app,
        json!({"ad_account": "act_1000000001", "field": "in_process_ad_objects"}),
    )
    .await;
    assert_eq!(again["answers"][0]["body"]["duplicate"], false);
    assert_eq!(again["answers"][0]["body"]["jobs"], 0, "{again}");

    // A forged delivery and one about an account nobody uses change nothing.
    let forged = meta_sends(
        &app,
        json!({"ad_account": "act_1000000002", "forged": true}),
    )
    .await;
    assert_eq!(forged["answers"][0]["status"], 401, "{forged}");
    let nobody = meta_sends(&app, json!({"ad_account": "act_1000000009"})).await;
    assert_eq!(nobody["answers"][0]["body"]["jobs"], 0);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        jobs(&app, "third", elsewhere_id).await.len(),
        elsewhere_before
    );
    assert_eq!(jobs(&app, "demo", demo_id).await.len(), demo_before + 1);
}

#[tokio::test]
async fn deliveries_are_checked_before_they_are_read() {
    let app = TestApp::spawn().await;
    let demo = meta_integration(&app, "demo", "act_1000000001").await;
    let id = demo["id"].as_str().unwrap();
    let before = jobs(&app, "demo", id).await.len();
    let c = kpi_tests::client();
    let secret = kpi_sandbox::SandboxConfig::default().meta_app_secret;
    let body = kpi_sandbox::meta_webhook::delivery("1000000001", "creative_fatigue", 1_782_862_117);
    let post = |body: String, signature: Option<String>| {
        let mut req = c
            .post(app.url("/v1/webhooks/meta"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(s) = signature {
            req = req.header("x-hub-signature-256", s);
        }
        req.send()
    };
    // Missing, malformed, forged, or over a tampered body: 401, nothing done.
    let tampered = body.replace("1000000001", "1000000002");
    for (b, sig) in [
        (body.clone(), None),
        (body.clone(), Some("sha256=nothex".to_owned())),
        (
            body.clone(),
            Some(kpi_sandbox::meta_webhook::sign("guess", body.as_bytes())),
        ),
        (
            tampered,
            Some(kpi_sandbox::meta_webhook::sign(&secret, body.as_bytes())),
        ),
    ] {
        let resp = post(b, sig).await.unwrap();
        assert_eq!(resp.status(), 401);
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["code"], "unauthenticated");
        assert!(!problem.to_string().contains(&secret));
    }
    // Signed but not a delivery: refused, nothing done.
    let junk = "{\"object\": [1, 2".to_owned();
    let sig = kpi_sandbox::meta_webhook::sign(&secret, junk.as_bytes());
    assert_eq!(post(junk, Some(sig)).await.unwrap().status(), 422);
    // Too large: refused before anything is read.
    let huge = "x".repeat(200 * 1024);
    let sig = kpi_sandbox::meta_webhook::sign(&secret, huge.as_bytes());
    assert_eq!(post(huge, Some(sig)).await.unwrap().status(), 413);
    // Unknown objects and fields: acknowledged, ignored.
    for other in [
        r#"{"object":"page","entry":[{"id":"1000000001","changes":[{"field":"feed"}]}]}"#,
        r#"{"object":"ad_account","entry":[{"id":"1000000001","changes":[{"field":"brand_new_field"}]}]}"#,
    ] {
        let sig = kpi_sandbox::meta_webhook::sign(&secret, other.as_bytes());
        let resp = post(other.to_owned(), Some(sig)).await.unwrap();
        assert_eq!(resp.status(), 200);
        let receipt: Value = resp.json().await.unwrap();
        assert_eq!(receipt["jobs"], 0);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(jobs(&app, "demo", id).await.len(), before);

    // The real thing, signed with the app secret: one job.
    let sig = kpi_sandbox::meta_webhook::sign(&secret, body.as_bytes());
    let resp = post(body.clone(), Some(sig.clone())).await.unwrap();
    assert_eq!(resp.status(), 200);
    let receipt: Value = resp.json().await.unwrap();
    assert_eq!(
        receipt,
        json!({"received": true, "duplicate": false, "jobs": 1})
    );
    let resp = post(body, Some(sig)).await.unwrap();
    let receipt: Value = resp.json().await.unwrap();
    assert_eq!(receipt["duplicate"], true);
    assert_eq!(
        settled(&app, "demo", id, before + 1).await.len(),
        before + 1
    );
}

#[tokio::test]
async fn a_changed_ad_account_no_longer_hears_the_old_ones_events() {
    let app = TestApp::spawn().await;
    let demo = meta_integration(&app, "demo", "act_1000000001").await;
    let id = demo["id"].as_str().unwrap();
    let before = jobs(&app, "demo", id).await.len();
    let c = app.client_for(&["demo"]);
    let patched: Value = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"ad_account": "act_1000000004"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["webhooks"]["resource"], "act_1000000004");
    let old = meta_sends(&app, json!({"ad_account": "act_1000000001"})).await;
    assert_eq!(old["answers"][0]["body"]["jobs"], 0, "{old}");
    let new = meta_sends(&app, json!({"ad_account": "act_1000000004"})).await;
    assert_eq!(new["answers"][0]["body"]["jobs"], 1, "{new}");
    settled(&app, "demo", id, before + 1).await;
    // Disconnected: events about the account concern it no more.
    let gone = c
        .delete(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success());
    let after = meta_sends(
        &app,
        json!({"ad_account": "act_1000000004", "field": "creative_fatigue"}),
    )
    .await;
    assert_eq!(after["answers"][0]["body"]["jobs"], 0, "{after}");
}

#[tokio::test]
async fn a_meta_connection_shows_its_expiry_and_expires_soon_in_its_last_week() {
    let app = TestApp::spawn().await;
    let demo = meta_integration(&app, "demo", "act_1000000001").await;
    let id = demo["id"].as_str().unwrap();
    let expires: chrono::DateTime<chrono::Utc> = demo["credentials_expire_at"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let days = (expires - chrono::Utc::now()).num_days();
    assert!((58..=60).contains(&days), "a long-lived token: {days} days");
    assert_eq!(demo["expires_soon"], false);

    // Three days left (as if 57 days had passed).
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let store = &app.server.state.store;
    let mut i = store
        .get_integration(&scope, kpi_core::IntegrationId::parse(id).unwrap())
        .await
        .unwrap();
    i.credentials_expire_at = Some(chrono::Utc::now() + chrono::Duration::days(3));
    store.update_integration(&scope, &i).await.unwrap();
    let c = app.client_for(&["demo"]);
    for path in ["", "/status"] {
        let got = kpi_tests::get_json(
            &c,
            app.url(&format!("/v1/workspaces/demo/integrations/{id}{path}")),
        )
        .await;
        assert_eq!(got["expires_soon"], true, "{path}: {got}");
        assert_eq!(got["status"], "connected");
    }
}

/// A queue whose sends never finish: the function stopped half-way through
/// a delivery (a timeout, a crash).
struct StoppedQueue(std::sync::Arc<dyn kpi_core::ports::Queue>);

#[async_trait::async_trait]
impl kpi_core::ports::Queue for StoppedQueue {
    async fn send_batch(
        &self,
        _: kpi_core::ports::QueueName,
        _: Vec<kpi_core::ports::queue::OutgoingMessage>,
    ) -> kpi_core::Result<()> {
        std::future::pending().await
    }
    async fn receive(
        &self,
        queue: kpi_core::ports::QueueName,
        max: u32,
        wait: Duration,
    ) -> kpi_core::Result<Vec<kpi_core::ports::queue::ReceivedMessage>> {
        self.0.receive(queue, max, wait).await
    }
    async fn delete(
        &self,
        queue: kpi_core::ports::QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
    ) -> kpi_core::Result<()> {
        self.0.delete(queue, receipt).await
    }
    async fn change_visibility(
        &self,
        queue: kpi_core::ports::QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
        delay: Duration,
    ) -> kpi_core::Result<()> {
        self.0.change_visibility(queue, receipt, delay).await
    }
    async fn stats(
        &self,
        queue: kpi_core::ports::QueueName,
    ) -> kpi_core::Result<kpi_core::ports::queue::QueueStats> {
        self.0.stats(queue).await
    }
    fn serves(&self, queue: kpi_core::ports::QueueName) -> bool {
        self.0.serves(queue)
    }
    fn holds_since(&self, now: chrono::DateTime<chrono::Utc>) -> chrono::DateTime<chrono::Utc> {
        self.0.holds_since(now)
    }
}

#[tokio::test]
async fn a_delivery_whose_function_stopped_half_way_is_acted_on_when_retried() {
    use kpi_core::ports::provider::WebhookDelivery;
    let app = TestApp::spawn().await;
    let integration = meta_integration(&app, "demo", "act_1000000001").await;
    let id = integration["id"].as_str().unwrap();
    // No job in flight (the first sync may still run): the delivery makes one.
    let started = jobs(&app, "demo", id).await.len();
    settled(&app, "demo", id, started).await;
    let secret = kpi_sandbox::SandboxConfig::default().meta_app_secret;
    let body = kpi_sandbox::meta_webhook::delivery(
        "act_1000000001",
        "with_issues_ad_objects",
        chrono::Utc::now().timestamp(),
    );
    let headers = vec![(
        "x-hub-signature-256".to_owned(),
        kpi_sandbox::meta_webhook::sign(&secret, body.as_bytes()),
    )];
    let delivery = WebhookDelivery {
        headers: &headers,
        body: body.as_bytes(),
        now: chrono::Utc::now(),
    };
    let state = app.server.state.clone();
    let mut stopped = state.clone();
    stopped.queue = std::sync::Arc::new(StoppedQueue(state.queue.clone()));
    let cut = tokio::time::timeout(
        Duration::from_millis(500),
        kpi_app::webhooks::receive(&stopped, kpi_providers::meta::ID, &delivery, None),
    )
    .await;
    assert!(cut.is_err(), "the function was stopped half-way");
    // Meta retries the delivery: it is acted on, not taken for a duplicate.
    let retried = kpi_app::webhooks::receive(&state, kpi_providers::meta::ID, &delivery, None)
        .await
        .unwrap();
    assert!(!retried.duplicate, "{retried:?}");
    // Done now, it is remembered.
    let again = kpi_app::webhooks::receive(&state, kpi_providers::meta::ID, &delivery, None)
        .await
        .unwrap();
    assert!(again.duplicate);
}
