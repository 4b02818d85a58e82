//! Holes found by reading the system as an attacker and as an operator would,
//! each shown closed.

use kpi_tests::app::TestApp;

async fn session_token(app: &TestApp, query: &str) -> String {
    let resp = app
        .browser()
        .get(app.url(&format!("/dev/login?{query}")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303, "{query}");
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("kpi_session="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .expect("a session cookie")
}

#[tokio::test]
async fn the_dev_login_gives_a_normal_user_unless_an_operator_is_asked_for() {
    let app = TestApp::spawn().await;
    let admin = app.url("/v1/admin/queues");
    let user = session_token(&app, "workspace=demo").await;
    let resp = kpi_tests::client()
        .get(&admin)
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "a workspace member is no operator");
    let resp = kpi_tests::client()
        .get(app.url("/v1/workspaces/demo/integrations"))
        .bearer_auth(&user)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let operator = session_token(&app, "workspace=demo&operator=true").await;
    let resp = kpi_tests::client()
        .get(&admin)
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_api_document_validates_and_names_each_operation_once() {
    let app = TestApp::spawn().await;
    let doc: serde_json::Value =
        kpi_tests::get_json(&kpi_tests::client(), app.url("/openapi.json")).await;
    let mut ids = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {path} has no operationId"));
            ids.push(id.to_owned());
        }
    }
    let count = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), count, "operationIds repeat: {ids:?}");
    // The document as a validator reads it (installed by `make deps`).
    let file = std::env::temp_dir().join(format!("kpi-openapi-{}.json", uuid::Uuid::new_v4()));
    std::fs::write(&file, serde_json::to_vec_pretty(&doc).unwrap()).unwrap();
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let out = std::process::Command::new(python)
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .output()
        .expect("python with openapi-spec-validator (make deps)");
    let _ = std::fs::remove_file(&file);
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn set_cookies(resp: &reqwest::Response) -> Vec<String> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn over_https_cookies_carry_the_host_prefix_and_two_sessions_are_refused() {
    let app = TestApp::spawn_with(&[("KPI_PUBLIC_URL", "https://kpi.example.test")]).await;
    let resp = app
        .browser()
        .get(app.url("/dev/login?workspace=demo"))
        .send()
        .await
        .unwrap();
    let cookies = set_cookies(&resp);
    let session = cookies
        .iter()
        .find_map(|c| c.strip_prefix("__Host-kpi_session="))
        .unwrap_or_else(|| panic!("{cookies:?}"));
    assert!(
        session.contains("; Secure") && session.contains("Path=/;"),
        "{session}"
    );
    assert!(
        cookies.iter().any(|c| c.starts_with("__Host-kpi_csrf=")),
        "{cookies:?}"
    );
    let token = session.split(';').next().unwrap().to_owned();
    let url = app.url("/v1/workspaces/demo/integrations");
    let with_cookie = |cookie: String| {
        kpi_tests::client()
            .get(&url)
            .header("cookie", cookie)
            .send()
    };
    assert_eq!(
        with_cookie(format!("__Host-kpi_session={token}"))
            .await
            .unwrap()
            .status(),
        200
    );
    // The unprefixed name, which a sibling host could set, is not ours over https.
    assert_eq!(
        with_cookie(format!("kpi_session={token}"))
            .await
            .unwrap()
            .status(),
        401
    );
    let planted = app.token("attacker", &["demo"], false);
    let two = with_cookie(format!(
        "__Host-kpi_session={planted}; __Host-kpi_session={token}"
    ))
    .await
    .unwrap();
    assert_eq!(two.status(), 401);
    let body: serde_json::Value = two.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("two session cookies"),
        "{body}"
    );
}

#[tokio::test]
async fn the_callback_refuses_a_browser_signed_in_as_another_user() {
    let app = TestApp::spawn().await;
    for (session_user, expected) in [("user-2", 400), ("user-1", 303)] {
        let (state_value, binding) =
            kpi_tests::flows::plant_oauth_state(&app, None, chrono::Duration::minutes(5)).await;
        let session = app.token(session_user, &["demo"], false);
        let resp = kpi_tests::client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap()
            .get(app.url(&format!(
                "/v1/oauth/ga4/callback?state={state_value}&error=access_denied"
            )))
            .header(
                "cookie",
                format!("kpi_oauth_ga4={binding}; kpi_session={session}"),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), expected, "session of {session_user}");
    }
}

