//! The platform's own Resend account: agreed addresses only, within a daily cap.

use kpi_tests::app::TestApp;
use serde_json::json;

use super::event;

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
