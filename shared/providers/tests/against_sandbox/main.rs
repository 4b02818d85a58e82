//! The provider clients against the sandbox, over real HTTP: a module per
//! provider, sharing the helpers below.

use std::time::Duration;

use chrono::Utc;
use kpi_core::ports::provider::{AuthorizationRequest, ConnectRequest, ProviderAdapter};
use kpi_core::registry::Plugin;
use kpi_providers::ga4::google::{ANALYTICS_READONLY, GoogleOAuth};
use kpi_providers::resend::{KeyAccess, ResendClient};
use kpi_providers::{BuildContext, SandboxSite};
use kpi_providers::{ga4::AdminApi, http};
use kpi_sandbox::{Faults, Sandbox, SandboxConfig};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

const REDIRECT: &str = "http://127.0.0.1:9/v1/oauth/ga4/callback";

async fn sandbox() -> (Sandbox, String) {
    let sandbox = Sandbox::new(SandboxConfig::default());
    let base = sandbox.serve().await.unwrap();
    (sandbox, base)
}

/// A "browser" that does not follow redirects, so the test sees each one.
fn no_redirects() -> reqwest::Client {
    http::client(Duration::from_secs(10)).unwrap()
}

fn google_with_secret(base: &str, sandbox: &Sandbox, secret: &str) -> GoogleOAuth {
    GoogleOAuth::new(
        http::client(Duration::from_secs(10)).unwrap(),
        sandbox.config().google_client_id.clone(),
        SecretString::from(secret.to_owned()),
        Url::parse(&format!("{base}/google/auth")).unwrap(),
        Url::parse(&format!("{base}/google/token")).unwrap(),
        Url::parse(&format!("{base}/google/revoke")).unwrap(),
    )
}

fn google(base: &str, sandbox: &Sandbox) -> GoogleOAuth {
    google_with_secret(base, sandbox, &sandbox.config().google_client_secret)
}

/// A consent URL and the PKCE verifier kept for its exchange.
fn authorize(g: &GoogleOAuth, state: &str) -> (Url, String) {
    let auth = g.authorize(state, REDIRECT).unwrap();
    (
        Url::parse(&auth.url).unwrap(),
        auth.pkce_verifier.expect("Google uses PKCE"),
    )
}

/// Loads the consent page, then posts the decision as the browser would; returns
/// the query of the redirect back to us.
async fn consent(auth_url: Url, decision: &str, grant_scope: bool) -> Vec<(String, String)> {
    let browser = no_redirects();
    let page = browser.get(auth_url.clone()).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(html.contains("Allow") && html.contains("Deny"));
    // The hidden fields of the form, as a browser would post them.
    let mut form: Vec<(String, String)> = html
        .split("<input type=\"hidden\" ")
        .skip(1)
        .map(|chunk| {
            let attr = |name: &str| {
                let start = chunk.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + chunk[start..].find('"').unwrap();
                chunk[start..end]
                    .replace("&amp;", "&")
                    .replace("&quot;", "\"")
            };
            (attr("name"), attr("value"))
        })
        .collect();
    form.push(("decision".into(), decision.into()));
    if grant_scope {
        form.push(("grant_analytics".into(), "on".into()));
        form.push(("grant_ads_read".into(), "on".into()));
    }
    let consent_url = auth_url.join("consent").unwrap();
    let resp = browser.post(consent_url).form(&form).send().await.unwrap();
    assert_eq!(resp.status(), 303);
    let location = Url::parse(resp.headers()["location"].to_str().unwrap()).unwrap();
    location
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param<'a>(q: &'a [(String, String)], name: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

mod ga4;
mod meta;
mod resend;
