//! Weekly reports, previews to the caller, and a tick that runs out of time.

use std::time::Duration;

use kpi_tests::app::TestApp;
use rust_decimal::Decimal;
use serde_json::{Value, json};

use super::workspace;

#[tokio::test]
async fn a_weekly_report_goes_out_once_per_week_and_flags_a_failing_integration() {
    let app = TestApp::spawn().await;
    let (c, ga4) = workspace(&app).await;
    let bad = c
        .put(app.url("/v1/workspaces/demo/reports"))
        .json(&json!({"enabled": true, "frequency": "weekly", "time_zone": "Mars/Olympus", "recipients": ["a@example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let saved: Value = c
        .put(app.url("/v1/workspaces/demo/reports"))
        .json(&json!({"enabled": true, "frequency": "weekly", "weekday": "Mon", "hour": 8,
            "time_zone": "Europe/Berlin", "recipients": ["Team@Example.com"], "metrics": ["ga4.sessions", "ga4.engagement_rate"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["recipients"], json!(["team@example.com"]));
    assert!(saved["next_run_at"].is_string(), "{saved}");

    // Two weeks of numbers, then the report due on Monday 23 March, 08:00 in Berlin.
    let resp = c
        .post(app.url(&format!("/v1/workspaces/demo/integrations/{ga4}/sync")))
        .json(&json!({"from": "2026-03-09", "to": "2026-03-29"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    app.wait_for_jobs(&c, "demo", &ga4, 1).await;
    let state = &app.server.state;
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let monday = |s: &str| chrono::DateTime::parse_from_rfc3339(s).unwrap().to_utc();
    state
        .store
        .schedule_report(&scope, Some(monday("2026-03-23T07:00:00Z")))
        .await
        .unwrap();
    let scheduler = kpi_lambda::scheduler(state);
    let run = scheduler.run_once().await.unwrap();
    assert_eq!(run.reports_sent, 1);
    let again = scheduler.run_once().await.unwrap();
    assert_eq!(again.reports_sent, 0, "once per period");
    let outbox = app.sandbox().resend_outbox();
    let reports: Vec<_> = outbox
        .iter()
        .filter(|e| e.subject.ends_with("KPI report"))
        .collect();
    assert_eq!(reports.len(), 1);
    let report = reports[0];
    assert_eq!(report.subject, "16 – 22 March 2026 — KPI report");
    assert_eq!(report.to, vec!["team@example.com".to_owned()]);
    let week: Decimal = (16..=22)
        .map(|d| {
            kpi_sandbox::ga4_data::value(
                "100001",
                chrono::NaiveDate::from_ymd_opt(2026, 3, d).unwrap(),
                "sessions",
            )
            .unwrap()
            .parse::<Decimal>()
            .unwrap()
        })
        .sum();
    let text = report.text.as_deref().unwrap();
    assert!(text.contains("Compared with 9 – 15 March 2026."), "{text}");
    assert!(
        text.contains(&format!("ga4.sessions — Shop Analytics: {week}")),
        "{text}"
    );
    assert!(
        text.contains("ga4.engagement_rate — Shop Analytics"),
        "{text}"
    );
    assert!(!text.contains("Note:"), "{text}");

    // The integration fails; the next week's report (08:00 CEST now) says so.
    let mut i = state
        .store
        .get_integration(&scope, kpi_core::IntegrationId::parse(&ga4).unwrap())
        .await
        .unwrap();
    i.transition(kpi_core::IntegrationStatus::Error, chrono::Utc::now())
        .unwrap();
    state.store.update_integration(&scope, &i).await.unwrap();
    state
        .store
        .schedule_report(&scope, Some(monday("2026-03-30T06:00:00Z")))
        .await
        .unwrap();
    assert_eq!(scheduler.run_once().await.unwrap().reports_sent, 1);
    let outbox = app.sandbox().resend_outbox();
    let last = outbox.last().unwrap();
    assert_eq!(last.subject, "23 – 29 March 2026 — KPI report");
    assert!(
        last.text.as_deref().unwrap().contains(
            "Note: Shop Analytics is not syncing (error): its numbers may be incomplete."
        ),
        "{:?}",
        last.text
    );
}

#[tokio::test]
async fn previews_go_to_the_caller_only_and_are_limited() {
    let app = TestApp::spawn().await;
    let (c, _ga4) = workspace(&app).await;
    let me = app.client_with_email(&["demo"], "Me@Example.com");
    // No address in the sign-in: nothing to send to.
    let anonymous = c
        .post(app.url("/v1/workspaces/demo/reports/preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 422);
    let problem: Value = anonymous.json().await.unwrap();
    assert_eq!(problem["errors"][0]["field"], "email");
    let unset = me
        .post(app.url("/v1/workspaces/demo/reports/preview"))
        .send()
        .await
        .unwrap();
    assert_eq!(unset.status(), 409, "no report set up yet");
    c.put(app.url("/v1/workspaces/demo/reports"))
        .json(&json!({"enabled": true, "frequency": "daily", "recipients": ["team@example.com"]}))
        .send()
        .await
        .unwrap();
    let sent: Value = me
        .post(app.url("/v1/workspaces/demo/reports/preview"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(sent["sent_to"], "me@example.com", "{sent}");
    assert!(sent["subject"].as_str().unwrap().ends_with("KPI report"));

    let rule: Value = c
        .post(app.url("/v1/workspaces/demo/alerts"))
        .json(&json!({"name": "Quiet day", "metric": "ga4.sessions",
            "condition": {"kind": "threshold", "comparison": "below", "threshold": "10"},
            "recipients": ["team@example.com"]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tested = me
        .post(app.url(&format!(
            "/v1/workspaces/demo/alerts/{}/test",
            rule["id"].as_str().unwrap()
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(tested.status(), 202);
    let outbox = app.sandbox().resend_outbox();
    assert_eq!(outbox.len(), 2);
    assert!(
        outbox
            .iter()
            .all(|e| e.to == vec!["me@example.com".to_owned()]),
        "the caller only"
    );
    assert!(
        outbox[1].subject.starts_with("Test: Quiet day"),
        "{}",
        outbox[1].subject
    );

    // Ten previews an hour per user and workspace.
    let mut statuses = Vec::new();
    for _ in 0..9 {
        statuses.push(
            me.post(app.url("/v1/workspaces/demo/reports/preview"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    assert_eq!(
        statuses.iter().filter(|s| **s == 202).count(),
        8,
        "{statuses:?}"
    );
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
}

/// A tick that runs out of time stops sending reports and leaves the rest
/// due: the next ticks send them, each once. Before the tick had a deadline,
/// the first tick sent all of them, however long Resend took.
#[tokio::test]
async fn a_tick_out_of_time_leaves_its_other_reports_due_for_the_next() {
    let app = TestApp::spawn().await;
    let names: Vec<String> = (0..4).map(|k| format!("reports-{k}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let c = app.client_for(&refs);
    let state = &app.server.state;
    for ws in &names {
        app.connect_resend(&c, ws, "re_live_123456789").await;
        let saved = c
            .put(app.url(&format!("/v1/workspaces/{ws}/reports")))
            .json(
                &json!({"enabled": true, "frequency": "weekly", "weekday": "Mon", "hour": 8,
                "time_zone": "UTC", "recipients": ["team@example.com"]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 200);
        let scope =
            kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse(ws).unwrap(), "test");
        state
            .store
            .schedule_report(
                &scope,
                Some(chrono::Utc::now() - chrono::Duration::minutes(1)),
            )
            .await
            .unwrap();
    }
    // Every Resend call takes 2 s; the tick may spend 3 s on reports.
    app.sandbox().set_faults(kpi_sandbox::Faults {
        latency_ms: Some(2_000),
        ..Default::default()
    });
    let scheduler = kpi_lambda::scheduler(state);
    let budget = kpi_sync::scheduler::DUE_WORK_RESERVE + Duration::from_secs(3);
    let first = scheduler.run_within(Some(budget)).await.unwrap();
    assert!(
        first.reports_sent < names.len(),
        "the first tick stopped in time: {first:?}"
    );
    let mut sent = first.reports_sent;
    for _ in 0..10 {
        if sent == names.len() {
            break;
        }
        sent += scheduler
            .run_within(Some(budget))
            .await
            .unwrap()
            .reports_sent;
    }
    assert_eq!(sent, names.len());
    let reports = app
        .sandbox()
        .resend_outbox()
        .into_iter()
        .filter(|e| e.subject.ends_with("KPI report"))
        .count();
    assert_eq!(reports, names.len(), "each report went out once");
}
