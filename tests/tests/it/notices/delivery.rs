//! Delivery events from Resend: tracked sends, suppressed addresses, per-account endpoints.

use kpi_tests::app::TestApp;
use serde_json::{Value, json};

use super::event;

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
