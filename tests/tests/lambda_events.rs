//! Every sample event in `events/` fed to its function's router in process, the
//! way the Lambda runtime hands requests to `lambda_http::run`.

use kpi_app::http;
use kpi_tests::app::TestApp;
use tower::ServiceExt as _;

fn router_for(function: &str, app: &TestApp) -> axum::Router {
    let state = app.server.state.clone();
    match function {
        "api" => {
            http::with_defaults(http::system_router().merge(http::api_router())).with_state(state)
        }
        "oauth" => http::with_defaults(http::oauth_router()).with_state(state),
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
        ("oauth-callback-replayed.json", "oauth", 400),
    ];
    let other_functions = [
        "sync-scheduler-tick.json",
        "sync-dlq-batch.json",
        "sync-ga4-batch.json",
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
    }
}

#[tokio::test]
async fn the_dlq_sample_batch_is_consumed_by_the_dlq_handler() {
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sync-dlq-batch.json")).unwrap())
            .unwrap();
    let state = app.server.state.clone();
    let handler = kpi_sync::dlq::DlqHandler {
        store: state.store.clone(),
        notifier: std::sync::Arc::new(kpi_sync::notifier::RecordingNotifier::default()),
        clock: state.clock.clone(),
    };
    let retried = std::sync::Mutex::new(0);
    let response = kpi_lambda::handle_sqs_batch(
        event,
        |m| {
            let handler = &handler;
            async move { handler.handle(&m).await }
        },
        |_, _| async { *retried.lock().unwrap() += 1 },
    )
    .await;
    // An unknown job and an unreadable body: nothing to retry, both consumed.
    assert!(response.batch_item_failures.is_empty());
    assert_eq!(*retried.lock().unwrap(), 0);
    let tick: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("sync-scheduler-tick.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(tick["detail-type"], "Scheduled Event");
}

#[tokio::test]
async fn the_ga4_sample_batch_is_handled_by_the_ga4_worker() {
    let app = TestApp::spawn().await;
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let event: aws_lambda_events::sqs::SqsEvent =
        serde_json::from_str(&std::fs::read_to_string(dir.join("sync-ga4-batch.json")).unwrap())
            .unwrap();
    let worker = kpi_lambda::worker_for(&app.server.state, kpi_core::Provider::Ga4).unwrap();
    let response = kpi_lambda::handle_sqs_batch(
        event,
        |m| {
            let worker = &worker;
            async move { worker.handle(&m).await }
        },
        |_, _| async {},
    )
    .await;
    assert!(response.batch_item_failures.is_empty());
    assert!(kpi_lambda::worker_for(&app.server.state, kpi_core::Provider::MetaAds).is_err());
}
