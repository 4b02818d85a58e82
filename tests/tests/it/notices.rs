//! The sync engine's notices by email on the dev server: a GA4 sync that
//! fails for good sends exactly one failure email (from the workspace's own
//! Resend account, through the sandbox), and its fix one recovery email.

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

/// The sandbox sends an outbox email's delivery event back, signed like Svix.
async fn event(app: &TestApp, email_id: &str, event: &str, times: u8) -> Value {
    let resp = kpi_tests::client()
        .post(app.url("/sandbox/_control/resend/events"))
        .json(&json!({"email_id": email_id, "event": event, "times": times}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.json().await.unwrap()
}

#[tokio::test]
async fn delivery_events_track_sends_and_hard_bounces_suppress_the_address() {
    let app = TestApp::spawn().await;
    let c = app.client_for(&["demo"]);
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
    c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{resend_id}")))
        .json(&json!({"settings": {"domain": "sandbox.example.com"}}))
        .send()
        .await
        .unwrap();
    c.put(app.url("/v1/workspaces/demo/notifications"))
        .json(
            &json!({"recipients": ["owner@example.com", "gone@example.com", "angry@example.com"]}),
        )
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
    let outbox = kpi_tests::wait_for_outbox(&app, 3).await;
    assert_eq!(outbox.len(), 3, "one email per recipient");
    assert!(
        outbox
            .iter()
            .all(|e| e.from == "notifications@sandbox.example.com")
    );
    let to = |address: &str| {
        outbox
            .iter()
            .find(|e| e.to == vec![address.to_owned()])
            .unwrap()
            .id
            .clone()
    };

    // Delivered, a hard bounce, a complaint; Svix retries one of them.
    let delivered = event(&app, &to("owner@example.com"), "delivered", 1).await;
    assert_eq!(delivered["answers"][0]["status"], 200, "{delivered}");
    let bounced = event(&app, &to("gone@example.com"), "bounced", 2).await;
    assert_eq!(bounced["answers"][0]["body"]["duplicate"], false);
    assert_eq!(
        bounced["answers"][1]["body"]["duplicate"], true,
        "the same svix-id once"
    );
    event(&app, &to("angry@example.com"), "complained", 1).await;
    // A soft bounce does not suppress.
    event(&app, &to("owner@example.com"), "soft_bounced", 1).await;

    let listed = kpi_tests::get_json(&c, app.url("/v1/workspaces/demo/suppressions")).await;
    let items = listed["items"].as_array().unwrap();
    let addresses: Vec<_> = items
        .iter()
        .map(|i| i["address"].as_str().unwrap())
        .collect();
    assert_eq!(
        addresses,
        vec!["angry@example.com", "gone@example.com"],
        "{listed}"
    );
    assert!(items[1]["reason"].as_str().unwrap().starts_with("bounced"));
    let other = app.client_for(&["other"]);
    let theirs = kpi_tests::get_json(&other, app.url("/v1/workspaces/other/suppressions")).await;
    assert_eq!(theirs["items"], json!([]), "per workspace");

    // A forged event changes nothing.
    let forged = kpi_tests::client()
        .post(app.url("/v1/webhooks/resend"))
        .header("svix-id", "msg_forged")
        .header("svix-timestamp", chrono::Utc::now().timestamp().to_string())
        .header("svix-signature", "v1,dGhpcyBpcyBub3QgYSBzaWduYXR1cmU=")
        .body(r#"{"type":"email.complained","created_at":"2026-11-28T00:00:00Z","data":{"email_id":"x","to":["owner@example.com"]}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);

    // The fix: the recovery email skips the suppressed addresses.
    for paused in [true, false] {
        c.patch(app.url(&format!("/v1/workspaces/demo/integrations/{id}")))
            .json(&json!({ "paused": paused }))
            .send()
            .await
            .unwrap();
    }
    c.post(app.url(&format!("/v1/workspaces/demo/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    app.wait_for_jobs(&c, "demo", &id, 2).await;
    let outbox = kpi_tests::wait_for_outbox(&app, 4).await;
    assert_eq!(
        outbox.len(),
        4,
        "the recovery email to the one deliverable address"
    );
    assert_eq!(outbox[3].to, vec!["owner@example.com".to_owned()]);

    // Lifting: a complaint comes with a warning; a second lift is 404.
    let lifted: Value = c
        .delete(app.url("/v1/workspaces/demo/suppressions/Angry@Example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lifted["address"], "angry@example.com");
    assert!(lifted["warning"].as_str().unwrap().contains("spam"));
    let lifted: Value = c
        .delete(app.url("/v1/workspaces/demo/suppressions/gone@example.com"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(lifted["warning"], Value::Null);
    let again = c
        .delete(app.url("/v1/workspaces/demo/suppressions/gone@example.com"))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 404);

    // The Resend integration's KPIs for today, from the tracked events: four
    // sent; delivered: the recovery email and the one complained about.
    event(&app, &outbox[3].id, "delivered", 1).await;
    let resp = c
        .post(app.url(&format!(
            "/v1/workspaces/demo/integrations/{resend_id}/sync"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, "demo", resend_id, 1).await;
    assert_eq!(jobs[0]["status"], "succeeded", "{:?}", jobs[0]);
    let today = chrono::Utc::now().date_naive();
    let value = |metric: &'static str| {
        let c = c.clone();
        let url = app.url(&format!(
            "/v1/workspaces/demo/kpis?metric={metric}&from={today}&to={today}&integration={resend_id}"
        ));
        async move {
            let series = kpi_tests::get_json(&c, url).await;
            series["points"][0]["value"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        }
    };
    let (sent, delivered) = (value("resend.sent").await, value("resend.delivered").await);
    assert_eq!((sent, delivered), (4.into(), 2.into()));
    assert_eq!(
        value("resend.bounced").await,
        2.into(),
        "one hard, one soft"
    );
    assert_eq!(value("resend.complained").await, 1.into());
    assert_eq!(value("resend.delivery_rate").await, delivered / sent);
}

/// The platform's own Resend account (no Resend integration in the
/// workspace) sends only to addresses that agreed, within a daily cap, and
/// never with a workspace's words in the subject.
#[tokio::test]
async fn the_platform_account_mails_only_addresses_that_agreed_within_its_cap() {
    let app = TestApp::spawn_with(&[
        ("KPI_SYSTEM_RESEND_API_KEY", "re_live_platform_123456"),
        (
            "KPI_SYSTEM_EMAIL_FROM",
            "KPI Integrations <notices@sandbox.example.com>",
        ),
        (
            "KPI_LINK_KEY",
            "test-link-key-of-at-least-thirty-two-characters",
        ),
    ])
    .await;
    let state = &app.server.state;
    let member = app.client_with_email(&["demo"], "owner@example.com");
    let save = || async {
        let saved = member
            .put(app.url("/v1/workspaces/demo/notifications"))
            .json(&json!({"recipients": ["owner@example.com", "stranger@example.com"]}))
            .send()
            .await
            .unwrap();
        assert_eq!(saved.status(), 200);
    };
    save().await;
    // The stranger gets one confirmation, the member (their own verified
    // address) nothing: saving the list is their consent.
    let outbox = app.sandbox().resend_outbox();
    assert_eq!(outbox.len(), 1, "{outbox:?}");
    let ask = &outbox[0];
    assert_eq!(ask.to, vec!["stranger@example.com".to_owned()]);
    assert_eq!(
        ask.subject,
        "Confirm that you want KPI Integrations notices"
    );
    assert!(ask.headers.is_empty(), "no list to leave yet");
    let text = ask.text.as_deref().unwrap();
    let link = text
        .split_whitespace()
        .find(|w| w.contains("/v1/confirm/"))
        .unwrap_or_else(|| panic!("{text}"))
        .to_owned();
    save().await;
    assert_eq!(app.sandbox().resend_outbox().len(), 1, "asked once");

    // A notice whose integration name is a phishing line.
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let notice = |n: u32| {
        kpi_notify::Message::Recovery(kpi_notify::messages::Recovery {
            integration_name: "Your account is locked: verify at evil.example".into(),
            provider_name: "Google Analytics 4".into(),
            failing_since: format!("2026-03-0{n}"),
            settings_url: app.url("/settings/integrations?workspace=demo"),
        })
    };
    let recipients = [
        "owner@example.com".to_owned(),
        "stranger@example.com".to_owned(),
    ];
    let outbox = kpi_app::mail::outbox(state);
    let sent_to = |since: usize| -> Vec<String> {
        app.sandbox()
            .resend_outbox()
            .into_iter()
            .skip(since)
            .flat_map(|e| e.to)
            .collect()
    };
    let before = app.sandbox().resend_outbox().len();
    let d = outbox
        .deliver(&scope, &notice(1), "test/notice/1", &recipients, true)
        .await
        .unwrap();
    assert_eq!(d, kpi_notify::Delivery::Sent(1));
    assert_eq!(
        sent_to(before),
        vec!["owner@example.com"],
        "nothing to the stranger yet"
    );
    let email = app.sandbox().resend_outbox().pop().unwrap();
    assert_eq!(
        email.subject,
        "A Google Analytics 4 integration is syncing again"
    );
    assert!(!email.subject.contains("evil"));

    // Opening the link changes nothing; confirming does.
    let anyone = reqwest::Client::new();
    assert_eq!(anyone.get(&link).send().await.unwrap().status(), 200);
    let before = app.sandbox().resend_outbox().len();
    outbox
        .deliver(&scope, &notice(2), "test/notice/2", &recipients, true)
        .await
        .unwrap();
    assert_eq!(sent_to(before), vec!["owner@example.com"]);
    let tampered = format!("{}x", &link[..link.len() - 1]);
    assert_eq!(anyone.post(&tampered).send().await.unwrap().status(), 400);
    assert_eq!(anyone.post(&link).send().await.unwrap().status(), 200);
    let before = app.sandbox().resend_outbox().len();
    outbox
        .deliver(&scope, &notice(3), "test/notice/3", &recipients, true)
        .await
        .unwrap();
    let mut to = sent_to(before);
    to.sort();
    assert_eq!(to, vec!["owner@example.com", "stranger@example.com"]);

    // The daily cap, in a workspace of its own: two platform emails a day,
    // then none.
    let (busy_scope, busy_owner) = member_of(&app, "busy", "busy-owner@example.com").await;
    let capped = kpi_notify::Outbox {
        store: outbox.store.clone(),
        vault: outbox.vault.clone(),
        mailer: outbox.mailer.clone(),
        mail_provider: outbox.mail_provider,
        platform: outbox.platform.clone(),
        clock: outbox.clock.clone(),
        links: outbox.links.clone(),
        platform_daily_cap: 2,
    };
    let mut delivered = Vec::new();
    for n in 4..7 {
        delivered.push(
            capped
                .deliver(
                    &busy_scope,
                    &notice(n),
                    &format!("test/busy/{n}"),
                    &busy_owner,
                    true,
                )
                .await
                .unwrap(),
        );
    }
    assert_eq!(
        delivered[..2],
        [kpi_notify::Delivery::Sent(1), kpi_notify::Delivery::Sent(1)]
    );
    assert!(
        matches!(delivered[2], kpi_notify::Delivery::NotSent(_)),
        "{delivered:?}"
    );

    // A hard bounce of a platform email in one workspace stops the platform's
    // account for that address in every workspace.
    let bounced = app
        .sandbox()
        .resend_outbox()
        .into_iter()
        .rfind(|e| e.to == ["owner@example.com"])
        .unwrap();
    event(&app, &bounced.id, "bounced", 1).await;
    let (third_scope, _) = member_of(&app, "third", "owner@example.com").await;
    let d = outbox
        .deliver(
            &third_scope,
            &notice(7),
            "test/third/7",
            &["owner@example.com".to_owned()],
            true,
        )
        .await
        .unwrap();
    assert!(matches!(d, kpi_notify::Delivery::NotSent(_)), "{d:?}");
}

/// A workspace whose signed-in member lists their own address: its scope,
/// and that list.
async fn member_of(
    app: &TestApp,
    ws: &str,
    email: &str,
) -> (kpi_core::WorkspaceScope, Vec<String>) {
    let c = app.client_with_email(&[ws], email);
    let saved = c
        .put(app.url(&format!("/v1/workspaces/{ws}/notifications")))
        .json(&json!({"recipients": [email]}))
        .send()
        .await
        .unwrap();
    assert_eq!(saved.status(), 200);
    (
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse(ws).unwrap(), "test"),
        vec![email.to_owned()],
    )
}

/// A body of Resend's `email.bounced` event for the sandbox email `id`.
fn bounce_of(id: &str, to: &str) -> String {
    json!({"type": "email.bounced", "created_at": chrono::Utc::now().to_rfc3339(),
        "data": {"email_id": id, "to": [to], "subject": "s", "from": "kpi@sandbox.example.com",
            "bounce": {"type": "Permanent", "subType": "General", "message": "No such mailbox."}}})
    .to_string()
}

/// Posts `body` to `url` signed the Svix way with `secret`.
async fn signed_post(url: &str, body: &str, secret: &str) -> reqwest::StatusCode {
    let id = format!("msg_{}", uuid::Uuid::new_v4().simple());
    let now = chrono::Utc::now().timestamp();
    kpi_tests::client()
        .post(url)
        .header("content-type", "application/json")
        .header("svix-id", &id)
        .header("svix-timestamp", now.to_string())
        .header(
            "svix-signature",
            kpi_sandbox::resend_events::svix_signature(secret, &id, now, body.as_bytes()),
        )
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .status()
}

/// A full-access Resend key registers an endpoint of its own when it
/// connects; events signed with its secret are applied to its own emails
/// only, any other secret is refused, and a disconnect removes the endpoint.
#[tokio::test]
async fn each_resend_account_gets_its_own_webhook_endpoint() {
    let app = TestApp::spawn().await;
    let connect = |ws: &'static str, key: &'static str| {
        let app = &app;
        async move {
            let c = app.client_for(&[ws]);
            let made = app.connect_resend(&c, ws, key).await;
            let id = made["id"].as_str().unwrap().to_owned();
            (c, id, made)
        }
    };
    let (c, demo, made) = connect("demo", "re_live_123456789").await;
    assert_eq!(made["webhooks"]["subscribed"], true, "{made}");
    let hooks = app.sandbox().resend_webhooks();
    assert_eq!(hooks.len(), 1);
    let endpoint = app.url(&format!("/v1/webhooks/resend/{demo}"));
    assert_eq!(hooks[0].endpoint, endpoint);
    for event in ["email.delivered", "email.bounced", "email.complained"] {
        assert!(
            hooks[0].events.iter().any(|e| e == event),
            "{:?}",
            hooks[0].events
        );
    }
    let secret = hooks[0].signing_secret.clone();
    let (_, other, _) = connect("other", "re_live_otherkey123").await;
    let other_secret = app
        .sandbox()
        .resend_webhooks()
        .into_iter()
        .find(|h| h.endpoint.ends_with(&other))
        .unwrap()
        .signing_secret;

    // An email of demo's own account.
    let state = &app.server.state;
    let scope =
        kpi_core::WorkspaceScope::for_system(kpi_core::WorkspaceId::parse("demo").unwrap(), "test");
    let notice = kpi_notify::Message::Recovery(kpi_notify::messages::Recovery {
        integration_name: "Shop".into(),
        provider_name: "Google Analytics 4".into(),
        failing_since: "2026-03-01".into(),
        settings_url: app.url("/settings/integrations?workspace=demo"),
    });
    kpi_app::mail::outbox(state)
        .deliver(
            &scope,
            &notice,
            "test/own",
            &["gone@example.com".to_owned()],
            false,
        )
        .await
        .unwrap();
    let email = app.sandbox().resend_outbox().pop().unwrap();
    let body = bounce_of(&email.id, "gone@example.com");
    let suppressed = || async {
        kpi_tests::get_json(&c, app.url("/v1/workspaces/demo/suppressions")).await["items"]
            .as_array()
            .unwrap()
            .len()
    };

    // Other secrets — another integration's, the platform's — get 401, and
    // the other integration's endpoint does not touch demo's email.
    let platform = app.sandbox().config().resend_webhook_secret.clone();
    assert_eq!(signed_post(&endpoint, &body, &other_secret).await, 401);
    assert_eq!(signed_post(&endpoint, &body, &platform).await, 401);
    let other_endpoint = app.url(&format!("/v1/webhooks/resend/{other}"));
    assert_eq!(
        signed_post(&other_endpoint, &body, &other_secret).await,
        200
    );
    let unknown = app.url(&format!("/v1/webhooks/resend/{}", uuid::Uuid::new_v4()));
    assert_eq!(signed_post(&unknown, &body, &secret).await, 401);
    assert_eq!(suppressed().await, 0, "nothing applied");

    // Its own secret: applied.
    assert_eq!(signed_post(&endpoint, &body, &secret).await, 200);
    assert_eq!(suppressed().await, 1);

    // A sending-only key may not register one: the page says what to do,
    // and takes the secret of the webhook the user adds by hand.
    let (third_client, third, limited) = connect("third", "re_send_12345678").await;
    assert_eq!(limited["webhooks"]["subscribed"], false, "{limited}");
    let why = limited["webhooks"]["message"].as_str().unwrap();
    let third_endpoint = app.url(&format!("/v1/webhooks/resend/{third}"));
    assert!(why.contains(&third_endpoint), "{why}");
    let third_url = app.url(&format!("/v1/workspaces/third/integrations/{third}"));
    let bad = third_client
        .patch(&third_url)
        .json(&json!({"webhook_secret": "not-a-secret"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 422);
    let manual_secret = "whsec_bWFudWFsbHktYWRkZWQtd2ViaG9vay1rZXk=";
    let saved: Value = third_client
        .patch(&third_url)
        .json(&json!({"webhook_secret": manual_secret}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(saved["webhooks"]["subscribed"], true, "{saved}");
    assert!(
        !saved.to_string().contains("bWFudWFsbHk"),
        "never shown again"
    );
    let third_scope = kpi_core::WorkspaceScope::for_system(
        kpi_core::WorkspaceId::parse("third").unwrap(),
        "test",
    );
    kpi_app::mail::outbox(state)
        .deliver(
            &third_scope,
            &notice,
            "test/third",
            &["lost@example.com".to_owned()],
            false,
        )
        .await
        .unwrap();
    let sent = app.sandbox().resend_outbox().pop().unwrap();
    assert_eq!(sent.to, vec!["lost@example.com".to_owned()]);
    let third_body = bounce_of(&sent.id, "lost@example.com");
    assert_eq!(
        signed_post(&third_endpoint, &third_body, &secret).await,
        401
    );
    assert_eq!(
        signed_post(&third_endpoint, &third_body, manual_secret).await,
        200
    );
    let third_suppressed =
        kpi_tests::get_json(&third_client, app.url("/v1/workspaces/third/suppressions")).await;
    assert_eq!(
        third_suppressed["items"][0]["address"], "lost@example.com",
        "{third_suppressed}"
    );

    // Disconnecting removes the endpoint at Resend.
    let gone = c
        .delete(app.url(&format!("/v1/workspaces/demo/integrations/{demo}")))
        .send()
        .await
        .unwrap();
    assert!(gone.status().is_success(), "{}", gone.status());
    let left: Vec<String> = app
        .sandbox()
        .resend_webhooks()
        .into_iter()
        .map(|h| h.endpoint)
        .collect();
    assert_eq!(left, vec![other_endpoint]);
    assert_eq!(
        signed_post(&endpoint, &body, &secret).await,
        401,
        "no endpoint any more"
    );
}
