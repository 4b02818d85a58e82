//! Alert rules: evaluated after a sync into one digest, and what that costs.

use std::time::Duration;

use kpi_tests::app::TestApp;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::{one_click, workspace};

#[tokio::test]
async fn a_rule_that_holds_on_the_sandbox_numbers_sends_one_digest() {
    let app = TestApp::spawn().await;
    let (c, ga4) = workspace(&app).await;
    let days: Vec<chrono::NaiveDate> = (1..=5)
        .map(|d| chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap())
        .collect();
    let served: Vec<Decimal> = days
        .iter()
        .map(|d| {
            kpi_sandbox::ga4_data::value("100001", *d, "sessions")
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    let lowest = served.iter().min().unwrap();
    // Above the lowest day minus one: every synced day holds.
    let threshold = lowest - Decimal::ONE;

    // Bad rules are refused with the field named.
    for (body, field) in [
        (
            json!({"name": "x", "metric": "ga4.nope", "condition": {"kind": "threshold", "comparison": "above", "threshold": "1"}, "recipients": ["a@example.com"]}),
            "metric",
        ),
        (
            json!({"name": "x", "metric": "meta.spend", "integration": ga4, "condition": {"kind": "threshold", "comparison": "above", "threshold": "1"}, "recipients": ["a@example.com"]}),
            "integration",
        ),
        (
            json!({"name": "x", "metric": "ga4.sessions", "condition": {"kind": "threshold", "comparison": "above", "threshold": "1"}, "recipients": ["nope"]}),
            "recipients[0]",
        ),
        (
            json!({"name": "x", "metric": "ga4.sessions", "condition": {"kind": "change", "percent": "0", "direction": "up", "versus": "previous_period"}, "recipients": ["a@example.com"]}),
            "condition.percent",
        ),
    ] {
        let resp = c
            .post(app.url("/v1/workspaces/demo/alerts"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{body}");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }

    let created = c
        .post(app.url("/v1/workspaces/demo/alerts"))
        .json(&json!({
            "name": "Busy days",
            "metric": "ga4.sessions",
            "integration": ga4,
            "condition": {"kind": "threshold", "comparison": "above", "threshold": threshold.to_string()},
            "window": "day",
            "recipients": ["Analyst@Example.com"],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let rule: Value = created.json().await.unwrap();
    let rule_id = rule["id"].as_str().unwrap().to_owned();
    assert_eq!(rule["recipients"], json!(["analyst@example.com"]));
    assert_eq!(rule["state"]["firing"], false);

    // A five-day sync: one digest for the five days, with the latest value.
    let sync = |from: &str, to: &str| {
        c.post(app.url(&format!("/v1/workspaces/demo/integrations/{ga4}/sync")))
            .json(&json!({"from": from, "to": to}))
            .send()
    };
    assert_eq!(
        sync("2026-03-01", "2026-03-05").await.unwrap().status(),
        202
    );
    app.wait_for_jobs(&c, "demo", &ga4, 1).await;
    let outbox = kpi_tests::wait_for_outbox(&app, 1).await;
    assert_eq!(outbox.len(), 1, "exactly one alert email");
    let email = &outbox[0];
    assert_eq!(email.to, vec!["analyst@example.com".to_owned()]);
    assert!(
        email
            .subject
            .starts_with("Busy days: ga4.sessions rose above"),
        "{}",
        email.subject
    );
    let text = email.text.as_deref().unwrap();
    assert!(text.contains("2026-03-01 to 2026-03-05 (5 days)"), "{text}");
    assert!(
        text.contains(&served[4].to_string()),
        "the latest day's value: {text}"
    );
    assert!(text.contains(&threshold.to_string()), "{text}");
    // A digest goes to a list: its reader can leave it with one click.
    let unsubscribe = one_click(&app, email);
    assert!(text.contains(&unsubscribe), "{text}");

    // The email goes out first; the event and the rule's state are written
    // after it: wait for the last of them.
    let rule = super::wait_for_rule(&app, &c, &rule_id, |r| r["state"]["firing"] == true).await;
    let events = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}/events")),
    )
    .await;
    let items = events["items"].as_array().unwrap();
    assert_eq!(items.len(), 1);
    assert_eq!(items[0]["kind"], "fired");
    assert_eq!(items[0]["emailed"], true);
    assert_eq!(items[0]["days"].as_array().unwrap().len(), 5);
    assert_eq!(items[0]["days"][4]["value"], served[4].to_string());
    assert_eq!(rule["state"]["since"], "2026-03-05");

    // The same days synced again: nothing new, no email.
    assert_eq!(
        sync("2026-03-01", "2026-03-05").await.unwrap().status(),
        202
    );
    app.wait_for_jobs(&c, "demo", &ga4, 2).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(app.sandbox().resend_outbox().len(), 1);

    // Listing, pausing, deleting.
    let list = kpi_tests::get_json(&c, app.url("/v1/workspaces/demo/alerts")).await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    let paused: Value = c
        .patch(app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}")))
        .json(&json!({"enabled": false}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(paused["enabled"], false);
    let other = app.client_for(&["other"]);
    let theirs = other
        .get(app.url(&format!("/v1/workspaces/other/alerts/{rule_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(
        theirs.status(),
        404,
        "another workspace's rule is not found"
    );
    let gone = c
        .delete(app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    let again = c
        .delete(app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);
}

/// The cost of evaluating rules after one integration's sync: one listing of
/// the workspace's rules and one KPI query per input metric of each rule
/// (sums read one metric, weighted rates two), whatever the days synced.
#[tokio::test]
async fn twenty_rules_cost_one_listing_and_a_query_per_input() {
    let app = TestApp::spawn().await;
    let (c, ga4) = workspace(&app).await;
    let metrics = [
        "ga4.sessions",
        "ga4.total_users",
        "ga4.engagement_rate",
        "ga4.bounce_rate",
    ];
    let mut expected_reads = 0;
    for n in 0..20 {
        let metric = metrics[n % metrics.len()];
        expected_reads += if metric.ends_with("_rate") { 2 } else { 1 };
        let resp = c
            .post(app.url("/v1/workspaces/demo/alerts"))
            .json(&json!({
                "name": format!("rule {n}"),
                "metric": metric,
                "condition": {"kind": "change", "percent": "500", "direction": "either", "versus": "previous_period"},
                "window": if n % 2 == 0 { "day" } else { "7d" },
                "recipients": ["analyst@example.com"],
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 201);
    }
    // A rule of another provider is not read.
    c.post(app.url("/v1/workspaces/demo/alerts"))
        .json(&json!({"name": "spend", "metric": "meta.spend",
            "condition": {"kind": "threshold", "comparison": "above", "threshold": "1"},
            "recipients": ["analyst@example.com"]}))
        .send()
        .await
        .unwrap();
    let state = &app.server.state;
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let integration = state
        .store
        .get_integration(&scope, kpi_core::IntegrationId::parse(&ga4).unwrap())
        .await
        .unwrap();
    let window = kpi_core::kpi::DateRange::new(
        chrono::NaiveDate::from_ymd_opt(2026, 3, 1).unwrap(),
        chrono::NaiveDate::from_ymd_opt(2026, 3, 28).unwrap(),
    )
    .unwrap();
    let evaluation = kpi_lambda::alert_evaluator(state)
        .after_sync(&scope, &integration, window)
        .await
        .unwrap();
    assert_eq!(evaluation.rules, 20);
    assert_eq!(evaluation.kpi_reads, expected_reads);
    assert_eq!(expected_reads, 30);
}
