//! Every sample event in `events/` fed in process to its function, wired by
//! the same `kpi_lambda` functions the deployed `main.rs` files call, the way
//! the Lambda runtime hands requests to `lambda_http::run`.

use kpi_app::http;
use kpi_tests::app::TestApp;
use tower::ServiceExt as _;

fn router_for(function: &str, app: &TestApp) -> axum::Router {
    let state = app.server.state.clone();
    match function {
        "api" => kpi_lambda::http_app(http::api_function(), state),
        "oauth" => kpi_lambda::http_app(http::oauth_function(), state),
        "webhook" => kpi_lambda::http_app(http::webhook_function(), state),
        "ui" => kpi_lambda::http_app(kpi_ui::ui_function(), state),
        other => panic!("no function {other}"),
    }
}

#[tokio::test]
async fn every_sample_event_is_served_by_its_function() {
    let app = TestApp::spawn().await;
    let token = app.token("user-1", &["demo"], false);
    let cases = [
        ("api-healthz.json", "api", 200),
        ("api-list-integrations.json", "api", 200),
        ("api-create-integration.json", "api", 201),
        ("api-kpis.json", "api", 200),
        ("oauth-start.json", "oauth", 303),
        ("ui-settings-signed-out.json", "ui", 401),
        ("oauth-callback-replayed.json", "oauth", 400),
        ("meta-webhook-check.json", "webhook", 200),
        ("meta-webhook-delivery.json", "webhook", 200),
        ("meta-webhook-forged.json", "webhook", 401),
        ("resend-webhook-stale.json", "webhook", 401),
    ];
    let other_functions = [
        "sync-scheduler-tick.json",
        "sync-dlq-batch.json",
        "sync-ga4-batch.json",
        "sync-meta-batch.json",
        "sync-resend-batch.json",
    ];
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            seen += 1;
            assert!(
                cases.iter().any(|(f, _, _)| *f == name)
                    || other_functions.contains(&name.as_str()),
                "{name} has no expectation here"
            );
        }
    }
    assert_eq!(seen, cases.len() + other_functions.len());
    for (file, function, expected) in cases {
        let raw = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .replace("REPLACE_WITH_DEV_TOKEN", &token);
        let request =
            lambda_http::request::from_str(&raw).unwrap_or_else(|e| panic!("{file}: {e}"));
        let response = router_for(function, &app).oneshot(request).await.unwrap();
        assert_eq!(response.status().as_u16(), expected, "{file}");
        // API Gateway's request id is the request's id.
        let event: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let gateway_id = event["requestContext"]["requestId"].as_str().unwrap();
        assert_eq!(
            response.headers()["x-request-id"].to_str().unwrap(),
            gateway_id,
            "{file}"
        );
    }
}

#[tokio::test]
async fn the_dlq_sample_batch_is_consumed_by_the_dlq_handler() {
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sync-dlq-batch.json")).unwrap())
            .unwrap();
    let handler = kpi_lambda::dlq_handler(&app.server.state);
    let response = kpi_lambda::dlq_batch(&handler, event).await;
    // An unknown job and an unreadable body: nothing to retry, both consumed.
    assert!(response.batch_item_failures.is_empty());
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sync-scheduler-tick.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tick["detail-type"], "Scheduled Event");
}

