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
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../events");
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".json") {
            seen += 1;
            assert!(
                cases.iter().any(|(f, _, _)| *f == name),
                "{name} has no expectation here"
            );
        }
    }
    assert_eq!(seen, cases.len());
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
