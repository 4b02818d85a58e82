//! A failed sync's notice and its recovery, and a notice with no sender.

use std::time::Duration;

use kpi_tests::app::TestApp;
use serde_json::{Value, json};

#[tokio::test]
async fn a_failed_sync_emails_one_notice_and_its_fix_one_recovery() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);

    // The workspace's own Resend account, with a sender address.
    let resend: Value = c
        .post(app.url("/v1/workspaces/demo/integrations"))
        .json(&json!({"provider": "resend", "api_key": "re_live_123456789"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let resend_id = resend["id"].as_str().unwrap();
    let patched = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{resend_id}")))
        .json(&json!({"settings": {"from_address": "kpi@sandbox.example.com", "from_name": "Acme KPIs"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);

    // Who gets notices: checked and normalised.
    let bad = c
        .put(app.url("/v1/workspaces/demo/notifications"))
        .json(&json!({"recipients": ["owner@example.com", "not an address"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let problem: Value = bad.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "recipients[1]", "{problem}");
    let saved: Value = c
        .put(app.url("/v1/workspaces/demo/notifications"))
        .json(&json!({"recipients": ["Owner@Example.com", "owner@example.com"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved, json!({"recipients": ["owner@example.com"]}));
    let other = app.client_for(&["other"]);
    let theirs = kpi_tests::get_json(&other, app.url("/v1/workspaces/other/notifications")).await;
    assert_eq!(theirs, json!({"recipients": []}), "per workspace");

    // GA4, connected and configured.
    let id = app.connect_ga4("demo").await;
    let ga4: Value = c
        .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100001"}, "display_name": "Shop Analytics"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ga4["status"], "connected", "{ga4}");

    // GA4 refuses access: the job fails for good.
    app.sandbox().set_faults(kpi_sandbox::Faults {
        ga4_data: Some("403".into()),
        ..Default::default()
    });
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", &id, 1).await;
    assert_eq!(jobs[0]["status"], "dead", "{:?}", jobs[0]);
    let outbox = kpi_tests::wait_for_outbox(&app, 1).await;
    assert_eq!(outbox.len(), 1, "exactly one failure email");
    let notice = &outbox[0];
    assert_eq!(notice.to, vec!["owner@example.com".to_owned()]);
    assert_eq!(notice.from, "Acme KPIs <kpi@sandbox.example.com>");
    assert_eq!(notice.subject, "Shop Analytics stopped syncing");
    let settings_link = format!(
        "{}/settings/integrations?workspace=demo&integration={id}",
        app.base
    );
    let text = notice.text.as_deref().unwrap();
    assert!(text.contains("Shop Analytics"), "{text}");
    assert!(text.contains(&settings_link), "{text}");
    let html = notice.html.as_deref().unwrap();
    assert!(
        html.contains(&format!("href=\"{}\"", settings_link.replace('&', "&amp;"))),
        "{html}"
    );
    assert!(
        notice
            .idempotency_key
            .as_deref()
            .unwrap()
            .starts_with("notice/")
    );
    // The note on the integration follows the send.
    let mut status = Value::Null;
    for _ in 0..50 {
        status = kpi_tests::get_json(
            &c,
            app.url(&format!("/v1/workspaces/demo/integrations/{id}")),
        )
        .await;
        if !status["last_notice"].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(status["status"], "error");
    assert_eq!(status["last_notice"]["kind"], "sync_failure", "{status}");
    assert_eq!(status["last_notice"]["emailed"], true);

    // The user fixes it (pause and resume) and syncs: one recovery email.
    for paused in [true, false] {
        let r = c
            .patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
            .json(&json!({ "paused": paused }))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", &id, 2).await;
    assert_eq!(jobs[0]["status"], "succeeded", "{:?}", jobs[0]);
    let outbox = kpi_tests::wait_for_outbox(&app, 2).await;
    assert_eq!(outbox.len(), 2, "one recovery email");
    assert_eq!(outbox[1].subject, "Shop Analytics is syncing again");
    assert!(outbox[1].text.as_deref().unwrap().contains(&settings_link));

    // Another success sends nothing more.
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .json(&json!({"from": "2026-03-01", "to": "2026-03-02"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_jobs(&c, "demo", &id, 3).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(app.sandbox().resend_outbox().len(), 2);
}

#[tokio::test]
async fn without_a_sender_the_notice_is_logged_and_the_integration_says_why() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
    c.put(app.url("/v1/workspaces/demo/notifications"))
        .json(&json!({"recipients": ["owner@example.com"]}))
        .send()
        .await
        .unwrap();
    let id = app.connect_ga4("demo").await;
    c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap();
    app.sandbox().set_faults(kpi_sandbox::Faults {
        ga4_data: Some("403".into()),
        ..Default::default()
    });
    c.post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    app.wait_for_jobs(&c, "demo", &id, 1).await;
    let mut last_notice = Value::Null;
    for _ in 0..50 {
        let got = kpi_tests::get_json(
            &c,
            app.url(&format!("/v1/workspaces/demo/integrations/{id}")),
        )
        .await;
        last_notice = got["last_notice"].clone();
        if !last_notice.is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(last_notice["emailed"], false, "{last_notice}");
    assert!(
        last_notice["reason"].as_str().unwrap().contains("Resend"),
        "{last_notice}"
    );
    assert!(app.sandbox().resend_outbox().is_empty());
}
