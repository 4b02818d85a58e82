//! The pages over plain HTTP: who may see what, bad input of every kind,
//! escaping, the headers and assets. (Behaviour in a browser: `ui.rs`.)

use kpi_tests::app::TestApp;
use reqwest::header::{CONTENT_TYPE, COOKIE, SET_COOKIE};
use serde_json::json;

const WS: &str = "demo";

/// A cookie-only client signed in with a token for `workspaces`.
fn session(app: &TestApp, workspaces: &[&str], admin: bool) -> reqwest::Client {
    let token = app.token("page-user", workspaces, admin);
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(
        COOKIE,
        format!("kpi_session={token}; kpi_csrf=0123456789abcdef0123456789abcdef")
            .parse()
            .unwrap(),
    );
    kpi_tests::client_builder()
        .default_headers(headers)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

async fn get(c: &reqwest::Client, app: &TestApp, path: &str) -> (u16, String) {
    let resp = c.get(app.url(path)).send().await.unwrap();
    let status = resp.status().as_u16();
    assert!(
        resp.headers()
            .get("content-security-policy")
            .is_some_and(|v| v.to_str().unwrap().contains("script-src 'self'")),
        "{path}: CSP"
    );
    (status, resp.text().await.unwrap())
}

#[tokio::test]
async fn without_a_session_pages_ask_to_sign_in() {
    let app = TestApp::spawn().await;
    let c = kpi_tests::client();
    for path in [
        "/settings/integrations?workspace=demo",
        "/settings/alerts?workspace=demo",
        "/settings/reports?workspace=demo",
        "/admin/sync-jobs",
    ] {
        let (status, html) = get(&c, &app, path).await;
        assert_eq!(status, 401, "{path}");
        assert!(html.contains("Sign in first"), "{path}");
    }
    // A bearer token is for scripts, not pages; a forged cookie is no session.
    let resp = c
        .get(app.url("/settings/integrations?workspace=demo"))
        .header(COOKIE, "kpi_session=eyJhbGciOiJIUzI1NiJ9.e30.forged")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn another_workspace_or_a_malformed_one_is_not_found() {
    let app = TestApp::spawn().await;
    let c = session(&app, &[WS], false);
    for path in [
        "/settings/integrations?workspace=other",
        "/settings/integrations?workspace=%3Cscript%3E",
        "/settings/alerts?workspace=other",
        "/settings/reports?workspace=..%2F..",
        "/admin/sync-jobs",
        "/admin/sync-jobs/01a222bc-1ea7-724b-a151-8c77f4b214f2",
        "/assets/..%2FCargo.toml",
        "/assets/nothing.js",
    ] {
        let (status, html) = get(&c, &app, path).await;
        assert_eq!(status, 404, "{path}");
        assert!(!html.contains("<script>"), "{path}");
    }
    // The operators' pages: a malformed or unknown job is the same 404.
    let admin = session(&app, &[WS], true);
    for path in [
        "/admin/sync-jobs/not-a-job",
        "/admin/sync-jobs/01a222bc-1ea7-724b-a151-8c77f4b214f2",
    ] {
        assert_eq!(get(&admin, &app, path).await.0, 404, "{path}");
    }
}

#[tokio::test]
async fn a_page_without_a_workspace_opens_the_only_one_or_lists_them() {
    let app = TestApp::spawn().await;
    let (status, html) = get(&session(&app, &[WS], false), &app, "/settings/integrations").await;
    assert_eq!(status, 200);
    assert!(html.contains("Workspace <strong>demo</strong>"));
    let (status, html) = get(
        &session(&app, &["alpha", "beta"], false),
        &app,
        "/settings/alerts",
    )
    .await;
    assert_eq!(status, 200);
    assert!(html.contains("Choose a workspace"));
    assert!(
        html.contains(r#"href="/settings/alerts?workspace=alpha""#),
        "{html}"
    );
    assert!(html.contains(r#"href="/settings/alerts?workspace=beta""#));
}

#[tokio::test]
async fn what_users_typed_is_escaped_everywhere() {
    let app = TestApp::spawn().await;
    let id = app.connect_ga4(WS).await;
    let api = app.client_for(&[WS]);
    let evil = "<script>alert(1)</script>\"'><img src=x onerror=alert(2)>";
    let resp = api
        .patch(app.url(&format!("/v1/workspaces/{WS}/integrations/{id}")))
        .json(&json!({"display_name": evil}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "{:?}", resp.text().await);
    let resp = api
        .post(app.url(&format!("/v1/workspaces/{WS}/alerts")))
        .json(&json!({"name": evil, "metric": "ga4.sessions",
            "condition": {"kind": "threshold", "comparison": "below", "threshold": "1"},
            "recipients": ["a@example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let c = session(&app, &[WS], false);
    for path in [
        format!("/settings/integrations?workspace={WS}"),
        format!("/settings/alerts?workspace={WS}"),
        // Query values come back only as words we chose.
        format!("/settings/integrations?workspace={WS}&oauth_error=%3Cb%3E&provider=%3Cscript%3E"),
        format!("/settings/integrations?workspace={WS}&connected=%22%3E%3Cscript%3E"),
    ] {
        let (status, html) = get(&c, &app, &path).await;
        assert_eq!(status, 200, "{path}");
        assert!(!html.contains("<script>alert"), "{path}");
        assert!(!html.contains("<img src=x"), "{path}");
        assert!(!html.contains("<b>"), "{path}");
        assert!(
            !html.contains("<script>"),
            "{path}: no inline script at all"
        );
    }
    let (_, html) = get(&c, &app, &format!("/settings/alerts?workspace={WS}")).await;
    assert!(
        html.contains("&lt;script&gt;alert(1)&lt;&#x2f;script&gt;"),
        "escaped, shown"
    );
}

#[tokio::test]
async fn the_oauth_return_becomes_a_toast_in_words() {
    let app = TestApp::spawn().await;
    let c = session(&app, &[WS], false);
    for (kind, words) in [
        ("access_denied", "You declined access at Meta Ads"),
        ("scope_missing", "without every permission"),
        ("provider_error", "reported a problem"),
        ("invalid_response", "an answer we could not use"),
        ("exchange_failed", "could not finish connecting"),
        ("something_new", "did not finish"),
    ] {
        let (_, html) = get(
            &c,
            &app,
            &format!("/settings/integrations?workspace={WS}&oauth_error={kind}&provider=meta_ads"),
        )
        .await;
        assert!(html.contains(words), "{kind}");
        assert!(html.contains(r#"data-toast="bad""#), "{kind}");
    }
}

#[tokio::test]
async fn a_page_gives_the_script_a_csrf_token_and_sets_its_cookie_when_missing() {
    let app = TestApp::spawn().await;
    let token = app.token("page-user", &[WS], false);
    let resp = kpi_tests::client()
        .get(app.url("/settings/integrations?workspace=demo"))
        .header(COOKIE, format!("kpi_session={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let set = resp
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .find(|v| v.starts_with("kpi_csrf="))
        .expect("a CSRF cookie");
    let value = set
        .trim_start_matches("kpi_csrf=")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    assert!(set.contains("SameSite=Strict"));
    let html = resp.text().await.unwrap();
    assert!(html.contains(&format!(r#"<meta name="csrf-token" content="{value}">"#)));

    // With one, the page uses it and sets none.
    let resp = session(&app, &[WS], false)
        .get(app.url("/settings/integrations?workspace=demo"))
        .send()
        .await
        .unwrap();
    assert!(resp.headers().get(SET_COOKIE).is_none());
    assert!(
        resp.text()
            .await
            .unwrap()
            .contains(r#"content="0123456789abcdef0123456789abcdef""#)
    );
}

#[tokio::test]
async fn the_dashboard_takes_bad_filters_without_failing() {
    let app = TestApp::spawn().await;
    let c = session(&app, &[WS], true);
    for query in [
        "status=exploded",
        "provider=nope",
        "workspace=%3Cx%3E",
        "since=forever",
        "cursor=not-a-cursor",
        "status=dead&provider=ga4&workspace=demo&since=all",
    ] {
        let (status, html) = get(&c, &app, &format!("/admin/sync-jobs?{query}")).await;
        assert_eq!(status, 200, "{query}");
        assert!(html.contains("Sync jobs"), "{query}");
        assert!(!html.contains("<x>"), "{query}");
    }
}

#[tokio::test]
async fn assets_are_served_with_their_types() {
    let app = TestApp::spawn().await;
    let c = kpi_tests::client();
    for (path, kind) in [
        ("/assets/app.js", "text/javascript"),
        ("/assets/app.css", "text/css"),
        ("/assets/icon.svg", "image/svg+xml"),
        ("/favicon.ico", "image/svg+xml"),
    ] {
        let resp = c.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{path}");
        assert!(
            resp.headers()[CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with(kind),
            "{path}"
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
    }
}
