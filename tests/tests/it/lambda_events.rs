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
