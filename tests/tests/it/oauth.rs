//! OAuth connect flows through the sandbox consent pages, and every way a
//! callback can be abused.

use kpi_sandbox::Faults;
use kpi_tests::app::TestApp;
use kpi_tests::flows::{consent, dev_login, finish, param};
use serde_json::{Value, json};

async fn integrations(app: &TestApp, ws: &str) -> Vec<Value> {
    let c = app.client_for(&[ws]);
    let list: Value =
        kpi_tests::get_json(&c, app.url(&format!("/v1/workspaces/{ws}/integrations"))).await;
    list["items"].as_array().unwrap().clone()
}

async fn signed_in(app: &TestApp) -> reqwest::Client {
    let browser = app.browser();
    dev_login(&browser, &app.base, "demo").await;
    browser
}

#[tokio::test]
async fn ga4_connect_pick_property_and_reconnect() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
    let (status, pairs, target) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 303, "{target}");
    assert!(
        target.contains("/settings/integrations?workspace=demo"),
        "{target}"
    );
    assert_eq!(param(&pairs, "connected"), Some("ga4"));
    let id = param(&pairs, "integration").unwrap().to_owned();

    let c = app.client_for(&["demo"]);
    let item = |s: &str| app.url(&format!("/v1/workspaces/demo/integrations/{id}{s}"));
    let got: Value = kpi_tests::get_json(&c, item("")).await;
    assert_eq!(got["status"], "needs_configuration");
    assert_eq!(got["has_credentials"], true);

    let options: Value = kpi_tests::get_json(&c, item("/options")).await;
    assert_eq!(options["setting"], "property");
    assert_eq!(options["options"].as_array().unwrap().len(), 3);
    assert_eq!(options["options"][0]["group"], "Sandbox Shop");

    // A property the user cannot read is refused; one from the options connects.
    let resp = c
        .patch(item(""))
        .json(&json!({"settings": {"property": "properties/999"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    let patched: Value = c
        .patch(item(""))
        .json(&json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"], "connected");
    assert!(patched["next_sync_at"].is_string(), "scheduled right away");
    let health: Value = kpi_tests::get_json(&c, item("/health")).await;
    assert_eq!(health["state"], "healthy");

    // Reconnecting updates the same integration instead of adding one.
    let back = consent(
        &browser,
        &app.base,
        "ga4",
        &format!("workspace=demo&integration={id}"),
        "allow",
        true,
    )
    .await;
    let (_, pairs, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(param(&pairs, "integration"), Some(id.as_str()));
    assert_eq!(integrations(&app, "demo").await.len(), 1);
    let again: Value = kpi_tests::get_json(&c, item("")).await;
    assert_eq!(again["status"], "connected", "the property choice is kept");
    assert_eq!(app.sandbox().counters().google_code_exchanges, 2);
}

#[tokio::test]
async fn meta_connect_uses_a_long_lived_token_and_lists_ad_accounts() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let back = consent(
        &browser,
        &app.base,
        "meta_ads",
        "workspace=demo&return_to=/settings/integrations%3Fworkspace%3Ddemo%26tab%3Dads",
        "allow",
        true,
    )
    .await;
    let (status, pairs, target) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 303);
    assert!(target.contains("tab=ads"), "return_to kept: {target}");
    assert_eq!(param(&pairs, "connected"), Some("meta_ads"));
    let id = param(&pairs, "integration").unwrap().to_owned();
    let counters = app.sandbox().counters();
    assert_eq!(
        (
            counters.meta_code_exchanges,
            counters.meta_long_lived_exchanges
        ),
        (1, 1)
    );

    let c = app.client_for(&["demo"]);
    let options: Value = kpi_tests::get_json(
        &c,
        app.url(&format!("/v1/workspaces/demo/integrations/{id}/options")),
    )
    .await;
    assert_eq!(options["setting"], "ad_account");
    assert_eq!(options["options"][0]["id"], "act_1000000001");
    assert_eq!(options["options"][0]["details"]["currency"], "EUR");
}

#[tokio::test]
async fn denial_and_exchange_failures_store_nothing() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "deny", true).await;
    let (status, pairs, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 303);
    assert_eq!(param(&pairs, "oauth_error"), Some("access_denied"));

    // The user unticks the Analytics scope.
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", false).await;
    let (_, pairs, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(param(&pairs, "oauth_error"), Some("scope_missing"));

    // The provider fails the code exchange.
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
    app.sandbox().set_faults(Faults {
        google_token: Some(500),
        ..Faults::default()
    });
    let (_, pairs, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(param(&pairs, "oauth_error"), Some("exchange_failed"));
    app.sandbox().set_faults(Faults::default());

    assert!(
        integrations(&app, "demo").await.is_empty(),
        "nothing stored"
    );
}

#[tokio::test]
async fn replayed_forged_cookieless_and_mixed_up_states_are_refused() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;

    // Replay: the same callback twice.
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
    let (status, _, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 303);
    let (status, _, page) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("expired or was already used"), "{page}");
    assert_eq!(integrations(&app, "demo").await.len(), 1);

    // Forged state.
    let forged = format!(
        "{}/v1/oauth/ga4/callback?code=4/0abc&state=forged-state-value",
        app.base
    );
    let (status, _, _) = finish(&browser, &app.base, &forged).await;
    assert_eq!(status, 400);

    // Cookie-less: the callback opened in another browser.
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
    let stranger = app.browser();
    let (status, _, page) = finish(&stranger, &app.base, &back.callback).await;
    assert_eq!(status, 400);
    assert!(page.contains("another browser"), "{page}");
    // ...and the state is spent: the right browser cannot use it afterwards either.
    let (status, _, _) = finish(&browser, &app.base, &back.callback).await;
    assert_eq!(status, 400);

    // Mix-up: a state issued for Google arrives at Meta's callback.
    let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
    let mixed = back
        .callback
        .replace("/v1/oauth/ga4/callback", "/v1/oauth/meta_ads/callback");
    let (status, _, page) = finish(&browser, &app.base, &mixed).await;
    assert_eq!(status, 400);
    assert!(page.contains("different provider"), "{page}");

    // No state at all, and an unknown provider.
    let (status, _, _) = finish(
        &browser,
        &app.base,
        &format!("{}/v1/oauth/ga4/callback?code=x", app.base),
    )
    .await;
    assert_eq!(status, 400);
    let (status, _, _) = finish(
        &browser,
        &app.base,
        &format!("{}/v1/oauth/hubspot/callback?state=x", app.base),
    )
    .await;
    assert_eq!(status, 404);

    assert_eq!(
        integrations(&app, "demo").await.len(),
        1,
        "only the first connect stored anything"
    );
}

#[tokio::test]
async fn expired_states_are_refused() {
    let app = TestApp::spawn().await;
    let (state_value, binding) =
        kpi_tests::flows::plant_oauth_state(&app, None, -chrono::Duration::seconds(1)).await;
    let resp = kpi_tests::client()
        .get(app.url(&format!(
            "/v1/oauth/ga4/callback?code=4/0x&state={state_value}"
        )))
        .header("cookie", format!("kpi_oauth_ga4={binding}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(integrations(&app, "demo").await.is_empty());
}

/// `return_to` values that name another site, directly or once normalised.
const OFF_SITE: &[&str] = &[
    "https://evil.example/x",
    "//evil.example/x",
    "/\\evil.example",
    "javascript:alert(1)",
    "https:evil.example",
    "/.//evil.example",
    "/%2e//evil.example",
    "/a/..//evil.example",
    "/%2f%2fevil.example",
    "/\t/evil.example",
    "/\n/evil.example",
    "//user@evil.example",
    "//ｅｖｉｌ.example/x",
];

/// A consumed-state callback whose stored `return_to` is `stored` (as if a
/// record had been written before the start-time check existed).
async fn callback_with_stored_return(
    app: &TestApp,
    stored: &str,
    query: &str,
) -> reqwest::Response {
    let (state_value, binding) =
        kpi_tests::flows::plant_oauth_state(app, Some(stored), chrono::Duration::minutes(5)).await;
    kpi_tests::client_builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(app.url(&format!(
            "/v1/oauth/ga4/callback?state={state_value}&{query}"
        )))
        .header("cookie", format!("kpi_oauth_ga4={binding}"))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_callback_only_ever_returns_to_this_site() {
    let app = TestApp::spawn().await;
    let own = url::Url::parse(&app.base).unwrap();
    for stored in OFF_SITE {
        for query in ["error=access_denied", "error=server_error", "nothing=1"] {
            let resp = callback_with_stored_return(&app, stored, query).await;
            assert_eq!(resp.status(), 303, "{stored:?} {query}");
            let location = resp.headers()["location"].to_str().unwrap().to_owned();
            // Absolute, on this site's origin, never a scheme-relative path.
            let target = url::Url::parse(&location).unwrap_or_else(|e| panic!("{location}: {e}"));
            assert_eq!(target.origin(), own.origin(), "{stored:?} → {location}");
            assert!(!target.path().starts_with("//"), "{stored:?} → {location}");
            assert!(location.contains("oauth_error="), "{location}");
        }
    }
    let resp = callback_with_stored_return(
        &app,
        "/settings/integrations?tab=ads",
        "error=access_denied",
    )
    .await;
    let location = resp.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(
        location,
        format!(
            "{}/settings/integrations?tab=ads&oauth_error=access_denied&provider=ga4",
            app.base
        )
    );
    // The dev login follows the same rule.
    for bad in OFF_SITE {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("workspace", "demo")
            .append_pair("return_to", bad)
            .finish();
        let resp = app
            .browser()
            .get(app.url(&format!("/dev/login?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
}

#[tokio::test]
async fn start_refuses_off_site_returns_and_foreign_workspaces() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    for bad in OFF_SITE {
        let q = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("workspace", "demo")
            .append_pair("return_to", bad)
            .finish();
        let resp = browser
            .get(app.url(&format!("/v1/oauth/ga4/start?{q}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 422, "{bad}");
    }
    let resp = browser
        .get(app.url("/v1/oauth/ga4/start?workspace=not-mine"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
    let resp = browser
        .get(app.url("/v1/oauth/resend/start?workspace=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404, "Resend has no OAuth");
    let resp = kpi_tests::client()
        .get(app.url("/v1/oauth/ga4/start?workspace=demo"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
}

#[tokio::test]
async fn disconnect_revokes_and_erases_even_when_the_provider_is_down() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    let c = app.client_for(&["demo"]);
    let mut ids = Vec::new();
    for _ in 0..2 {
        let back = consent(&browser, &app.base, "ga4", "workspace=demo", "allow", true).await;
        let (_, pairs, _) = finish(&browser, &app.base, &back.callback).await;
        ids.push(param(&pairs, "integration").unwrap().to_owned());
    }
    // Both integrations hold grants of the same Google user: revoking for the
    // first would cut off the second too, so its credentials are only erased.
    let resp: Value = c
        .delete(app.url(&format!("/v1/workspaces/demo/integrations/{}", ids[0])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["provider_access"], "kept_for_other_integrations",
        "{resp}"
    );
    assert_eq!(app.sandbox().counters().google_revocations, 0);

    app.sandbox().set_faults(Faults {
        google_revoke: Some(503),
        ..Faults::default()
    });
    let resp: Value = c
        .delete(app.url(&format!("/v1/workspaces/demo/integrations/{}", ids[1])))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        resp["provider_access"], "not_revoked",
        "Google is down: {resp}"
    );
    assert!(
        resp["detail"].as_str().unwrap().contains("erased"),
        "{resp}"
    );
    for id in &ids {
        let got: Value = kpi_tests::get_json(
            &c,
            app.url(&format!("/v1/workspaces/demo/integrations/{id}")),
        )
        .await;
        assert_eq!(got["status"], "disconnected");
        assert_eq!(
            got["has_credentials"], false,
            "erased whatever the provider said"
        );
    }
}

/// A member of workspace A disconnecting does not break workspace B's
/// integration connected with the same Google account; the last one revokes.
#[tokio::test]
async fn disconnect_revokes_only_when_no_other_integration_shares_the_account() {
    let app = TestApp::spawn().await;
    let mut ids = Vec::new();
    for ws in ["ws-a", "ws-b"] {
        let browser = app.browser();
        dev_login(&browser, &app.base, ws).await;
        let back = consent(
            &browser,
            &app.base,
            "ga4",
            &format!("workspace={ws}"),
            "allow",
            true,
        )
        .await;
        let (_, pairs, _) = finish(&browser, &app.base, &back.callback).await;
        ids.push((ws, param(&pairs, "integration").unwrap().to_owned()));
    }
    let delete = |ws: &str, id: &str| {
        let c = app.client_for(&[ws]);
        let url = app.url(&format!("/v1/workspaces/{ws}/integrations/{id}"));
        async move {
            c.delete(url)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let first = delete(ids[0].0, &ids[0].1).await;
    assert_eq!(
        first["provider_access"], "kept_for_other_integrations",
        "{first}"
    );
    assert_eq!(app.sandbox().counters().google_revocations, 0);
    // Workspace B's integration still works.
    let b = app.client_for(&["ws-b"]);
    let health: Value = kpi_tests::get_json(
        &b,
        app.url(&format!(
            "/v1/workspaces/ws-b/integrations/{}/health",
            ids[1].1
        )),
    )
    .await;
    assert_eq!(health["state"], "healthy");
    let last = delete(ids[1].0, &ids[1].1).await;
    assert_eq!(last["provider_access"], "revoked", "{last}");
    assert_eq!(app.sandbox().counters().google_revocations, 1);
}

#[tokio::test]
async fn stored_tokens_are_encrypted() {
    let app = TestApp::spawn().await;
    let browser = signed_in(&app).await;
    for provider in ["ga4", "meta_ads"] {
        let back = consent(
            &browser,
            &app.base,
            provider,
            "workspace=demo",
            "allow",
            true,
        )
        .await;
        let (status, _, _) = finish(&browser, &app.base, &back.callback).await;
        assert_eq!(status, 303);
    }
    assert_eq!(integrations(&app, "demo").await.len(), 2);
    let db = app.dir.join("kpi.db");
    let raw = std::fs::read(&db).unwrap();
    let mut raw_all = raw.clone();
    if let Ok(wal) = std::fs::read(db.with_extension("db-wal")) {
        raw_all.extend(wal);
    }
    let text = String::from_utf8_lossy(&raw_all);
    assert!(
        text.contains("needs_configuration"),
        "the scan reads the records"
    );
    for token_prefix in ["ya29.sbx-", "1//sbx-", "EAAsbx"] {
        assert!(
            !text.contains(token_prefix),
            "plaintext token {token_prefix} in the database"
        );
    }
}