#[tokio::test]
async fn the_worker_sample_batches_are_handled_by_their_workers() {
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let state = &app.server.state;
    for (file, provider) in [
        ("sync-ga4-batch.json", kpi_providers::ga4::ID),
        ("sync-meta-batch.json", kpi_providers::meta::ID),
        ("sync-resend-batch.json", kpi_providers::resend::ID),
    ] {
        let event: aws_lambda_events::sqs::SqsEvent =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        let worker = kpi_lambda::worker(state, provider).unwrap();
        let deadline = std::time::SystemTime::now() + std::time::Duration::from_secs(300);
        let response =
            kpi_lambda::worker_batch(&worker, &*state.queue, provider, event, Some(deadline)).await;
        assert!(response.batch_item_failures.is_empty(), "{file}");
    }
    // One worker binary: each batch names its queue, and the configured
    // queue URLs name the provider.
    let urls: std::collections::HashMap<_, _> = [
        (kpi_providers::ga4::ID, "kpi-prod-ga4"),
        (kpi_providers::meta::ID, "kpi-prod-meta-ads"),
        (kpi_providers::resend::ID, "kpi-prod-resend"),
    ]
    .into_iter()
    .map(|(p, q)| {
        (
            p,
            format!("https://sqs.eu-west-1.amazonaws.com/123456789012/{q}"),
        )
    })
    .collect();
    let read = |file: &str| -> aws_lambda_events::sqs::SqsEvent {
        serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap()
    };
    for (file, provider) in [
        ("sync-ga4-batch.json", kpi_providers::ga4::ID),
        ("sync-meta-batch.json", kpi_providers::meta::ID),
        ("sync-resend-batch.json", kpi_providers::resend::ID),
    ] {
        assert_eq!(
            kpi_lambda::provider_of(&urls, &read(file)).unwrap(),
            provider,
            "{file}"
        );
    }
    // A dead-letter queue (or any queue no provider names) is refused, and
    // so is a batch mixing queues.
    assert!(
        kpi_lambda::provider_of(&urls, &read("sync-dlq-batch.json"))
            .unwrap_err()
            .is_config()
    );
    let mut mixed = read("sync-ga4-batch.json");
    mixed.records.extend(read("sync-meta-batch.json").records);
    assert!(
        kpi_lambda::provider_of(&urls, &mixed)
            .unwrap_err()
            .is_config()
    );

    let unknown = kpi_lambda::worker(state, "hubspot".parse().unwrap())
        .err()
        .unwrap();
    assert!(unknown.is_not_found());
}

/// The store of the test app, as a function before its configuration has it.
struct StoreOnly(std::sync::Arc<dyn kpi_core::ports::Store>);

#[async_trait::async_trait]
impl http::early::StoreBeforeConfiguration for StoreOnly {
    async fn store(&self) -> Option<std::sync::Arc<dyn kpi_core::ports::Store>> {
        Some(self.0.clone())
    }
}

fn early_router_for(function: &str, app: &TestApp) -> axum::Router {
    let store = std::sync::Arc::new(StoreOnly(app.server.state.store.clone()));
    kpi_lambda::early_app(match function {
        "api" => http::early::api(),
        "oauth" => http::early::oauth(store),
        "webhook" => http::early::webhook(),
        "ui" => kpi_ui::early(Some((*app.server.state.config).clone())),
        _ => http::early::nothing(),
    })
}

/// (status, content type, body) of a response.
async fn parts_of(response: axum::response::Response) -> (u16, String, String) {
    let status = response.status().as_u16();
    let kind = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, kind, String::from_utf8_lossy(&body).into_owned())
}

/// What a function answers before its configuration is ready is what its
/// configured routes answer, byte for byte: of the sample events, the health
/// probe, the replayed OAuth callback and the stale Resend delivery. The
/// rest are declined (the forged Meta delivery has a well-formed signature:
/// only the app secret can tell).
#[tokio::test]
async fn sample_events_answered_before_the_configuration_get_the_configured_answer() {
    let app = TestApp::spawn().await;
    let token = app.token("user-1", &["demo"], false);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let cases = [
        ("api-healthz.json", "api", true),
        ("api-list-integrations.json", "api", false),
        ("api-create-integration.json", "api", false),
        ("api-kpis.json", "api", false),
        ("oauth-start.json", "oauth", false),
        ("ui-settings-signed-out.json", "ui", false),
        ("oauth-callback-replayed.json", "oauth", true),
        ("meta-webhook-check.json", "webhook", false),
        ("meta-webhook-delivery.json", "webhook", false),
        ("meta-webhook-forged.json", "webhook", false),
        ("resend-webhook-stale.json", "webhook", true),
    ];
    for (file, function, early) in cases {
        let raw = std::fs::read_to_string(dir.join(file))
            .unwrap()
            .replace("REPLACE_WITH_DEV_TOKEN", &token);
        let request = || lambda_http::request::from_str(&raw).unwrap();
        let answer = early_router_for(function, &app)
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(!http::early::is_declined(&answer), early, "{file}");
        if early {
            let configured = router_for(function, &app).oneshot(request()).await.unwrap();
            assert_eq!(parts_of(answer).await, parts_of(configured).await, "{file}");
        }
    }
}

