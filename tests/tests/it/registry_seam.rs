//! The registry is the only seam a provider needs: a provider defined in the
//! test crate (`tests/src/tally.rs`: API-key auth, one metric, one
//! option-backed setting), is
//! registered through the registry's public API and goes through create →
//! options → settings → sync → KPIs → a signed webhook → disconnect on the
//! dev server's router and engine, without a change to any file outside the
//! tests.

use std::sync::Arc;
use std::time::Duration;

use kpi_core::registry::Plugin;
use kpi_tests::app::TestApp;
use kpi_tests::tally::Tally;
use serde_json::{Value, json};

#[tokio::test]
async fn a_provider_defined_in_the_tests_goes_through_the_whole_life_cycle() {
    let tally = Arc::new(Tally::default());
    let app = TestApp::spawn_with_plugins(
        &[],
        vec![Plugin::Ready {
            adapter: tally.clone(),
            sandbox: false,
        }],
    )
    .await;
    let c = app.client_for(&["demo"]);

    let providers: Value = kpi_tests::get_json(&c, app.url("/v1/providers")).await;
    let listed = providers
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "tally")
        .expect("the registry lists it");
    assert_eq!(listed["auth_mode"], "api_key");
    assert_eq!(listed["metrics"][0]["name"], "tally.count");
    assert_eq!(listed["settings"][0]["key"], "board");

    let bad = c
        .post(app.url("/v1/workspaces/demo/integrations"))
        .json(&json!({"provider": "tally", "api_key": "wrong"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let created = c
        .post(app.url("/v1/workspaces/demo/integrations"))
        .json(&json!({"provider": "tally", "api_key": "tly_secret_1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["status"], "connected");
    assert_eq!(created["display_name"], "Tally");
    let id = created["id"].as_str().unwrap().to_owned();
    let item = |suffix: &str| app.url(&format!("/v1/workspaces/demo/integrations/{id}{suffix}"));

    let options: Value = kpi_tests::get_json(&c, item("/options")).await;
    assert_eq!(options["options"][1]["id"], "board-2");
    let not_an_option = c
        .patch(item(""))
        .json(&json!({"settings": {"board": "board-9"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(not_an_option.status(), 422);
    let unknown_setting = c
        .patch(item(""))
        .json(&json!({"settings": {"property": "properties/1"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown_setting.status(), 422);
    let patched: Value = c
        .patch(item(""))
        .json(&json!({"settings": {"board": "board-2"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["settings"]["board"], "board-2");
    let health: Value = kpi_tests::get_json(&c, item("/health")).await;
    assert_eq!(health["state"], "healthy");

    // 12 days in windows of at most 10: two provider calls through the engine.
    let accepted = c
        .post(item("/sync"))
        .json(&json!({"from": "2026-03-01", "to": "2026-03-12"}))
        .send()
        .await
        .unwrap();
    assert_eq!(accepted.status(), 202);
    let job = app.wait_for_job(&c, "demo", &id).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    assert_eq!(job["rows_written"], 12);
    assert_eq!(job["provider_calls"], 2);
    assert_eq!(*tally.sync_calls.lock().unwrap(), 2);

    let series: Value = kpi_tests::get_json(
        &c,
        app.url("/v1/workspaces/demo/kpis?metric=tally.count&from=2026-03-01&to=2026-03-12"),
    )
    .await;
    assert_eq!(series["unit"], "count");
    let points = series["points"].as_array().unwrap();
    assert_eq!(points.len(), 12);
    assert_eq!(points[11]["value"], "12");

    // Its webhooks arrive at the one webhook route, under its own path name:
    // forged ones are refused, a signed one syncs the integrations of the
    // boards it names, once however often it is delivered.
    let listed: Value = kpi_tests::get_json(&c, app.url("/v1/providers")).await;
    let tally_entry = listed
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "tally")
        .unwrap();
    assert_eq!(tally_entry["webhook_path"], "tally");
    let deliver = |headers: Vec<(String, String)>, body: Vec<u8>| {
        let mut request = kpi_tests::client().post(app.url("/v1/webhooks/tally"));
        for (k, v) in headers {
            request = request.header(k, v);
        }
        request
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let (headers, body) = kpi_tests::tally::signed_delivery("evt-1", &["board-2"]);
    let mut forged = body.clone();
    forged[2] ^= 1;
    assert_eq!(
        deliver(headers.clone(), forged).await.unwrap().status(),
        401
    );
    assert_eq!(
        deliver(Vec::new(), body.clone()).await.unwrap().status(),
        401
    );
    let calls_before = *tally.sync_calls.lock().unwrap();
    let receipt: Value = deliver(headers.clone(), body.clone())
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(receipt["jobs"], 1, "{receipt}");
    let again: Value = deliver(headers, body).await.unwrap().json().await.unwrap();
    assert_eq!(again["duplicate"], true, "{again}");
    for _ in 0..100 {
        if *tally.sync_calls.lock().unwrap() > calls_before {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(*tally.sync_calls.lock().unwrap(), calls_before + 1);
    // Another board's delivery syncs nothing; an unknown path is no provider's.
    let (headers, body) = kpi_tests::tally::signed_delivery("evt-2", &["board-1"]);
    let none: Value = deliver(headers, body).await.unwrap().json().await.unwrap();
    assert_eq!(none["jobs"], 0, "{none}");
    let unknown = kpi_tests::client()
        .post(app.url("/v1/webhooks/nobody"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);

    let gone = c.delete(item("")).send().await.unwrap();
    assert_eq!(gone.status(), 200);
    assert_eq!(
        *tally.revoked.lock().unwrap(),
        vec!["tly_secret_1".to_owned()]
    );
    let after: Value = kpi_tests::get_json(&c, item("")).await;
    assert_eq!(after["status"], "disconnected");
    assert_eq!(after["has_credentials"], false);
}
