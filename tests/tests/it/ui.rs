//! The pages in a real headless Chromium against the dev server with the
//! provider sandbox: connecting through the consent page, the picker, the
//! settings dialog, disconnect, the Resend key form, the admin dashboard, CSRF,
//! and on every page at phone and desktop width: a screenshot, axe-core with no
//! serious violations, the CSP header and a clean console.

use kpi_tests::app::TestApp;
use kpi_tests::browser::Browser;
use kpi_tests::get_json;
use serde_json::{Value, json};

const WS: &str = "demo";

/// A GA4 integration connected (consent through the API), its property
/// chosen and one sync done: what most page tests start from.
async fn synced_ga4(app: &TestApp) -> String {
    let id = app.connect_ga4(WS).await;
    let c = app.client_for(&[WS]);
    let resp = c
        .patch(app.url(&format!("/v1/workspaces/{WS}/integrations/{id}")))
        .json(&json!({"settings": {"property": "properties/100001"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = c
        .post(app.url(&format!("/v1/workspaces/{WS}/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let jobs = app.wait_for_jobs(&c, WS, &id, 1).await;
    assert_eq!(jobs[0]["status"], "succeeded", "{:?}", jobs[0]);
    id
}

async fn integration(app: &TestApp, id: &str) -> Value {
    get_json(
        &app.client_for(&[WS]),
        app.url(&format!("/v1/workspaces/{WS}/integrations/{id}")),
    )
    .await
}

async fn sign_in(b: &Browser, app: &TestApp, operator: bool) {
    let extra = if operator {
        "&operator=true&return_to=/settings/integrations?workspace=demo"
    } else {
        ""
    };
    b.goto(&app.url(&format!("/dev/login?workspace={WS}{extra}")))
        .await;
    b.find("main h1").await;
}

async fn select(b: &Browser, css: &str, value: &str) {
    b.find(css).await.select_by_value(value).await.unwrap();
}

#[tokio::test]
async fn ga4_connects_through_consent_then_the_picker_then_a_sparkline() {
    let app = TestApp::spawn().await;
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    let card = "article[data-provider=ga4]";
    assert_eq!(
        b.text(&format!("{card} [data-badge]")).await,
        "Not connected"
    );

    b.click(&format!("{card} a[data-connect]")).await;
    // The sandbox's consent page, then back to the settings page.
    b.click("#allow").await;
    let toast = b.wait_for_text("[data-toast]", "connected").await;
    assert!(toast.contains("Choose what to sync"), "{toast}");

    // The picker opens by itself and fills from the provider.
    b.find("dialog[open] select[data-choice]").await;
    b.wait_until("the property list", || async {
        b.script("return document.querySelectorAll('dialog[open] select[data-choice] option:not([value=\"\"])').length")
            .await
            .as_u64()
            .unwrap_or(0)
            >= 2
    })
    .await;
    b.screenshot("integrations-picker-1280").await;
    select(&b, "dialog[open] select[data-choice]", "properties/100001").await;
    b.click("dialog[open] form[data-action=save-settings] button[type=submit]")
        .await;

    // Saved, the first sync runs, and the card polls until it lands.
    b.find(&format!("{card} [data-sparkline] svg")).await;
    assert_eq!(b.text(&format!("{card} [data-badge]")).await, "Connected");
    let account = b.text(&format!("{card} [data-account]")).await;
    assert_eq!(account, "Shop Web (Europe/Berlin, EUR)");
    let label = b
        .find(&format!("{card} [data-sparkline] svg"))
        .await
        .attr("aria-label")
        .await
        .unwrap()
        .unwrap();
    assert!(label.starts_with("Sessions, last 30 days"), "{label}");
    b.screenshot("integrations-connected-1280").await;
    assert_eq!(b.console_errors().await, Vec::<String>::new());
    b.close().await;
}

#[tokio::test]
async fn meta_consent_denied_shows_what_to_do() {
    let app = TestApp::spawn().await;
    let b = Browser::start(375).await;
    sign_in(&b, &app, false).await;
    b.click("article[data-provider=meta_ads] a[data-connect]")
        .await;
    b.click("#deny").await;
    let toast = b.wait_for_text("[data-toast]", "declined").await;
    assert!(toast.contains("Meta Ads"), "{toast}");
    assert!(toast.contains("start again and allow access"), "{toast}");
    assert!(b.has("[data-toast=bad]").await);
    b.screenshot("integrations-oauth-denied-375").await;
    // Nothing connected.
    assert_eq!(
        b.text("article[data-provider=meta_ads] [data-badge]").await,
        "Not connected"
    );
    b.close().await;
}

#[tokio::test]
async fn a_bad_resend_key_is_an_inline_error_and_nothing_is_stored() {
    let app = TestApp::spawn().await;
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    let form = "article[data-provider=resend] form[data-action=connect-key]";
    let input = format!("{form} input[name=api_key]");

    // Not even shaped like a key: refused on the page.
    b.type_into(&input, "not a key").await;
    b.click(&format!("{form} button[type=submit]")).await;
    let error = b
        .wait_for_text(&format!("{form} [data-error]"), "not a Resend API key")
        .await;
    assert!(!error.is_empty());
    assert_eq!(b.value(&input).await, "", "the field is cleared");

    // Shaped like one, but Resend refuses it.
    b.type_into(&input, "re_bad").await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_until("the server's answer", || async {
        let t = b.text(&format!("{form} [data-error]")).await;
        !t.is_empty() && !t.contains("not a Resend API key")
    })
    .await;
    assert_eq!(b.value(&input).await, "", "the field is cleared");
    assert_eq!(
        b.find(&input)
            .await
            .attr("aria-invalid")
            .await
            .unwrap()
            .as_deref(),
        Some("true")
    );
    b.screenshot("integrations-resend-bad-key-1280").await;
    let list = get_json(
        &app.client_for(&[WS]),
        app.url(&format!("/v1/workspaces/{WS}/integrations")),
    )
    .await;
    assert_eq!(list["items"], json!([]), "nothing stored");

    // A good key connects.
    b.type_into(&input, "re_live_key_12345678").await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_text("[data-toast]", "is connected").await;
    let badge = b.text("article[data-provider=resend] [data-badge]").await;
    assert!(
        badge == "Connected" || badge == "Needs configuration",
        "{badge}"
    );
    assert!(!b.has(form).await, "the key form is gone once connected");
    b.close().await;
}

/// A sending-only Resend key cannot register its webhook: the settings
/// dialog names the URL to add in Resend and takes the signing secret.
#[tokio::test]
async fn a_sending_only_resend_key_takes_its_webhook_secret_in_the_dialog() {
    let app = TestApp::spawn().await;
    let made: Value = app
        .client_for(&[WS])
        .post(app.url(&format!("/v1/workspaces/{WS}/integrations")))
        .json(&json!({"provider": "resend", "api_key": "re_send_12345678"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = made["id"].as_str().unwrap().to_owned();
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    let dialog = format!("#settings-{id}");
    b.click(&format!("#card-{id} [data-open=settings-{id}]"))
        .await;
    let form = format!("{dialog} form[data-action=webhook-secret]");
    let endpoint = app.url(&format!("/v1/webhooks/resend/{id}"));
    assert!(b.text(&form).await.contains(&endpoint));
    let input = format!("{form} input[name=webhook_secret]");
    b.type_into(&input, "not a secret").await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_text(&format!("{form} [data-error]"), "whsec_")
        .await;
    assert_eq!(b.value(&input).await, "", "the field is cleared");
    b.type_into(&input, "whsec_bWFudWFsbHktYWRkZWQtd2ViaG9vay1rZXk=")
        .await;
    b.click(&format!("{form} button[type=submit]")).await;
    b.wait_for_text("[data-toast]", "Webhook secret saved")
        .await;
    assert_eq!(integration(&app, &id).await["webhooks"]["subscribed"], true);
    assert!(!b.has(&form).await, "asked no more once saved");
    b.close().await;
}

#[tokio::test]
async fn the_settings_dialog_changes_frequency_pauses_and_disconnects() {
    let app = TestApp::spawn().await;
    let id = synced_ga4(&app).await;
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    let card = format!("#card-{id}");
    let dialog = format!("#settings-{id}");

    b.click(&format!("{card} [data-open=settings-{id}]")).await;
    select(
        &b,
        &format!("{dialog} select[name=sync_interval_minutes]"),
        "60",
    )
    .await;
    b.screenshot("integrations-settings-1280").await;
    b.click(&format!(
        "{dialog} form[data-action=save-settings] button[type=submit]"
    ))
    .await;
    b.wait_for_text("[data-toast]", "Settings saved").await;
    assert_eq!(integration(&app, &id).await["sync_interval_minutes"], 60);
    assert!(b.text(&card).await.contains("syncing every hour"));

    // Pause from the dialog.
    b.click(&format!("{card} [data-open=settings-{id}]")).await;
    b.click(&format!("{dialog} button[data-body*=\"true\"]"))
        .await;
    b.wait_for_text(&format!("{card} [data-badge]"), "Paused")
        .await;
    assert_eq!(integration(&app, &id).await["status"], "paused");

    // The card's own action resumes.
    b.click(&format!("{card} .actions button.primary")).await;
    b.wait_for_text(&format!("{card} [data-badge]"), "Connected")
        .await;
    assert_eq!(integration(&app, &id).await["status"], "connected");

    // Disconnect is behind a confirmation that says what happens.
    b.click(&format!("{card} [data-open=settings-{id}]")).await;
    b.click(&format!("{dialog} button[data-open=disconnect-{id}]"))
        .await;
    let confirm = b.text(&format!("#disconnect-{id}")).await;
    assert!(
        confirm.contains("erase the stored credentials"),
        "{confirm}"
    );
    assert!(confirm.contains("KPIs synced so far stay"), "{confirm}");
    b.screenshot("integrations-disconnect-confirm-1280").await;
    b.click(&format!("#disconnect-{id} button[data-action=disconnect]"))
        .await;
    b.wait_for_text(&format!("{card} [data-badge]"), "Disconnected")
        .await;
    let after = integration(&app, &id).await;
    assert_eq!(after["status"], "disconnected");
    assert_eq!(after["has_credentials"], false);
    b.close().await;
}

#[tokio::test]
async fn a_forged_csrf_token_changes_nothing() {
    let app = TestApp::spawn().await;
    let id = synced_ga4(&app).await;
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    // Another page's token: the cookie no longer matches what the page sends.
    b.script("document.cookie = 'kpi_csrf=forged-token-from-another-site-000; path=/; SameSite=Strict'; return true;")
        .await;
    let dialog = format!("#settings-{id}");
    b.click(&format!("#card-{id} [data-open=settings-{id}]"))
        .await;
    b.click(&format!("{dialog} button[data-body*=\"true\"]"))
        .await;
    let error = b
        .wait_for_text(&format!("{dialog} [data-error]"), "CSRF")
        .await;
    assert!(!error.is_empty());
    select(
        &b,
        &format!("{dialog} select[name=sync_interval_minutes]"),
        "15",
    )
    .await;
    b.click(&format!(
        "{dialog} form[data-action=save-settings] button[type=submit]"
    ))
    .await;
    b.wait_for_text(&format!("{dialog} form [data-error]"), "CSRF")
        .await;
    let after = integration(&app, &id).await;
    assert_eq!(after["status"], "connected");
    assert_eq!(after["sync_interval_minutes"], 360);
    b.close().await;
}

#[tokio::test]
async fn an_admin_retries_a_dead_job_and_others_get_404() {
    let app = TestApp::spawn().await;
    let id = synced_ga4(&app).await;
    let c = app.client_for(&[WS]);
    app.sandbox().set_faults(kpi_sandbox::Faults {
        ga4_data: Some("403".into()),
        ..Default::default()
    });
    let resp = c
        .post(app.url(&format!("/v1/workspaces/{WS}/integrations/{id}/sync")))
        .send()
        .await
        .unwrap();
    let job = resp.json::<Value>().await.unwrap()["job_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let jobs = app.wait_for_jobs(&c, WS, &id, 2).await;
    let dead = jobs.iter().find(|j| j["id"] == job.as_str()).unwrap();
    assert_eq!(dead["status"], "dead", "{dead}");
    // The cause is fixed.
    app.sandbox().set_faults(kpi_sandbox::Faults::default());

    let b = Browser::start(1280).await;
    sign_in(&b, &app, true).await;
    b.goto(&app.url("/admin/sync-jobs")).await;
    let row = format!("tr[data-job='{job}']");
    assert_eq!(b.text(&format!("{row} [data-job-status]")).await, "dead");
    b.screenshot("admin-sync-jobs-1280").await;
    b.click(&format!("{row} button[data-action=retry]")).await;
    b.wait_for_text(&format!("{row} [data-job-status]"), "succeeded")
        .await;
    // Redrive asks first, then reports what it moved.
    b.click("button[data-open=redrive-ga4]").await;
    let confirm = b.text("#redrive-ga4").await;
    assert!(confirm.contains("back to the work queue"), "{confirm}");
    b.click("#redrive-ga4 button[data-action=redrive]").await;
    b.wait_for_text(
        "[data-toast]",
        "Redrive: 0 messages moved, 0 jobs queued again",
    )
    .await;

    b.goto(&app.url(&format!("/admin/sync-jobs/{job}"))).await;
    assert_eq!(b.text("[data-job-status]").await, "succeeded");
    assert!(b.text("main").await.contains("Attempts"));
    b.screenshot("admin-sync-job-1280").await;

    // A normal user of the same workspace: the dashboard is not there.
    sign_in(&b, &app, false).await;
    b.goto(&app.url("/admin/sync-jobs")).await;
    assert_eq!(b.text("main h1").await, "Page not found");
    let browser = app.browser();
    kpi_tests::flows::dev_login(&browser, &app.base, WS).await;
    for path in ["/admin/sync-jobs", &format!("/admin/sync-jobs/{job}")] {
        let resp = browser.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }
    b.close().await;
}

#[tokio::test]
async fn alert_rules_are_created_paused_and_deleted_from_the_page() {
    let app = TestApp::spawn().await;
    synced_ga4(&app).await;
    let b = Browser::start(1280).await;
    sign_in(&b, &app, false).await;
    b.goto(&app.url(&format!("/settings/alerts?workspace={WS}")))
        .await;
    b.type_into("#new-name", "Sessions dropped").await;
    select(&b, "#new-metric", "ga4.sessions").await;
    b.type_into("#new-threshold", "50").await;
    b.click("form[data-method=POST] button[type=submit]").await;
    b.wait_for_text("[data-toast]", "Rule created").await;
    let rule = b.find("li[data-rule]").await;
    let text = rule.text().await.unwrap();
    assert!(text.contains("Sessions dropped"), "{text}");
    assert!(text.contains("below 50"), "{text}");
    let list = get_json(
        &app.client_for(&[WS]),
        app.url(&format!("/v1/workspaces/{WS}/alerts")),
    )
    .await;
    assert_eq!(list["items"][0]["recipients"], json!(["dev@example.com"]));
    let rule_id = list["items"][0]["id"].as_str().unwrap().to_owned();

    b.click(&format!("#rule-{rule_id} button[data-body*=\"false\"]"))
        .await;
    b.wait_for_text(&format!("#rule-{rule_id} .badge"), "Paused")
        .await;
    b.click(&format!(
        "#rule-{rule_id} button[data-open=delete-{rule_id}]"
    ))
    .await;
    b.click(&format!("#delete-{rule_id} button[data-action=delete]"))
        .await;
    b.wait_for_text("[data-toast]", "Rule deleted").await;
    assert!(!b.has("li[data-rule]").await);
    b.close().await;
}

#[tokio::test]
async fn every_page_is_accessible_safe_and_quiet_at_phone_and_desktop_width() {
    let app = TestApp::spawn().await;
    let id = synced_ga4(&app).await;
    let c = app.client_for(&[WS]);
    let resp = c
        .post(app.url(&format!("/v1/workspaces/{WS}/alerts")))
        .json(&json!({"name": "ROAS low", "metric": "ga4.sessions",
            "condition": {"kind": "threshold", "comparison": "below", "threshold": "10"},
            "recipients": ["owner@example.com"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let job = app.wait_for_jobs(&c, WS, &id, 1).await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pages = [
        (
            "integrations",
            format!("/settings/integrations?workspace={WS}"),
        ),
        ("alerts", format!("/settings/alerts?workspace={WS}")),
        ("reports", format!("/settings/reports?workspace={WS}")),
        (
            "admin-sync-jobs",
            "/admin/sync-jobs?status=succeeded".to_owned(),
        ),
        ("admin-sync-job", format!("/admin/sync-jobs/{job}")),
        ("not-found", "/admin/sync-jobs/not-a-job".to_owned()),
    ];

    // What the server sends: the CSP, and nothing inline for it to allow.
    let browser = app.browser();
    let login = browser
        .get(app.url(&format!("/dev/login?workspace={WS}&operator=true")))
        .send()
        .await
        .unwrap();
    assert_eq!(login.status(), 303);
    for (name, path) in &pages {
        let resp = browser.get(app.url(path)).send().await.unwrap();
        let csp = resp
            .headers()
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{name}: no CSP"))
            .to_str()
            .unwrap()
            .to_owned();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe"),
            "{csp}"
        );
        assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
        let html = resp.text().await.unwrap();
        assert!(!html.contains("<script>"), "{name}: inline script");
        assert!(!html.contains(" style="), "{name}: inline style");
        assert!(!html.contains(" onclick="), "{name}: inline handler");
    }

    let b = Browser::start(1280).await;
    sign_in(&b, &app, true).await;
    for width in [375, 1280] {
        b.set_width(width).await;
        for (name, path) in &pages {
            b.goto(&app.url(path)).await;
            b.find("main h1").await;
            b.screenshot(&format!("{name}-{width}")).await;
            let violations = b.accessibility_violations().await;
            assert!(
                violations.is_empty(),
                "{name} at {width}px: {violations:#?}"
            );
            let errors: Vec<String> = b
                .console_errors()
                .await
                .into_iter()
                // The not-found page is a 404 on purpose.
                .filter(|e| !(name == &"not-found" && e.contains("404")))
                .collect();
            assert!(errors.is_empty(), "{name} at {width}px: {errors:#?}");
        }
        // The settings dialog, open.
        b.goto(&app.url(&format!("/settings/integrations?workspace={WS}")))
            .await;
        b.click(&format!("#card-{id} [data-open=settings-{id}]"))
            .await;
        b.find(&format!("#settings-{id}[open]")).await;
        b.wait_until("the property list", || async {
            b.text(&format!("#settings-{id} [data-options-status]"))
                .await
                .contains("to choose from")
        })
        .await;
        b.screenshot(&format!("integrations-settings-{width}"))
            .await;
        let violations = b.accessibility_violations().await;
        assert!(
            violations.is_empty(),
            "settings at {width}px: {violations:#?}"
        );
        assert!(b.console_errors().await.is_empty());
    }
    // The checker does see a violation when there is one.
    b.goto(&app.url(&format!("/settings/reports?workspace={WS}")))
        .await;
    b.find("main h1").await;
    b.script(r#"document.querySelector("main").insertAdjacentHTML("beforeend", '<img src="/assets/icon.svg">'); return true;"#)
        .await;
    let violations = b.accessibility_violations().await;
    assert!(
        violations.iter().any(|v| v.contains("image-alt")),
        "{violations:#?}"
    );
    b.close().await;
}

#[tokio::test]
async fn without_script_every_page_still_reads() {
    let app = TestApp::spawn().await;
    let id = synced_ga4(&app).await;
    let b = Browser::without_script(1280).await;
    sign_in(&b, &app, true).await;
    // The pages' script marks <html> when it runs; here it must not have.
    assert_eq!(
        b.script("return document.documentElement.className").await,
        json!(""),
        "script is off"
    );
    let card = format!("#card-{id}");
    assert_eq!(b.text(&format!("{card} [data-badge]")).await, "Connected");
    b.find(&format!("{card} [data-sparkline] svg")).await;
    // The settings link opens its dialog in place.
    b.click(&format!("{card} a[data-open=settings-{id}]")).await;
    let dialog = b.find(&format!("#settings-{id}")).await;
    assert!(dialog.is_displayed().await.unwrap());
    assert!(dialog.text().await.unwrap().contains("Every 6 hours"));
    b.screenshot("integrations-no-script-1280").await;
    b.goto(&app.url("/admin/sync-jobs?status=succeeded")).await;
    assert_eq!(b.text("[data-job-status]").await, "succeeded");
    b.close().await;
}

/// Signing in at the dashboard's identity provider (a real OpenID Provider's
/// own login and consent forms), landing back on the page asked for, and
/// signing out of both; then the page asks to sign in again.
#[tokio::test]
async fn a_page_signs_in_at_the_identity_provider_and_out_again() {
    use kpi_tests::oidc::{CLIENT_ID, CLIENT_SECRET, OidcProvider};
    let starting = OidcProvider::start();
    // The dev server, and the `ui` function's router as API Gateway hands it
    // the pages: each its own client of the provider.
    let issuer = starting.issuer.clone();
    let second_client = format!("{CLIENT_ID}-1");
    let dev = TestApp::spawn_with(&[
        ("KPI_OIDC_ISSUER", &issuer),
        ("KPI_OIDC_CLIENT_ID", CLIENT_ID),
        ("KPI_OIDC_CLIENT_SECRET", CLIENT_SECRET),
    ])
    .await;
    let ui = TestApp::spawn_ui_function(&[
        ("KPI_OIDC_ISSUER", &issuer),
        ("KPI_OIDC_CLIENT_ID", &second_client),
        ("KPI_OIDC_CLIENT_SECRET", CLIENT_SECRET),
    ])
    .await;
    let provider = starting.serve(
        &[&dev.base, &ui.base],
        json!({"alice": {"workspaces": [WS], "email": "alice@demo.test"}}),
    );
    for app in [&dev, &ui] {
        let b = Browser::start(1280).await;
        let page = format!("/settings/integrations?workspace={WS}");
        b.goto(&app.url(&page)).await;
        // The provider's login form, on the provider's origin.
        b.type_into("input[name=login]", "alice").await;
        b.type_into("input[name=password]", "any password").await;
        assert!(b.url().await.as_str().starts_with(&provider.issuer));
        b.click("button[type=submit]").await;
        // Its consent form (waited for by its own field: until the browser
        // has left the login form, that form's button is still there), then
        // back to the page asked for, signed in.
        b.find("input[name=prompt][value=consent]").await;
        b.click("input[name=prompt][value=consent] ~ button[type=submit]")
            .await;
        b.wait_for_text("main h1", "Integrations").await;
        let here = b.url().await;
        assert_eq!(
            format!("{}?{}", here.path(), here.query().unwrap_or("")),
            page,
            "{}",
            app.base
        );
        assert!(b.text("header .ws").await.contains(WS));

        // Sign out: ours, then the provider's own confirmation, then our page.
        b.click("form.signout button").await;
        b.click("button[name=logout][value=yes]").await;
        b.wait_for_text("main h1", "signed out").await;
        // The sessions are gone: the page sends the browser to sign in again.
        b.goto(&app.url(&page)).await;
        b.find("input[name=login]").await;
        b.close().await;
    }
}
