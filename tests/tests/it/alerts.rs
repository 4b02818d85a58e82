//! KPI alert rules on the dev server: created through the API, evaluated
//! after a sync on the stored points, one email (a digest for several days)
//! from the workspace's Resend account, history kept, nothing twice.

use std::time::Duration;

use kpi_tests::app::TestApp;
use rust_decimal::Decimal;
use serde_json::{Value, json};

/// A workspace with its own Resend sender and a GA4 integration on property 100001.
async fn workspace(app: &TestApp) -> (reqwest::Client, String) {
    let c = app.client_for(&["demo"]);
    app.connect_resend(&c, "demo", "re_live_123456789").await;
    let id = app.connect_ga4("demo").await;
    c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100001"}, "display_name": "Shop Analytics"}))
        .send()
        .await
        .unwrap();
    (c, id)
}

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
    let rule = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}")),
    )
    .await;
    assert_eq!(rule["state"]["firing"], true);
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

/// The one-click unsubscribe of an email to a list (RFC 8058): both headers,
/// the link also in the text and HTML parts. Returns the link.
fn one_click(app: &TestApp, email: &kpi_sandbox::resend_send::OutboxEmail) -> String {
    let header = email
        .headers
        .get("List-Unsubscribe")
        .unwrap_or_else(|| panic!("no List-Unsubscribe on {:?}", email.subject));
    let url = header
        .strip_prefix('<')
        .and_then(|h| h.strip_suffix('>'))
        .unwrap_or_else(|| panic!("{header}"))
        .to_owned();
    assert!(url.starts_with(&app.url("/v1/unsubscribe/")), "{url}");
    assert_eq!(
        email
            .headers
            .get("List-Unsubscribe-Post")
            .map(String::as_str),
        Some("List-Unsubscribe=One-Click")
    );
    assert!(email.text.as_deref().unwrap().contains(&url));
    assert!(
        email
            .html
            .as_deref()
            .unwrap()
            .contains(&format!("href=\"{url}\""))
    );
    url
}

/// The link key the next test signs its own tokens with.
const LINK_KEY: &str = "test-link-key-of-at-least-thirty-two-characters";