/// The dev server with the test provider "Tally" registered, and one
/// connected Tally integration of workspace demo. With `hold`, its syncs wait
/// for `release` from the start (the scheduler may start the first one as soon
/// as the integration exists).
async fn with_tally(
    hold: bool,
) -> (
    TestApp,
    std::sync::Arc<kpi_tests::tally::Tally>,
    reqwest::Client,
    String,
) {
    let tally = std::sync::Arc::new(kpi_tests::tally::Tally::default());
    tally.hold.store(hold, std::sync::atomic::Ordering::SeqCst);
    let app = TestApp::spawn_with_plugins(
        &[],
        vec![kpi_core::registry::Plugin::Ready {
            adapter: tally.clone(),
            sandbox: false,
        }],
    )
    .await;
    let c = app.client_for(&["demo"]);
    let created: serde_json::Value = c
        .post(app.url("/v1/workspaces/demo/integrations"))
        .json(&serde_json::json!({"provider": "tally", "api_key": "tly_key_1"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    (app, tally, c, id)
}

#[tokio::test]
async fn a_second_sync_request_returns_the_job_in_flight() {
    let (app, tally, c, id) = with_tally(true).await;
    let sync = app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync"));
    let first = c.post(&sync).send().await.unwrap();
    assert_eq!(first.status(), 202);
    // The scheduler may have started the integration's first sync already:
    // then this answer is that job.
    let first: serde_json::Value = first.json().await.unwrap();
    tally.entered.notified().await;
    // While the first runs, asking again (with or without a window) gives it back.
    for body in [
        serde_json::json!({}),
        serde_json::json!({"from": "2026-10-01"}),
    ] {
        let again = c.post(&sync).json(&body).send().await.unwrap();
        assert_eq!(again.status(), 202);
        let again: serde_json::Value = again.json().await.unwrap();
        assert_eq!(again["job_id"], first["job_id"]);
        assert_eq!(again["existing"], true);
        assert_eq!(again["status"], "running");
    }
    tally.hold.store(false, std::sync::atomic::Ordering::SeqCst);
    tally.release.notify_one();
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(jobs[0]["status"], "succeeded");
    assert_eq!(jobs.len(), 1, "one job, not three");
    // Every provider call (a first sync backfills in windows) was that job's.
    assert_eq!(jobs[0]["provider_calls"], *tally.sync_calls.lock().unwrap());
    // Once it has ended, a new request makes a new job.
    let next: serde_json::Value = c.post(&sync).send().await.unwrap().json().await.unwrap();
    assert_eq!(next["existing"], false);
    assert_ne!(next["job_id"], first["job_id"]);
}

#[tokio::test]
async fn sync_windows_stay_within_the_providers_history_and_workspaces_are_rate_limited() {
    let (app, _tally, c, id) = with_tally(false).await;
    let sync = app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync"));
    // Tally keeps 120 months; year 1 and 2010 are both older than that.
    for from in ["0001-01-01", "2010-01-01"] {
        let resp = c
            .post(&sync)
            .json(&serde_json::json!({"from": from}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{from}");
        let body: serde_json::Value = resp.json().await.unwrap();
        assert_eq!(body["errors"][0]["field"], "from", "{body}");
        assert!(
            body["detail"].as_str().unwrap().contains("120 months"),
            "{body}"
        );
    }
    // No job in flight (the scheduler may have run the first sync), then use
    // up this hour's manual syncs of the workspace.
    let jobs_url = app.url(&format!("/v1/workspaces/demo/integrations/{id}/jobs"));
    for _ in 0..100 {
        let jobs = kpi_tests::get_json(&c, &jobs_url).await;
        let busy = jobs["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|j| j["status"] == "queued" || j["status"] == "running");
        if !busy {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let store = &app.server.state.store;
    let now = chrono::Utc::now();
    let hour = now.timestamp() / 3600;
    for slot in 0..kpi_app::service::MANUAL_SYNCS_PER_HOUR {
        store
            .first_seen(
                &format!("manual-sync:demo:{hour}:{slot}"),
                now + chrono::Duration::hours(1),
                now,
            )
            .await
            .unwrap();
    }
    let limited = c.post(&sync).send().await.unwrap();
    if chrono::Utc::now().timestamp() / 3600 == hour {
        assert_eq!(limited.status(), 429);
        let wait: u64 = limited.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=3600).contains(&wait), "{wait}");
    }
}

#[tokio::test]
async fn a_page_under_another_name_cannot_reach_the_dev_server() {
    // DNS rebinding: a site's name made to resolve to 127.0.0.1 sends its own
    // name as Host. Such a request gets no dev login and no data.
    let app = TestApp::spawn().await;
    let port = app.base.rsplit(':').next().unwrap().to_owned();
    for host in [
        format!("evil.example:{port}"),
        "evil.example".into(),
        "bad host".into(),
    ] {
        let resp = app
            .browser()
            .get(app.url("/dev/login?workspace=demo&operator=true"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 421, "{host}");
        assert!(resp.headers().get("set-cookie").is_none(), "{host}");
        assert!(resp.text().await.unwrap().contains("KPI_PUBLIC_URL"));
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let resp = app
            .browser()
            .get(app.url("/dev/login?workspace=demo"))
            .header("host", &host)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 303, "{host}");
    }
    // The public URL's name is this server's too.
    let named = TestApp::spawn_with(&[("KPI_PUBLIC_URL", "http://kpi.dev.test:3000")]).await;
    let resp = named
        .browser()
        .get(named.url("/healthz"))
        .header("host", "kpi.dev.test:3000")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn cross_origin_calls_only_from_the_listed_origins_and_never_with_credentials() {
    let app = TestApp::spawn_with(&[(
        "KPI_CORS_ORIGINS",
        "https://dash.example.com,http://localhost:5173",
    )])
    .await;
    let client = kpi_tests::client();
    let path = app.url("/v1/workspaces/demo/integrations");
    let cors_headers = |r: &reqwest::Response| -> Vec<String> {
        r.headers()
            .keys()
            .map(|k| k.as_str().to_owned())
            .filter(|k| k.starts_with("access-control-"))
            .collect()
    };

    // The dashboard's preflight: answered, bearer and JSON allowed, no credentials.
    let pre = client
        .request(reqwest::Method::OPTIONS, &path)
        .header("origin", "https://dash.example.com")
        .header("access-control-request-method", "POST")
        .header(
            "access-control-request-headers",
            "authorization, content-type",
        )
        .send()
        .await
        .unwrap();
    assert!(pre.status().is_success(), "{}", pre.status());
    let h = pre.headers();
    assert_eq!(h["access-control-allow-origin"], "https://dash.example.com");
    let allowed = h["access-control-allow-headers"]
        .to_str()
        .unwrap()
        .to_lowercase();
    assert!(
        allowed.contains("authorization") && allowed.contains("content-type"),
        "{allowed}"
    );
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST")
    );
    assert!(h.get("access-control-allow-credentials").is_none());

    // The call itself, with a bearer token.
    let token = app.token("u1", &["demo"], false);
    let get = client
        .get(&path)
        .header("origin", "http://localhost:5173")
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert_eq!(
        get.headers()["access-control-allow-origin"],
        "http://localhost:5173"
    );
    assert!(
        get.headers()
            .get("access-control-allow-credentials")
            .is_none()
    );
    assert!(
        get.headers()["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("x-request-id")
    );

    // Any other origin, or a path outside /v1's API, gets no CORS header.
    for origin in [
        "https://evil.example",
        "https://dash.example.com.evil.example",
        "null",
    ] {
        let pre = client
            .request(reqwest::Method::OPTIONS, &path)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert!(
            cors_headers(&pre).is_empty(),
            "{origin}: {:?}",
            cors_headers(&pre)
        );
        let get = client
            .get(&path)
            .header("origin", origin)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert!(
            cors_headers(&get).is_empty(),
            "{origin}: {:?}",
            cors_headers(&get)
        );
    }
    for other in [
        "/healthz",
        "/settings/integrations?workspace=demo",
        "/v1/webhooks/meta",
    ] {
        let r = client
            .get(app.url(other))
            .header("origin", "https://dash.example.com")
            .send()
            .await
            .unwrap();
        assert!(
            cors_headers(&r).is_empty(),
            "{other}: {:?}",
            cors_headers(&r)
        );
    }
    // Without KPI_CORS_ORIGINS nobody is allowed.
    let closed = TestApp::spawn().await;
    let r = client
        .get(closed.url("/v1/providers"))
        .header("origin", "https://dash.example.com")
        .send()
        .await
        .unwrap();
    assert!(cors_headers(&r).is_empty());
}

#[tokio::test]
async fn a_ga4_backfill_reaches_past_the_data_retention_setting() {
    // GA4's retention (2 or 14 months) limits explorations, not the Data
    // API's reports: a backfill two years back is accepted.
    let app = TestApp::spawn().await;
    let id = app.connect_ga4("demo").await;
    let c = app.client_for(&["demo"]);
    let patched = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&serde_json::json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    let today = chrono::Utc::now().date_naive();
    let (from, to) = (
        today - chrono::Duration::days(730),
        today - chrono::Duration::days(400),
    );
    let jobs_url = app.url(&format!("/v1/workspaces/demo/integrations/{id}/jobs"));
    // The first sync the property's choice started may still be in flight.
    let mut answer = serde_json::Value::Null;
    for _ in 0..100 {
        let resp = c
            .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
            .json(&serde_json::json!({"from": from.to_string(), "to": to.to_string()}))
            .send()
            .await
            .unwrap();
        let status = resp.status();
        answer = resp.json().await.unwrap();
        assert_eq!(status, 202, "{answer}");
        if answer["existing"] == false {
            break;
        }
        kpi_tests::get_json(&c, &jobs_url).await;
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(answer["existing"], false, "{answer}");
}
