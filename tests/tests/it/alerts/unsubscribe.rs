//! One-click unsubscribe: one kind of email to one address, and nothing else.

use kpi_tests::app::TestApp;
use serde_json::json;

use super::{one_click, workspace};

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