/// The webhook screens before the configuration: a delivery without a
/// well-formed signature, or outside Svix's five minutes, is refused as the
/// configured routes refuse it; anything that only a secret can judge, and
/// any other request, is declined.
#[tokio::test]
async fn webhook_deliveries_refused_before_the_configuration_are_refused_alike() {
    let app = TestApp::spawn().await;
    let now = chrono::Utc::now().timestamp();
    let body = r#"{"type":"email.delivered","created_at":"2026-11-25T18:00:00Z","data":{}}"#;
    let svix = |ts: i64| {
        vec![
            ("svix-id", "msg_1".to_owned()),
            ("svix-timestamp", ts.to_string()),
            ("svix-signature", "v1,bm90IHRoZSBzaWduYXR1cmU=".to_owned()),
        ]
    };
    let integration = uuid::Uuid::new_v4().to_string();
    let per_connection = format!("/v1/webhooks/resend/{integration}");
    // (method, path, headers, refused before the configuration)
    type Case<'a> = (&'a str, &'a str, Vec<(&'a str, String)>, bool);
    let cases: Vec<Case> = vec![
        ("POST", "/v1/webhooks/resend", svix(now - 600), true),
        ("POST", "/v1/webhooks/resend", svix(now + 600), true),
        ("POST", &per_connection, svix(now - 600), true),
        ("POST", "/v1/webhooks/resend", vec![], true),
        ("POST", "/v1/webhooks/resend", svix(now), false),
        ("POST", &per_connection, svix(now), false),
        ("POST", "/v1/webhooks/meta", vec![], true),
        (
            "POST",
            "/v1/webhooks/meta",
            vec![("x-hub-signature-256", "sha256=zz".to_owned())],
            true,
        ),
        (
            "POST",
            "/v1/webhooks/meta",
            vec![("x-hub-signature-256", format!("sha256={}", "ab".repeat(32)))],
            false,
        ),
        // Meta has no endpoint of a connection's own: the configured routes' 404.
        ("POST", "/v1/webhooks/meta/123", vec![], false),
        ("POST", "/v1/webhooks/nobody", vec![], false),
        ("GET", "/v1/webhooks/meta", vec![], false),
    ];
    for (method, path, headers, refused) in cases {
        let request = || {
            let mut builder = axum::http::Request::builder()
                .method(method)
                .uri(path)
                .header("content-type", "application/json");
            for (name, value) in &headers {
                builder = builder.header(*name, value);
            }
            builder.body(axum::body::Body::from(body)).unwrap()
        };
        let answer = kpi_lambda::early_app(http::early::webhook())
            .oneshot(request())
            .await
            .unwrap();
        assert_eq!(
            !http::early::is_declined(&answer),
            refused,
            "{method} {path} {headers:?}"
        );
        if refused {
            let configured = router_for("webhook", &app)
                .oneshot(request())
                .await
                .unwrap();
            let (early, configured) = (parts_of(answer).await, parts_of(configured).await);
            assert_eq!(early.0, 401, "{path}: {}", early.2);
            // The problem document names the request, which differs.
            let detail = |body: &str| {
                serde_json::from_str::<serde_json::Value>(body).unwrap()["detail"].clone()
            };
            assert!(detail(&early.2).is_string(), "{}", early.2);
            assert_eq!(
                (early.0, detail(&early.2)),
                (configured.0, detail(&configured.2)),
                "{path}"
            );
        }
    }
}

