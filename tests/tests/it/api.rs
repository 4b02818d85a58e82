//! The HTTP API end to end: real router, embedded backends, sandbox providers.

use kpi_core::ports::CredentialContext;
use kpi_core::ports::queue::QueueName;
use kpi_core::{WorkspaceId, WorkspaceScope};
use kpi_sandbox::Faults;
use kpi_tests::app::TestApp;
use serde_json::{Value, json};

async fn problem(resp: reqwest::Response, status: u16) -> Value {
    assert_eq!(resp.status().as_u16(), status);
    assert_eq!(
        resp.headers()["content-type"].to_str().unwrap(),
        "application/problem+json"
    );
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["status"], status);
    body
}

async fn create_resend(app: &TestApp, client: &reqwest::Client, ws: &str) -> Value {
    let resp = client
        .post(app.url(&format!("/v1/workspaces/{ws}/integrations")))
        .json(
            &json!({"provider": "resend", "api_key": "re_live_123456789", "display_name": "Mail"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        location,
        format!(
            "/v1/workspaces/{ws}/integrations/{}",
            body["id"].as_str().unwrap()
        )
    );
    body
}

#[tokio::test]
async fn no_token_or_a_bad_one_is_401() {
    let app = TestApp::spawn().await;
    let anonymous = kpi_tests::client();
    let url = app.url("/v1/workspaces/demo/integrations");
    problem(anonymous.get(&url).send().await.unwrap(), 401).await;
    for bad in ["Bearer garbage", "Bearer ", "Basic dXNlcjpwYXNz"] {
        problem(
            anonymous
                .get(&url)
                .header("authorization", bad)
                .send()
                .await
                .unwrap(),
            401,
        )
        .await;
    }
    // Signed with another secret: a forgery.
    let forged = kpi_app::auth::sign_dev_token(
        &secrecy::SecretString::from("not-the-secret".to_owned()),
        "attacker",
        &[WorkspaceId::parse("demo").unwrap()],
        true,
        std::time::Duration::from_secs(60),
    )
    .unwrap();
    problem(
        anonymous
            .get(&url)
            .bearer_auth(forged)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    // Public routes stay public.
    assert_eq!(
        anonymous
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn another_workspaces_ids_are_404() {
    let app = TestApp::spawn().await;
    let alice = app.client_for(&["ws-a"]);
    let bob = app.client_for(&["ws-b"]);
    let created = create_resend(&app, &alice, "ws-a").await;
    let id = created["id"].as_str().unwrap();

    problem(
        bob.get(app.url("/v1/workspaces/ws-a/integrations"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    for path in [
        format!("/v1/workspaces/ws-b/integrations/{id}"),
        format!("/v1/workspaces/ws-a/integrations/{id}"),
        format!("/v1/workspaces/ws-b/integrations/{id}/status"),
        format!("/v1/workspaces/ws-b/integrations/{id}/jobs"),
    ] {
        problem(bob.get(app.url(&path)).send().await.unwrap(), 404).await;
    }
    problem(
        bob.delete(app.url(&format!("/v1/workspaces/ws-a/integrations/{id}")))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    // Bob deleting "his" copy of the id changes nothing of Alice's.
    let resp = bob
        .delete(app.url(&format!("/v1/workspaces/ws-b/integrations/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let still: Value = kpi_tests::get_json(
        &alice,
        app.url(&format!("/v1/workspaces/ws-a/integrations/{id}")),
    )
    .await;
    assert_eq!(still["status"], "connected");
    // Malformed ids read as not found too.
    problem(
        alice
            .get(app.url("/v1/workspaces/bad%23id/integrations"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
    problem(
        alice
            .get(app.url("/v1/workspaces/ws-a/integrations/123"))
            .send()
            .await
            .unwrap(),
        404,
    )
    .await;
}

#[tokio::test]
async fn bad_bodies_get_clear_errors_and_change_nothing() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let url = app.url("/v1/workspaces/demo/integrations");
    let send = |body: &'static str, ctype: &'static str| {
        c.post(&url).header("content-type", ctype).body(body).send()
    };
    let p = problem(
        send("{\"provider\": ", "application/json").await.unwrap(),
        400,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("not valid JSON"));
    let p = problem(
        send("{\"provider\": 42, \"api_key\": \"x\"}", "application/json")
            .await
            .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "provider");
    let p = problem(
        send(
            "{\"provider\": \"resend\", \"api_key\": \"re_live_123456789\", \"admin\": true}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    assert!(p["detail"].as_str().unwrap().contains("admin"), "{p}");
    let p = problem(
        send(
            "{\"provider\": \"hubspot\", \"api_key\": \"k\"}",
            "application/json",
        )
        .await
        .unwrap(),
        422,
    )
    .await;
    assert_eq!(p["errors"][0]["field"], "provider");
    problem(
        send("provider=resend", "application/x-www-form-urlencoded")
            .await
            .unwrap(),
        415,
    )
    .await;
    let huge = format!(
        "{{\"provider\":\"resend\",\"api_key\":\"{}\"}}",
        "a".repeat(100_000)
    );
    let resp = c
        .post(&url)
        .header("content-type", "application/json")
        .body(huge)
        .send()
        .await
        .unwrap();
    problem(resp, 413).await;
    // OAuth providers cannot be created with a key.
    let resp = c
        .post(&url)
        .json(&json!({"provider": "ga4", "api_key": "x"}))
        .send()
        .await
        .unwrap();
    let p = problem(resp, 422).await;
    assert!(
        p["detail"]
            .as_str()
            .unwrap()
            .contains("/v1/oauth/ga4/start")
    );
    // A key Resend refuses: 422 with a message for people, and nothing stored.
    let resp = c
        .post(&url)
        .json(&json!({"provider": "resend", "api_key": "re_x"}))
        .send()
        .await
        .unwrap();
    let p = problem(resp, 422).await;
    assert_eq!(p["errors"][0]["field"], "api_key");
    assert!(!p.to_string().contains("re_x\""));
    // Wrong query types.
    problem(
        c.get(format!("{url}?limit=lots")).send().await.unwrap(),
        422,
    )
    .await;
    problem(
        c.get(format!("{url}?cursor=%21%21")).send().await.unwrap(),
        422,
    )
    .await;
    let listed: Value = kpi_tests::get_json(&c, &url).await;
    assert_eq!(
        listed["items"].as_array().unwrap().len(),
        0,
        "nothing was stored"
    );
}

#[tokio::test]
async fn resend_crud_options_health_status_and_idempotent_delete() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let created = create_resend(&app, &c, "demo").await;
    assert!(
        !created.to_string().contains("re_live_123456789"),
        "the key is never shown"
    );
    assert_eq!(created["status"], "connected");
    assert_eq!(created["has_credentials"], true);
    let id = created["id"].as_str().unwrap();
    let item = |suffix: &str| app.url(&format!("/v1/workspaces/demo/integrations/{id}{suffix}"));

    let options: Value = kpi_tests::get_json(&c, item("/options")).await;
    assert_eq!(options["setting"], "domain");
    assert_eq!(options["options"][0]["id"], "sandbox.example.com");
    let health: Value = kpi_tests::get_json(&c, item("/health")).await;
    assert_eq!(health["state"], "healthy");
    app.sandbox().set_faults(Faults {
        resend: Some(500),
        ..Faults::default()
    });
    let health: Value = kpi_tests::get_json(&c, item("/health")).await;
    assert_eq!(health["state"], "unavailable");
    app.sandbox().set_faults(Faults::default());

    let patched: Value = c
        .patch(item(""))
        .json(&json!({"display_name": "Newsletters", "sync_interval_minutes": 60, "settings": {"domain": "sandbox.example.com"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["display_name"], "Newsletters");
    assert_eq!(patched["sync_interval_minutes"], 60);
    for bad in [
        json!({"sync_interval_minutes": 1}),
        json!({"settings": {"property": "properties/1"}}),
        json!({"settings": {"domain": 5}}),
        json!({"display_name": ""}),
        json!({"colour": "red"}),
    ] {
        problem(c.patch(item("")).json(&bad).send().await.unwrap(), 422).await;
    }
    let paused: Value = c
        .patch(item(""))
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["status"], "paused");
    let status: Value = kpi_tests::get_json(&c, item("/status")).await;
    assert_eq!(status["status"], "paused");
    let resumed: Value = c
        .patch(item(""))
        .json(&json!({"paused": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(resumed["status"], "connected");

    let gone: Value = c
        .delete(item(""))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(gone["status"], "disconnected");
    assert_eq!(
        gone["provider_access"], "nothing_to_revoke",
        "Resend keys are the user's to delete in Resend"
    );
    let again = c.delete(item("")).send().await.unwrap();
    assert_eq!(again.status(), 200, "idempotent");
    let gone: Value = kpi_tests::get_json(&c, item("")).await;
    assert_eq!(gone["status"], "disconnected");
    assert_eq!(gone["has_credentials"], false);
    problem(
        c.patch(item(""))
            .json(&json!({"display_name": "x"}))
            .send()
            .await
            .unwrap(),
        409,
    )
    .await;
    let random = uuid::Uuid::new_v4();
    let resp = c
        .delete(app.url(&format!("/v1/workspaces/demo/integrations/{random}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "deleting what does not exist is fine");
}

#[tokio::test]
async fn manual_sync_enqueues_a_job() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let id = create_resend(&app, &c, "demo").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let sync_url = app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync"));
    let resp = c.post(&sync_url).send().await.unwrap();
    assert_eq!(resp.status(), 202);
    assert!(
        resp.headers()["location"]
            .to_str()
            .unwrap()
            .ends_with("/jobs")
    );
    let accepted: Value = resp.json().await.unwrap();
    assert_eq!(accepted["status"], "queued");
    // One job at a time per integration: the backfill is asked for once the
    // first job has ended.
    assert_eq!(
        app.wait_for_job(&c, "demo", &id).await["status"],
        "succeeded"
    );

    let resp = c
        .post(&sync_url)
        .json(&json!({"from": "2026-01-01", "to": "2026-01-31"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let backfill: Value = resp.json().await.unwrap();
    assert_eq!(backfill["existing"], false);
    let jobs: Value = kpi_tests::get_json(
        &c,
        app.url(&format!(
            "/v1/workspaces/demo/integrations/{id}/jobs?limit=1"
        )),
    )
    .await;
    assert_eq!(jobs["items"].as_array().unwrap().len(), 1);
    assert_eq!(jobs["items"][0]["trigger"], "backfill", "newest first");
    assert!(jobs["next_cursor"].is_string());
    // Both jobs went through the queue to the dev server's worker.
    let mut finished = 0;
    for _ in 0..100 {
        let all: Value = kpi_tests::get_json(
            &c,
            app.url(&format!("/v1/workspaces/demo/integrations/{id}/jobs")),
        )
        .await;
        finished = all["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|j| j["status"] == "succeeded")
            .count();
        if finished == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(finished, 2, "one message per job, each handled");
    // The worker deletes each message right after finishing its job.
    let mut stats = Default::default();
    for _ in 0..50 {
        stats = app
            .server
            .state
            .queue
            .stats(QueueName::Work(kpi_providers::resend::ID))
            .await
            .unwrap();
        if stats == Default::default() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(stats, Default::default(), "nothing left in the queue");

    problem(
        c.post(&sync_url)
            .json(&json!({"from": "2026-02-01", "to": "2026-01-01"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        c.post(&sync_url)
            .json(&json!({"from": "2020-01-01", "to": "2026-01-01"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    problem(
        c.post(&sync_url)
            .json(&json!({"from": "yesterday"}))
            .send()
            .await
            .unwrap(),
        422,
    )
    .await;
    c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"paused": true}))
        .send()
        .await
        .unwrap();
    problem(c.post(&sync_url).send().await.unwrap(), 409).await;
}

#[tokio::test]
async fn kpis_are_read_by_metric_and_range() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let id = create_resend(&app, &c, "demo").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let scope = WorkspaceScope::for_system(WorkspaceId::parse("demo").unwrap(), "test setup");
    let integration = kpi_core::IntegrationId::parse(&id).unwrap();
    let points: Vec<_> = (1..=3)
        .map(|d| {
            kpi_core::KpiPoint::new(
                WorkspaceId::parse("demo").unwrap(),
                integration,
                kpi_providers::resend::METRICS[4],
                chrono::NaiveDate::from_ymd_opt(2026, 5, d).unwrap(),
                format!("0.9{d}").parse().unwrap(),
                None,
            )
            .unwrap()
        })
        .collect();
    app.server
        .state
        .store
        .upsert_kpis(&scope, &points)
        .await
        .unwrap();
    let series: Value = kpi_tests::get_json(
        &c,
        app.url(
            "/v1/workspaces/demo/kpis?metric=resend.delivery_rate&from=2026-05-02&to=2026-05-31",
        ),
    )
    .await;
    assert_eq!(series["unit"], "ratio");
    let values: Vec<_> = series["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["value"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(values, ["0.92", "0.93"]);
    for bad in [
        "metric=ga4.conversions&from=2026-05-01&to=2026-05-02",
        "metric=ga4.sessions&from=2026-05-03&to=2026-05-02",
        "metric=ga4.sessions&from=2026-05-01",
        "metric=ga4.sessions&from=05/01/2026&to=2026-05-02",
        "metric=ga4.sessions&from=2020-01-01&to=2026-05-02",
    ] {
        problem(
            c.get(app.url(&format!("/v1/workspaces/demo/kpis?{bad}")))
                .send()
                .await
                .unwrap(),
            422,
        )
        .await;
    }
    let other = app.client_for(&["elsewhere"]);
    problem(other.get(app.url("/v1/workspaces/demo/kpis?metric=resend.delivery_rate&from=2026-05-01&to=2026-05-31")).send().await.unwrap(), 404).await;
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_token_for_writes() {
    let app = TestApp::spawn().await;
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, "demo").await;
    let url = app.url("/v1/workspaces/demo/integrations");
    assert_eq!(
        browser.get(&url).send().await.unwrap().status(),
        200,
        "reads need no token"
    );
    let body = json!({"provider": "resend", "api_key": "re_live_123456789"});
    problem(browser.post(&url).json(&body).send().await.unwrap(), 401).await;
    problem(
        browser
            .post(&url)
            .header("x-csrf-token", "guess")
            .json(&body)
            .send()
            .await
            .unwrap(),
        401,
    )
    .await;
    let csrf = {
        let jar_url = reqwest::Url::parse(&app.base).unwrap();
        // The CSRF cookie is readable by the page; read it back as the page would.
        let resp = browser
            .get(app.url("/dev/login?workspace=demo"))
            .send()
            .await
            .unwrap();
        resp.headers()
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .find_map(|v| v.strip_prefix("kpi_csrf="))
            .map(|v| v.split(';').next().unwrap().to_owned())
            .unwrap_or_else(|| panic!("no csrf cookie for {jar_url}"))
    };
    let resp = browser
        .post(&url)
        .header("x-csrf-token", csrf)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn the_api_document_is_openapi_3_1() {
    let app = TestApp::spawn().await;
    let doc: Value = kpi_tests::client()
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    for path in [
        "/v1/workspaces/{ws}/integrations",
        "/v1/workspaces/{ws}/integrations/{id}/sync",
        "/v1/workspaces/{ws}/kpis",
        "/v1/oauth/{provider}/callback",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}

#[tokio::test]
async fn stored_credentials_are_sealed_for_their_integration() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    let id = create_resend(&app, &c, "demo").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let scope = WorkspaceScope::for_system(WorkspaceId::parse("demo").unwrap(), "test");
    let stored = app
        .server
        .state
        .store
        .get_integration(&scope, kpi_core::IntegrationId::parse(&id).unwrap())
        .await
        .unwrap();
    let sealed = stored.credentials.clone().unwrap();
    assert!(!sealed.as_encoded().contains("re_live"));
    let opened = app
        .server
        .state
        .vault
        .open(&CredentialContext::of(&stored), &sealed)
        .await
        .unwrap();
    assert!(matches!(
        opened,
        kpi_core::ConnectionCredentials::ApiKey { .. }
    ));
}
