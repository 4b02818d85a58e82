//! KPI alert rules on the dev server: created through the API, evaluated
//! after a sync on the stored points, one email (a digest for several days)
//! from the workspace's Resend account, history kept, nothing twice.

mod reports;
mod rules;
mod unsubscribe;

use kpi_tests::app::TestApp;
use serde_json::json;

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
