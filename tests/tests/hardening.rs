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
    use kpi_core::ports::store::OAuthState;
    use kpi_core::{Provider, WorkspaceId, WorkspaceScope};
    let app = TestApp::spawn().await;
    let scope = WorkspaceScope::for_system(WorkspaceId::parse("demo").unwrap(), "test setup");
    for (session_user, expected) in [("user-2", 400), ("user-1", 303)] {
        let state_value = format!("state-{}", uuid::Uuid::new_v4());
        let binding = format!("binding-{}", uuid::Uuid::new_v4());
        app.server
            .state
            .store
            .put_oauth_state(
                &scope,
                &OAuthState {
                    key: kpi_providers::oauth::sha256_b64(&state_value),
                    workspace: WorkspaceId::parse("demo").unwrap(),
                    user: "user-1".into(),
                    provider: Provider::GA4,
                    integration: None,
                    browser_binding: kpi_providers::oauth::sha256_b64(&binding),
                    pkce_verifier: Some("v".repeat(43)),
                    return_to: None,
                    expires_at: chrono::Utc::now() + chrono::Duration::minutes(5),
                },
            )
            .await
            .unwrap();
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
