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

/// The rule once `holds` says so of it (the evaluation after a sync writes
/// it last); fails after ten seconds with what it was.
async fn wait_for_rule(
    app: &TestApp,
    c: &reqwest::Client,
    rule_id: &str,
    holds: impl Fn(&serde_json::Value) -> bool,
) -> serde_json::Value {
    let url = app.url(&format!("/v1/workspaces/demo/alerts/{rule_id}"));
    let mut rule = serde_json::Value::Null;
    for _ in 0..200 {
        rule = kpi_tests::get_json(c, url.clone()).await;
        if holds(&rule) {
            return rule;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("the rule never got there: {rule}");
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