#[tokio::test]
async fn one_click_stops_one_kind_of_email_to_one_address_and_nothing_else() {
    let app = TestApp::spawn_with(&[("KPI_LINK_KEY", LINK_KEY)]).await;
    let (c, _ga4) = workspace(&app).await;
    let saved = c
        .put(app.url("/v1/workspaces/demo/reports"))
        .json(
            &json!({"enabled": true, "frequency": "weekly", "weekday": "Mon", "hour": 8,
            "time_zone": "UTC", "recipients": ["a@example.com", "b@example.com"]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    let state = &app.server.state;
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let scheduler = kpi_lambda::scheduler(state);
    let report_to = |since: usize| {
        let mut to: Vec<String> = app
            .sandbox()
            .resend_outbox()
            .into_iter()
            .skip(since)
            .filter(|e| e.subject.ends_with("KPI report"))
            .flat_map(|e| e.to)
            .collect();
        to.sort();
        to
    };
    let due = |at: &str| {
        let at = chrono::DateTime::parse_from_rfc3339(at).unwrap().to_utc();
        let scope = scope.clone();
        async move { state.store.schedule_report(&scope, Some(at)).await.unwrap() }
    };
    due("2026-03-23T08:00:00Z").await;
    assert_eq!(scheduler.run_once().await.unwrap().reports_sent, 1);
    let outbox = app.sandbox().resend_outbox();
    assert_eq!(report_to(0), vec!["a@example.com", "b@example.com"]);
    let to_a = outbox.iter().find(|e| e.to == ["a@example.com"]).unwrap();
    let url = one_click(&app, to_a);
    let token = url.rsplit('/').next().unwrap().to_owned();
    assert_ne!(
        one_click(
            &app,
            outbox.iter().find(|e| e.to == ["b@example.com"]).unwrap()
        ),
        url,
        "each reader has a link of their own"
    );

    let suppressions = || async {
        kpi_tests::get_json(&c, app.url("/v1/workspaces/demo/suppressions")).await["items"].clone()
    };
    // Nobody signed in: a mailbox provider, or the reader's browser.
    let anyone = reqwest::Client::new();
    let one_click_post = |url: String| {
        anyone
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body("List-Unsubscribe=One-Click")
            .send()
    };
    // Opening the link asks and changes nothing (link scanners open links).
    let page = anyone.get(&url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert_eq!(page.headers()["referrer-policy"], "no-referrer");
    let html = page.text().await.unwrap();
    assert!(
        html.contains("a@example.com") && html.contains("<button"),
        "{html}"
    );
    assert_eq!(suppressions().await, json!([]));

    // Forged, altered and unreadable tokens: 400, and nothing changes.
    let key = || {
        kpi_notify::unsubscribe::LinkKey::new(&secrecy::SecretString::from(LINK_KEY.to_owned()))
            .unwrap()
    };
    let for_b = kpi_notify::unsubscribe::Unsubscribe {
        workspace: kpi_core::WorkspaceId::parse("demo").unwrap(),
        address: "b@example.com".into(),
        stream: kpi_core::email::MailStream::Reports,
        platform: false,
    };
    let forged_key = kpi_notify::unsubscribe::LinkKey::new(&secrecy::SecretString::from(
        "another-key-of-at-least-thirty-two-characters".to_owned(),
    ))
    .unwrap();
    let middle = token.len() / 2;
    let flipped = format!(
        "{}{}{}",
        &token[..middle],
        if token[middle..].starts_with('A') {
            "B"
        } else {
            "A"
        },
        &token[middle + 1..]
    );
    // A confirmation link of the same address is no unsubscribe link.
    let confirmation = kpi_notify::unsubscribe::Confirmation {
        workspace: kpi_core::WorkspaceId::parse("demo").unwrap(),
        address: "a@example.com".into(),
    }
    .token(&key())
    .unwrap();
    for bad in [
        for_b.token(&forged_key).unwrap(),
        flipped,
        confirmation,
        "u1.e30.AAAA".to_owned(),
        "x".repeat(2_000),
    ] {
        let answer = one_click_post(app.url(&format!("/v1/unsubscribe/{bad}")))
            .await
            .unwrap();
        assert_eq!(answer.status(), 400, "{bad:.40}");
        assert_eq!(
            anyone
                .get(app.url(&format!("/v1/unsubscribe/{bad}")))
                .send()
                .await
                .unwrap()
                .status(),
            400
        );
    }
    assert_eq!(suppressions().await, json!([]));

    // Another workspace's link for the same address stops that workspace's
    // reports, not these.
    let elsewhere = kpi_notify::unsubscribe::Unsubscribe {
        workspace: kpi_core::WorkspaceId::parse("other").unwrap(),
        address: "a@example.com".into(),
        stream: kpi_core::email::MailStream::Reports,
        platform: false,
    }
    .token(&key())
    .unwrap();
    let answer = one_click_post(app.url(&format!("/v1/unsubscribe/{elsewhere}")))
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    assert_eq!(suppressions().await, json!([]));

    // The reader's own link: 200, twice, and the address is listed with why.
    for _ in 0..2 {
        let answer = one_click_post(url.clone()).await.unwrap();
        assert_eq!(answer.status(), 200);
        assert!(answer.text().await.unwrap().contains("unsubscribed"));
    }
    let listed = suppressions().await;
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["address"], "a@example.com");
    assert_eq!(listed[0]["stream"], "reports");
    assert!(
        listed[0]["reason"]
            .as_str()
            .unwrap()
            .starts_with("unsubscribed from KPI reports")
    );
    // Nobody else can put the address back.
    let lift = c
        .delete(app.url("/v1/workspaces/demo/suppressions/a@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(lift.status(), 409);
    // The address is asked instead; its own confirmation re-subscribes it.
    let ask = app
        .sandbox()
        .resend_outbox()
        .into_iter()
        .rfind(|e| e.subject == "Confirm that you want KPI Integrations notices")
        .expect("a confirmation email");
    assert_eq!(ask.to, vec!["a@example.com".to_owned()]);
    let confirm = ask
        .text
        .as_deref()
        .unwrap()
        .split_whitespace()
        .find(|w| w.contains("/v1/confirm/"))
        .unwrap()
        .to_owned();

    // The next report goes to b alone; other kinds of email still reach a.
    let before = app.sandbox().resend_outbox().len();
    due("2026-03-30T08:00:00Z").await;
    assert_eq!(scheduler.run_once().await.unwrap().reports_sent, 1);
    assert_eq!(report_to(before), vec!["b@example.com"]);
    let notice = kpi_notify::Message::Recovery(kpi_notify::messages::Recovery {
        integration_name: "Shop Analytics".into(),
        provider_name: "Google Analytics 4".into(),
        failing_since: "2026-03-01".into(),
        settings_url: app.url("/settings/integrations?workspace=demo"),
    });
    let delivered = kpi_app::mail::outbox(state)
        .deliver(
            &scope,
            &notice,
            "test/recovery",
            &["a@example.com".to_owned()],
            true,
        )
        .await
        .unwrap();
    assert_eq!(
        delivered,
        kpi_notify::Delivery::Sent(1),
        "a notice still reaches a"
    );

    // a confirms: reports reach a again.
    assert_eq!(anyone.post(&confirm).send().await.unwrap().status(), 200);
    assert_eq!(suppressions().await, json!([]));
    let before = app.sandbox().resend_outbox().len();
    due("2026-04-06T08:00:00Z").await;
    assert_eq!(scheduler.run_once().await.unwrap().reports_sent, 1);
    assert_eq!(report_to(before), vec!["a@example.com", "b@example.com"]);
}
