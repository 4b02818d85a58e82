//! The provider clients against the sandbox, over real HTTP.

use std::time::Duration;

use chrono::Utc;
use kpi_providers::google::{ANALYTICS_READONLY, GoogleOAuth};
use kpi_providers::meta::MetaClient;
use kpi_providers::oauth::Pkce;
use kpi_providers::resend::{KeyAccess, ResendClient};
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

fn google(base: &str, sandbox: &Sandbox) -> GoogleOAuth {
    GoogleOAuth {
        http: http::client(Duration::from_secs(10)).unwrap(),
        client_id: sandbox.config().google_client_id.clone(),
        client_secret: SecretString::from(sandbox.config().google_client_secret.clone()),
        auth_url: Url::parse(&format!("{base}/google/auth")).unwrap(),
        token_url: Url::parse(&format!("{base}/google/token")).unwrap(),
        revoke_url: Url::parse(&format!("{base}/google/revoke")).unwrap(),
    }
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

#[tokio::test]
async fn google_code_flow_with_pkce_refresh_and_revoke() {
    let (sandbox, base) = sandbox().await;
    let g = google(&base, &sandbox);
    let pkce = Pkce::generate().unwrap();
    let url = g.authorization_url("state-1", &pkce.challenge, REDIRECT);
    let q: Vec<_> = url.query_pairs().collect();
    assert!(q.iter().any(|(k, v)| k == "access_type" && v == "offline"));
    assert!(q.iter().any(|(k, v)| k == "prompt" && v == "consent"));
    assert!(
        q.iter()
            .any(|(k, v)| k == "code_challenge_method" && v == "S256")
    );

    let back = consent(url, "allow", true).await;
    assert_eq!(param(&back, "state"), Some("state-1"));
    let code = param(&back, "code").unwrap().to_owned();

    // A wrong verifier fails (PKCE), and the code is then spent.
    let err = g
        .exchange_code(
            &code,
            "wrong-verifier-wrong-verifier-wrong-verifier",
            REDIRECT,
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "reauth_required", "invalid_grant: {err:?}");

    let url = g.authorization_url("state-2", &pkce.challenge, REDIRECT);
    let code = param(&consent(url, "allow", true).await, "code")
        .unwrap()
        .to_owned();
    let tokens = g
        .exchange_code(&code, &pkce.verifier, REDIRECT, Utc::now())
        .await
        .unwrap();
    assert!(tokens.has_scope(ANALYTICS_READONLY));
    let refresh = tokens.refresh_token.clone().unwrap();
    // Reusing a code fails.
    assert!(
        g.exchange_code(&code, &pkce.verifier, REDIRECT, Utc::now())
            .await
            .is_err()
    );

    let admin = AdminApi {
        http: g.http.clone(),
        base: Url::parse(&format!("{base}/ga4/admin/v1beta")).unwrap(),
    };
    let (properties, calls) = admin.properties(&tokens.access_token).await.unwrap();
    assert_eq!(properties.len(), 3);
    assert_eq!(calls, 1);
    assert_eq!(properties[0].account_name, "Sandbox Shop");

    let fresh = g.refresh(&refresh, Utc::now()).await.unwrap();
    assert_ne!(
        fresh.access_token.expose_secret(),
        tokens.access_token.expose_secret()
    );
    g.revoke(&refresh).await.unwrap();
    let err = g.refresh(&refresh, Utc::now()).await.unwrap_err();
    assert_eq!(err.code(), "reauth_required");
    assert!(!format!("{err:?}").contains(refresh.expose_secret()));
    let err = admin.properties(&fresh.access_token).await.unwrap_err();
    assert_eq!(err.code(), "reauth_required");
    assert_eq!(sandbox.counters().google_revocations, 1);
}

#[tokio::test]
async fn google_denial_unticked_scope_and_provider_failures() {
    let (sandbox, base) = sandbox().await;
    let g = google(&base, &sandbox);
    let pkce = Pkce::generate().unwrap();
    let denied = consent(
        g.authorization_url("s", &pkce.challenge, REDIRECT),
        "deny",
        true,
    )
    .await;
    assert_eq!(param(&denied, "error"), Some("access_denied"));

    let q = consent(
        g.authorization_url("s", &pkce.challenge, REDIRECT),
        "allow",
        false,
    )
    .await;
    let err = g
        .exchange_code(
            param(&q, "code").unwrap(),
            &pkce.verifier,
            REDIRECT,
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation");
    assert!(err.message().contains("Analytics"));

    let q = consent(
        g.authorization_url("s", &pkce.challenge, REDIRECT),
        "allow",
        true,
    )
    .await;
    sandbox.set_faults(Faults {
        google_token: Some(503),
        ..Faults::default()
    });
    let err = g
        .exchange_code(
            param(&q, "code").unwrap(),
            &pkce.verifier,
            REDIRECT,
            Utc::now(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), "transient");

    let mut bad = google(&base, &sandbox);
    bad.client_secret = SecretString::from("wrong".to_owned());
    sandbox.set_faults(Faults::default());
    let err = bad
        .refresh(&SecretString::from("1//x".to_owned()), Utc::now())
        .await
        .unwrap_err();
    assert_eq!(
        err.code(),
        "configuration",
        "invalid_client is for operators"
    );
}

fn meta(base: &str, sandbox: &Sandbox) -> MetaClient {
    MetaClient {
        http: http::client(Duration::from_secs(10)).unwrap(),
        app_id: sandbox.config().meta_app_id.clone(),
        app_secret: SecretString::from(sandbox.config().meta_app_secret.clone()),
        auth_url: Url::parse(&format!("{base}/meta/dialog/oauth")).unwrap(),
        graph_url: Url::parse(&format!("{base}/meta/graph")).unwrap(),
        version: "v25.0".into(),
    }
}

#[tokio::test]
async fn meta_login_long_lived_token_ad_accounts_and_revoke() {
    let (sandbox, base) = sandbox().await;
    let m = meta(&base, &sandbox);
    let redirect = "http://127.0.0.1:9/v1/oauth/meta_ads/callback";
    let q = consent(m.authorization_url("st", redirect), "allow", true).await;
    let code = param(&q, "code").unwrap().to_owned();
    let tokens = m.exchange_code(&code, redirect, Utc::now()).await.unwrap();
    assert!(tokens.has_scope("ads_read"));
    assert!(tokens.refresh_token.is_none(), "Meta has no refresh tokens");
    let days = (tokens.expires_at.unwrap() - Utc::now()).num_days();
    assert!((59..=60).contains(&days), "long-lived: {days} days");
    let counters = sandbox.counters();
    assert_eq!(
        (
            counters.meta_code_exchanges,
            counters.meta_long_lived_exchanges
        ),
        (1, 1)
    );

    let (accounts, _) = m.ad_accounts(&tokens.access_token).await.unwrap();
    assert_eq!(accounts.len(), 3);
    assert_eq!(accounts[0].id, "act_1000000001");

    let err = m
        .exchange_code(&code, redirect, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation", "used code: {err:?}");

    m.revoke(&tokens.access_token).await.unwrap();
    let err = m.ad_accounts(&tokens.access_token).await.unwrap_err();
    assert_eq!(err.code(), "reauth_required");
    m.revoke(&tokens.access_token).await.unwrap();

    let q = consent(m.authorization_url("st", redirect), "allow", false).await;
    let err = m
        .exchange_code(param(&q, "code").unwrap(), redirect, Utc::now())
        .await
        .unwrap_err();
    assert!(err.message().contains("ads_read"));
}

#[tokio::test]
async fn resend_key_check() {
    let (sandbox, base) = sandbox().await;
    let r = ResendClient {
        http: http::client(Duration::from_secs(10)).unwrap(),
        base: Url::parse(&format!("{base}/resend")).unwrap(),
    };
    let full = r
        .check_key(&SecretString::from("re_live_1234567890".to_owned()))
        .await
        .unwrap();
    assert!(matches!(full, KeyAccess::Full { ref domains } if domains.len() == 2));
    let send = r
        .check_key(&SecretString::from("re_send_1234567890".to_owned()))
        .await
        .unwrap();
    assert_eq!(send, KeyAccess::SendingOnly);
    let err = r
        .check_key(&SecretString::from("not-a-key".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation");
    assert!(!err.message().contains("not-a-key"));
    sandbox.set_faults(Faults {
        resend: Some(500),
        ..Faults::default()
    });
    let err = r
        .check_key(&SecretString::from("re_live_1234567890".to_owned()))
        .await
        .unwrap_err();
    assert_eq!(err.code(), "transient");
}