/// An OAuth callback before the configuration: no state, or one the store
/// does not hold, is refused as the callback refuses it; a held state is
/// left in place for the callback to consume.
#[tokio::test]
async fn an_oauth_state_is_only_looked_at_before_the_configuration() {
    use kpi_core::ports::store::OAuthState;

    let app = TestApp::spawn().await;
    let store = app.server.state.store.clone();
    let state = OAuthState {
        key: kpi_providers::oauth::sha256_b64("held-state"),
        workspace: kpi_core::WorkspaceId::parse("demo").unwrap(),
        user: "user-1".into(),
        provider: kpi_providers::ga4::ID,
        integration: None,
        browser_binding: "binding".into(),
        pkce_verifier: None,
        return_to: None,
        expires_at: chrono::Utc::now() + chrono::Duration::minutes(10),
    };
    let scope = kpi_core::WorkspaceScope::for_system(state.workspace.clone(), "test");
    store.put_oauth_state(&scope, &state).await.unwrap();
    let call = |uri: &'static str| {
        let router = early_router_for("oauth", &app);
        async move {
            router
                .oneshot(
                    axum::http::Request::builder()
                        .uri(uri)
                        .body(axum::body::Body::empty())
                        .unwrap(),
                )
                .await
                .unwrap()
        }
    };
    for (uri, answered) in [
        (
            "/v1/oauth/ga4/callback?code=c&state=never-issued",
            Some(400),
        ),
        ("/v1/oauth/meta_ads/callback?code=c", Some(400)),
        ("/v1/oauth/ga4/callback?code=c&state=held-state", None),
        // Not a provider that connects with OAuth: the callback's 404.
        ("/v1/oauth/resend/callback?code=c&state=never-issued", None),
        ("/v1/oauth/nobody/callback?code=c&state=never-issued", None),
        ("/v1/oauth/ga4/start?workspace=demo", None),
    ] {
        let answer = call(uri).await;
        match answered {
            Some(status) => assert_eq!(answer.status().as_u16(), status, "{uri}"),
            None => assert!(http::early::is_declined(&answer), "{uri}"),
        }
    }
    assert!(
        store
            .consume_oauth_state(&state.key, chrono::Utc::now())
            .await
            .unwrap()
            .is_some(),
        "the held state is still there"
    );
}

/// The pages before the configuration: the assets, and the way to sign in
/// for a page asked for without a session cookie when sign-in at the identity
/// provider is on by the environment, as the configured pages answer them.
/// A page with a session cookie, or any page when sign-in is not on by the
/// environment (the secret may turn it on), waits for the configuration.
#[tokio::test]
async fn pages_before_the_configuration() {
    let app = TestApp::spawn_with(&[
        ("KPI_OIDC_ISSUER", "https://idp.example.com"),
        ("KPI_OIDC_CLIENT_ID", "kpi-pages"),
    ])
    .await;
    let config = (*app.server.state.config).clone();
    assert!(config.oidc.is_some());
    let session = config.cookie_name(http::extract::SESSION_COOKIE);
    let request = |uri: &str, cookie: Option<&str>| {
        let mut builder = axum::http::Request::builder().uri(uri);
        if let Some(cookie) = cookie {
            builder = builder.header("cookie", cookie);
        }
        builder.body(axum::body::Body::empty()).unwrap()
    };
    let with_session = format!("theme=dark; {session}=s1");
    for (uri, cookie, answered) in [
        ("/settings/integrations?workspace=demo", None, true),
        ("/settings/alerts", Some("theme=dark"), true),
        ("/admin/sync-jobs/01JD0000000000000000000000", None, true),
        ("/assets/app.js", None, true),
        ("/favicon.ico", Some(with_session.as_str()), true),
        (
            "/settings/integrations?workspace=demo",
            Some(with_session.as_str()),
            false,
        ),
        ("/auth/login", None, false),
        ("/nowhere", None, false),
    ] {
        let early = kpi_lambda::early_app(kpi_ui::early(Some(config.clone())))
            .oneshot(request(uri, cookie))
            .await
            .unwrap();
        assert_eq!(!http::early::is_declined(&early), answered, "{uri}");
        if answered {
            let configured = router_for("ui", &app)
                .oneshot(request(uri, cookie))
                .await
                .unwrap();
            let headers = |r: &axum::response::Response| {
                ["location", "cache-control", "content-security-policy"]
                    .map(|h| r.headers().get(h).map(|v| v.to_str().unwrap().to_owned()))
            };
            assert_eq!(headers(&early), headers(&configured), "{uri}");
            assert_eq!(parts_of(early).await, parts_of(configured).await, "{uri}");
        }
    }
    // Without sign-in in the environment, only the assets.
    let without = TestApp::spawn().await;
    let early = kpi_ui::early(Some((*without.server.state.config).clone()));
    let page = early
        .clone()
        .oneshot(request("/settings/integrations", None))
        .await
        .unwrap();
    assert!(http::early::is_declined(&page));
    let asset = early
        .oneshot(request("/assets/app.css", None))
        .await
        .unwrap();
    assert_eq!(asset.status().as_u16(), 200);
}
