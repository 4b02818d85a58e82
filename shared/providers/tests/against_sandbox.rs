//! The provider clients against the sandbox, over real HTTP.

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

#[tokio::test]
async fn google_code_flow_with_pkce_refresh_and_revoke() {
    let (sandbox, base) = sandbox().await;
    let g = google(&base, &sandbox);
    let (url, _) = authorize(&g, "state-1");
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

    let (url, verifier) = authorize(&g, "state-2");
    let code = param(&consent(url, "allow", true).await, "code")
        .unwrap()
        .to_owned();
    let (tokens, user) = g
        .exchange_code(&code, &verifier, REDIRECT, Utc::now())
        .await
        .unwrap();
    assert!(tokens.has_scope(ANALYTICS_READONLY));
    assert_eq!(
        user.as_deref(),
        Some(kpi_sandbox::SANDBOX_GOOGLE_USER),
        "the ID token names the Google user"
    );
    let refresh = tokens.refresh_token.clone().unwrap();
    // Reusing a code fails.
    assert!(
        g.exchange_code(&code, &verifier, REDIRECT, Utc::now())
            .await
            .is_err()
    );

    let admin = AdminApi {
        http: http::client(Duration::from_secs(10)).unwrap(),
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
    let denied = consent(authorize(&g, "s").0, "deny", true).await;
    assert_eq!(param(&denied, "error"), Some("access_denied"));

    let (url, verifier) = authorize(&g, "s");
    let q = consent(url, "allow", false).await;
    let err = g
        .exchange_code(param(&q, "code").unwrap(), &verifier, REDIRECT, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "validation");
    assert!(err.message().contains("Analytics"));

    let (url, verifier) = authorize(&g, "s");
    let q = consent(url, "allow", true).await;
    sandbox.set_faults(Faults {
        google_token: Some(503),
        ..Faults::default()
    });
    let err = g
        .exchange_code(param(&q, "code").unwrap(), &verifier, REDIRECT, Utc::now())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "transient");

    let bad = google_with_secret(&base, &sandbox, "wrong");
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

/// The Meta plug-in as the registry builds it, on the sandbox.
fn meta(base: &str, sandbox: &Sandbox) -> std::sync::Arc<dyn ProviderAdapter> {
    meta_with(
        base,
        sandbox,
        kpi_providers::meta::report::ReportPolicy::default(),
    )
}

fn meta_with(
    base: &str,
    sandbox: &Sandbox,
    policy: kpi_providers::meta::report::ReportPolicy,
) -> std::sync::Arc<dyn ProviderAdapter> {
    let site = SandboxSite {
        base: Url::parse(base).unwrap(),
        app_credentials: sandbox.app_credentials(),
    };
    let vars = kpi_core::config::Vars::new(|_| None);
    let ctx = BuildContext {
        vars: &vars,
        http: http::client(Duration::from_secs(10)).unwrap(),
        sandbox: Some(&site),
        sandbox_setting: None,
        production: false,
    };
    match kpi_providers::meta::plugin_with(&ctx, policy).unwrap() {
        Plugin::Ready { adapter, sandbox } => {
            assert!(sandbox);
            adapter
        }
        Plugin::Unconfigured { why, .. } => panic!("{why}"),
    }
}

async fn meta_connect(
    m: &dyn ProviderAdapter,
    code: &str,
    redirect: &str,
) -> kpi_core::Result<kpi_core::credentials::ConnectionCredentials> {
    m.connect(ConnectRequest::OAuthCode {
        code,
        redirect_uri: redirect,
        pkce_verifier: None,
        now: Utc::now(),
    })
    .await
    .map(|o| {
        assert!(o.needs_configuration, "the ad account is chosen next");
        assert_eq!(o.account.as_deref(), Some(kpi_sandbox::SANDBOX_META_USER));
        o.credentials
    })
}

#[tokio::test]
async fn meta_login_long_lived_token_ad_accounts_and_revoke() {
    let (sandbox, base) = sandbox().await;
    let m = meta(&base, &sandbox);
    let redirect = "http://127.0.0.1:9/v1/oauth/meta_ads/callback";
    let authorize = |state: &str| {
        let a = m
            .authorize(&AuthorizationRequest {
                state,
                redirect_uri: redirect,
            })
            .unwrap();
        assert!(a.pkce_verifier.is_none());
        Url::parse(&a.url).unwrap()
    };
    let url = authorize("st");
    assert!(
        url.query_pairs()
            .any(|(k, v)| k == "scope" && v == "ads_read,business_management")
    );
    let q = consent(url, "allow", true).await;
    let code = param(&q, "code").unwrap().to_owned();
    let credentials = meta_connect(&*m, &code, redirect).await.unwrap();
    let kpi_core::credentials::ConnectionCredentials::OAuth(tokens) = &credentials else {
        panic!("OAuth tokens expected");
    };
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

    let integration = kpi_core::Integration::new(
        kpi_core::IntegrationId::new_random(),
        kpi_core::WorkspaceId::parse("ws").unwrap(),
        kpi_core::Provider::META_ADS,
        "Meta Ads",
        Utc::now(),
    );
    let options = m.options(&integration, &credentials).await.unwrap();
    assert_eq!(options.setting, "ad_account");
    let calls = sandbox.counters().meta_graph_calls;
    let options = m.options(&integration, &credentials).await.unwrap();
    assert_eq!(
        sandbox.counters().meta_graph_calls - calls,
        3,
        "two accounts a page: three pages followed"
    );
    assert_eq!(options.options.len(), 6);
    assert_eq!(options.options[0].id, "act_1000000001");
    assert!(options.options[0].selectable);
    let status = |id: &str| {
        let o = options.options.iter().find(|o| o.id == id).unwrap();
        (o.selectable, o.details["account_status"].as_i64())
    };
    assert_eq!(
        status("act_1000000003"),
        (false, Some(101)),
        "closed: listed, not selectable"
    );
    assert_eq!(status("act_1000000005"), (false, Some(2)), "disabled");
    assert_eq!(status("act_1000000006"), (false, Some(3)), "unsettled");
    assert_eq!(status("act_1000000004"), (true, Some(1)));
    let yen = options
        .options
        .iter()
        .find(|o| o.id == "act_1000000004")
        .unwrap();
    assert_eq!(yen.details["currency"], "JPY");
    assert_eq!(yen.details["timezone_name"], "Asia/Tokyo");
    assert_eq!(options.options[0].details["timezone_name"], "Europe/Berlin");
    m.health(&integration, &credentials).await.unwrap();

    let err = meta_connect(&*m, &code, redirect).await.unwrap_err();
    assert!(err.is_validation(), "used code: {err:?}");

    m.disconnect(&credentials).await.unwrap();
    let err = m.options(&integration, &credentials).await.unwrap_err();
    assert!(err.is_reauth());
    m.disconnect(&credentials).await.unwrap();

    let q = consent(authorize("st"), "allow", false).await;
    let err = meta_connect(&*m, param(&q, "code").unwrap(), redirect)
        .await
        .unwrap_err();
    assert!(err.message().contains("ads_read"));
}

#[tokio::test]
async fn resend_key_check() {
    let (sandbox, base) = sandbox().await;
    let r = ResendClient::new(
        http::client(Duration::from_secs(10)).unwrap(),
        Url::parse(&format!("{base}/resend")).unwrap(),
    );
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

mod ga4_sync {
    use super::*;
    use chrono::NaiveDate;
    use kpi_core::credentials::ConnectionCredentials;
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::{HealthStatus, SyncRequest};
    use kpi_core::{Integration, IntegrationId, Metric, Provider, WorkspaceId};
    use kpi_providers::ga4::{DataApi, Ga4Adapter};
    use kpi_sandbox::ga4_data;

    async fn connected(sandbox: &Sandbox, base: &str) -> (Ga4Adapter, ConnectionCredentials) {
        let g = google(base, sandbox);
        let (url, verifier) = authorize(&g, "s");
        let q = consent(url, "allow", true).await;
        let (tokens, _) = g
            .exchange_code(param(&q, "code").unwrap(), &verifier, REDIRECT, Utc::now())
            .await
            .unwrap();
        let http = http::client(Duration::from_secs(10)).unwrap();
        let adapter = Ga4Adapter::new(
            g,
            AdminApi {
                http: http.clone(),
                base: Url::parse(&format!("{base}/ga4/admin/v1beta")).unwrap(),
            },
            DataApi {
                http,
                base: Url::parse(&format!("{base}/ga4/data/v1beta")).unwrap(),
            },
            2,
        );
        (adapter, ConnectionCredentials::OAuth(tokens))
    }

    fn integration(property: &str) -> Integration {
        let mut i = Integration::new(
            IntegrationId::new_random(),
            WorkspaceId::parse("ws").unwrap(),
            Provider::GA4,
            "GA4",
            Utc::now(),
        );
        i.settings.insert("property".into(), property.into());
        i
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[tokio::test]
    async fn a_90_day_backfill_is_one_call_with_exactly_the_served_numbers() {
        let (sandbox, base) = sandbox().await;
        let (adapter, creds) = connected(&sandbox, &base).await;
        let i = integration("properties/100001");
        let window = DateRange::new(d(2026, 1, 1), d(2026, 3, 31)).unwrap();
        let result = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert_eq!(
            result.provider_calls, 1,
            "one batchRunReports call for 90 days"
        );
        assert_eq!(
            result.points.len(),
            90 * 10,
            "every metric of every day, zero days included"
        );
        for p in &result.points {
            let at = kpi_providers::ga4::METRICS
                .iter()
                .position(|m| m.metric == p.metric)
                .unwrap();
            let name = kpi_providers::ga4::API_METRICS[at];
            let served = ga4_data::value("100001", p.date, name).unwrap();
            assert_eq!(
                p.value,
                kpi_providers::ga4::parse_value(&served).unwrap(),
                "{} on {}",
                p.metric,
                p.date
            );
        }
        let revenue = result
            .points
            .iter()
            .find(|p| p.metric == Metric::new("ga4.total_revenue"))
            .unwrap();
        assert_eq!(revenue.currency.as_ref().unwrap().as_str(), "EUR");
        let zero_day = result
            .points
            .iter()
            .find(|p| ga4_data::is_zero_day(p.date) && p.metric == Metric::new("ga4.sessions"))
            .expect("a zero day in the window");
        assert!(zero_day.value.is_zero());
        let tiny = result.points.iter().find(|p| {
            p.metric == Metric::new("ga4.bounce_rate") && p.value.to_string() == "0.00015"
        });
        assert!(tiny.is_some(), "exponent notation read exactly");
        assert!(result.quota_remaining.unwrap() > rust_decimal::Decimal::new(9, 1));
    }

    #[tokio::test]
    async fn long_reports_are_paged_and_dst_changes_keep_one_row_per_day() {
        let (sandbox, base) = sandbox().await;
        let (mut adapter, creds) = connected(&sandbox, &base).await;
        adapter.page_limit = 4;
        let i = integration("properties/100002"); // America/New_York: DST starts 2026-03-08
        let window = DateRange::new(d(2026, 3, 5), d(2026, 3, 14)).unwrap();
        let result = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert_eq!(result.provider_calls, 3, "10 rows in pages of 4");
        let mut days: Vec<_> = result.points.iter().map(|p| p.date).collect();
        days.sort();
        days.dedup();
        assert_eq!(days.len(), 10);
        assert!(days.contains(&d(2026, 3, 8)));
        assert_eq!(
            result
                .points
                .iter()
                .find(|p| p.metric == Metric::new("ga4.total_revenue"))
                .unwrap()
                .currency
                .as_ref()
                .unwrap()
                .as_str(),
            "USD"
        );
    }

    #[tokio::test]
    async fn quota_errors_wait_by_kind_then_syncing_resumes() {
        let (sandbox, base) = sandbox().await;
        let (adapter, creds) = connected(&sandbox, &base).await;
        let i = integration("properties/100001");
        let window = DateRange::new(d(2026, 2, 1), d(2026, 2, 3)).unwrap();
        for (fault, at_least) in [
            ("429_concurrent", 30),
            ("429_hourly", 60),
            ("429_daily", 60),
        ] {
            sandbox.set_faults(Faults {
                ga4_data: Some(fault.into()),
                ..Faults::default()
            });
            let err = adapter
                .sync(SyncRequest {
                    integration: &i,
                    credentials: &creds,
                    window,
                    records: None,
                })
                .await
                .unwrap_err();
            match err.kind() {
                kpi_core::ErrorKind::RateLimited {
                    retry_after: Some(wait),
                } => {
                    assert!(wait.as_secs() >= at_least, "{fault}: {wait:?}");
                    if fault == "429_concurrent" {
                        assert!(wait.as_secs() <= 60);
                    }
                }
                other => panic!("{fault}: {other:?}"),
            }
            // The fault was one-shot: the next sync works.
            adapter
                .sync(SyncRequest {
                    integration: &i,
                    credentials: &creds,
                    window,
                    records: None,
                })
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn a_401_is_answered_by_one_refresh_and_an_invalid_grant_needs_reauth() {
        let (sandbox, base) = sandbox().await;
        let (adapter, creds) = connected(&sandbox, &base).await;
        let i = integration("properties/100001");
        let window = DateRange::new(d(2026, 2, 1), d(2026, 2, 1)).unwrap();
        sandbox.set_faults(Faults {
            ga4_data: Some("401".into()),
            ..Faults::default()
        });
        let result = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert!(
            result.refreshed_credentials.is_some(),
            "the new token is handed back to be stored"
        );
        assert_eq!(sandbox.counters().google_refreshes, 1);

        // The user revoked access: the refresh fails with invalid_grant.
        let ConnectionCredentials::OAuth(t) = &creds else {
            unreachable!()
        };
        adapter
            .google
            .revoke(t.refresh_token.as_ref().unwrap())
            .await
            .unwrap();
        let err = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "reauth_required");
        assert!(err.message().contains("Reconnect"), "{}", err.message());
        assert_eq!(
            sandbox.counters().google_refreshes,
            2,
            "one refresh attempt, no storm"
        );
        let health = HealthStatus::from_check(adapter.health(&i, &creds).await, Utc::now());
        assert!(
            matches!(health, HealthStatus::NeedsReauth { .. }),
            "{health:?}"
        );
    }

    #[tokio::test]
    async fn a_property_without_access_is_a_configuration_error() {
        let (sandbox, base) = sandbox().await;
        let (adapter, creds) = connected(&sandbox, &base).await;
        let i = integration("properties/999999");
        let window = DateRange::new(d(2026, 2, 1), d(2026, 2, 1)).unwrap();
        let err = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), "configuration");
        assert!(
            err.message().contains("sufficient permissions"),
            "{}",
            err.message()
        );
        let health = HealthStatus::from_check(adapter.health(&i, &creds).await, Utc::now());
        assert!(
            matches!(health, HealthStatus::NoAccess { .. }),
            "{health:?}"
        );
        adapter
            .health(&integration("properties/100001"), &creds)
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn syncing_pauses_before_the_quota_runs_out() {
        let (sandbox, base) = sandbox().await;
        let (adapter, creds) = connected(&sandbox, &base).await;
        let i = integration("properties/100001");
        let window = DateRange::new(d(2026, 2, 1), d(2026, 2, 2)).unwrap();
        ga4_data::use_tokens(&sandbox, "100001", 37_000);
        let first = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert!(first.quota_remaining.unwrap() < rust_decimal::Decimal::new(10, 2));
        let calls = sandbox.counters().ga4_data_calls;
        let err = adapter
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), kpi_core::ErrorKind::RateLimited { retry_after: Some(w) } if w.as_secs() >= 60)
        );
        assert_eq!(
            sandbox.counters().ga4_data_calls,
            calls,
            "no call made while the quota is low"
        );
        // Another property is not held back.
        adapter
            .sync(SyncRequest {
                integration: &integration("properties/100002"),
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
    }
}

async fn meta_sync_connected(
    sandbox: &Sandbox,
    base: &str,
) -> (
    std::sync::Arc<dyn ProviderAdapter>,
    kpi_core::credentials::ConnectionCredentials,
) {
    meta_connected_with(sandbox, base, Default::default()).await
}

async fn meta_connected_with(
    sandbox: &Sandbox,
    base: &str,
    policy: kpi_providers::meta::report::ReportPolicy,
) -> (
    std::sync::Arc<dyn ProviderAdapter>,
    kpi_core::credentials::ConnectionCredentials,
) {
    let m = meta_with(base, sandbox, policy);
    let redirect = "http://127.0.0.1:9/v1/oauth/meta_ads/callback";
    let url = Url::parse(
        &m.authorize(&AuthorizationRequest {
            state: "st",
            redirect_uri: redirect,
        })
        .unwrap()
        .url,
    )
    .unwrap();
    let q = consent(url, "allow", true).await;
    let creds = meta_connect(&*m, param(&q, "code").unwrap(), redirect)
        .await
        .unwrap();
    (m, creds)
}

fn meta_integration(account: &str) -> kpi_core::Integration {
    let mut i = kpi_core::Integration::new(
        kpi_core::IntegrationId::new_random(),
        kpi_core::WorkspaceId::parse("ws").unwrap(),
        kpi_core::Provider::META_ADS,
        "Meta Ads",
        Utc::now(),
    );
    i.settings.insert("ad_account".into(), account.into());
    i
}

mod meta_sync {
    use super::*;
    use chrono::NaiveDate;
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::SyncRequest;
    use kpi_core::{Integration, IntegrationId, Metric, Provider, WorkspaceId};
    use kpi_sandbox::meta_insights;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    async fn connected(
        sandbox: &Sandbox,
        base: &str,
    ) -> (
        std::sync::Arc<dyn ProviderAdapter>,
        kpi_core::credentials::ConnectionCredentials,
    ) {
        let m = meta(base, sandbox);
        let redirect = "http://127.0.0.1:9/v1/oauth/meta_ads/callback";
        let url = Url::parse(
            &m.authorize(&AuthorizationRequest {
                state: "st",
                redirect_uri: redirect,
            })
            .unwrap()
            .url,
        )
        .unwrap();
        let q = consent(url, "allow", true).await;
        let creds = meta_connect(&*m, param(&q, "code").unwrap(), redirect)
            .await
            .unwrap();
        (m, creds)
    }

    fn integration(account: &str) -> Integration {
        let mut i = Integration::new(
            IntegrationId::new_random(),
            WorkspaceId::parse("ws").unwrap(),
            Provider::META_ADS,
            "Meta Ads",
            Utc::now(),
        );
        i.settings.insert("ad_account".into(), account.into());
        i
    }

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    #[tokio::test]
    async fn a_90_day_window_is_one_call_and_matches_the_served_days() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = connected(&sandbox, &base).await;
        let i = integration("act_1000000001");
        let window = DateRange::new(d(2026, 1, 1), d(2026, 3, 31)).unwrap();
        let before = sandbox.counters().meta_graph_calls;
        let result = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert_eq!(
            result.provider_calls, 1,
            "100 rows a page: one call for 90 days"
        );
        assert_eq!(sandbox.counters().meta_graph_calls - before, 1);
        let value = |name: &str, day: NaiveDate| {
            result
                .points
                .iter()
                .find(|p| p.metric == Metric::new(name) && p.date == day)
                .map(|p| p.value)
        };
        let mut dark = 0;
        let mut overlapping = 0;
        let mut no_clicks = 0;
        for day in window.from.iter_days().take_while(|x| *x <= window.to) {
            match meta_insights::day("1000000001", day) {
                None => {
                    dark += 1;
                    assert_eq!(value("meta.spend", day), Some(Decimal::ZERO), "{day}");
                    assert_eq!(value("meta.purchases", day), Some(Decimal::ZERO));
                    assert_eq!(value("meta.roas", day), None, "no ratio without delivery");
                    assert_eq!(value("meta.ctr", day), None);
                }
                Some(served) => {
                    let spend = Decimal::from_str(&served.spend).unwrap();
                    assert_eq!(value("meta.spend", day), Some(spend), "{day}");
                    assert_eq!(
                        value("meta.purchases", day),
                        Some(Decimal::from(served.purchases)),
                        "one purchase type counted on {day}"
                    );
                    let pv = Decimal::from_str(&served.purchase_value).unwrap();
                    assert_eq!(value("meta.purchase_value", day), Some(pv));
                    assert_eq!(value("meta.roas", day), Some(pv / spend));
                    if served.purchase_types.len() > 1 {
                        overlapping += 1;
                    }
                    if served.clicks == 0 {
                        no_clicks += 1;
                        assert_eq!(value("meta.cpc", day), None, "cpc omitted without clicks");
                    }
                }
            }
        }
        assert!(
            dark > 0 && overlapping > 0 && no_clicks > 0,
            "{dark} {overlapping} {no_clicks}"
        );
        let eur = result
            .points
            .iter()
            .find(|p| p.metric == Metric::new("meta.spend"))
            .unwrap();
        assert_eq!(eur.currency.as_ref().unwrap().as_str(), "EUR");
    }

    #[tokio::test]
    async fn long_windows_page_by_cursor_and_a_dead_token_needs_reauth() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = connected(&sandbox, &base).await;
        let i = integration("act_1000000002");
        let window = DateRange::new(d(2025, 6, 1), d(2026, 1, 31)).unwrap();
        let result = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert!(result.provider_calls >= 2, "{}", result.provider_calls);
        let spend_days = result
            .points
            .iter()
            .filter(|p| p.metric == Metric::new("meta.spend"))
            .count() as i64;
        assert_eq!(spend_days, window.days(), "every day, delivered or not");
        m.disconnect(&creds).await.unwrap();
        let err = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        assert!(err.is_reauth(), "error 190 → reconnect: {err:?}");
    }
}

mod meta_throttling {
    use super::*;
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::SyncRequest;

    #[tokio::test]
    async fn a_throttled_account_waits_as_meta_says_and_high_usage_stops_early() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = super::meta_sync_connected(&sandbox, &base).await;
        let i = super::meta_integration("act_1000000001");
        let d = |y, mo, day| chrono::NaiveDate::from_ymd_opt(y, mo, day).unwrap();
        let window = DateRange::new(d(2025, 6, 1), d(2026, 1, 31)).unwrap();
        // Error #80000 with 3 minutes to regain access: the engine is told to wait that long.
        sandbox.set_faults(Faults {
            meta_throttle_minutes: Some(3),
            ..Faults::default()
        });
        let err = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        match err.kind() {
            kpi_core::ErrorKind::RateLimited { retry_after } => {
                assert_eq!(*retry_after, Some(Duration::from_secs(180)), "{err:?}")
            }
            other => panic!("{other:?}"),
        }
        // 97% used after the first page: stop and wait rather than be throttled.
        sandbox.set_faults(Faults {
            meta_usage: Some(97),
            ..Faults::default()
        });
        let before = sandbox.counters().meta_graph_calls;
        let err = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err.kind(), kpi_core::ErrorKind::RateLimited { .. }),
            "{err:?}"
        );
        assert_eq!(
            sandbox.counters().meta_graph_calls - before,
            1,
            "stopped after one page"
        );
        // Usage back to normal: the sync goes through and records what is left.
        sandbox.set_faults(Faults::default());
        let ok = m
            .sync(SyncRequest {
                integration: &i,
                credentials: &creds,
                window,
                records: None,
            })
            .await
            .unwrap();
        assert_eq!(ok.quota_remaining, Some(rust_decimal::Decimal::new(88, 2)));
    }
}

mod meta_reports {
    use super::*;
    use chrono::NaiveDate;
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::{SyncRequest, SyncResult};
    use kpi_core::{Integration, Metric};
    use kpi_providers::meta::report::ReportPolicy;
    use kpi_sandbox::meta_insights;
    use rust_decimal::Decimal;
    use std::str::FromStr;

    fn d(y: i32, m: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, day).unwrap()
    }

    fn quick() -> ReportPolicy {
        ReportPolicy {
            first_poll: Duration::from_millis(20),
            max_poll: Duration::from_millis(50),
            stall_after: Duration::from_millis(300),
            ..ReportPolicy::default()
        }
    }

    async fn sync(
        m: &dyn ProviderAdapter,
        i: &Integration,
        creds: &kpi_core::credentials::ConnectionCredentials,
        window: DateRange,
    ) -> kpi_core::Result<SyncResult> {
        m.sync(SyncRequest {
            integration: i,
            credentials: creds,
            window,
            records: None,
        })
        .await
    }

    /// Every day of the window has its spend, equal to what the sandbox served.
    fn assert_spend_served(account: &str, result: &SyncResult, window: DateRange) {
        let spend: Vec<_> = result
            .points
            .iter()
            .filter(|p| p.metric == Metric::new("meta.spend"))
            .collect();
        assert_eq!(spend.len() as i64, window.days(), "each day once");
        for p in spend {
            let served = meta_insights::day(account, p.date)
                .map_or(Decimal::ZERO, |day| Decimal::from_str(&day.spend).unwrap());
            assert_eq!(p.value, served, "{}", p.date);
        }
    }

    #[tokio::test]
    async fn a_timeout_reruns_the_window_as_an_async_report() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = meta_connected_with(&sandbox, &base, quick()).await;
        let i = meta_integration("act_1000000001");
        let window = DateRange::new(d(2026, 2, 1), d(2026, 3, 31)).unwrap();
        sandbox.set_faults(Faults {
            meta_timeout_above_days: Some(30),
            ..Faults::default()
        });
        let result = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(sandbox.counters().meta_report_runs, 1);
        // The timed-out read, the run's creation, two polls, one page of results.
        assert_eq!(result.provider_calls, 5);
        assert_spend_served("1000000001", &result, window);
    }

    #[tokio::test]
    async fn long_windows_are_report_runs_and_a_failed_run_is_retried_in_halves() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = meta_connected_with(&sandbox, &base, quick()).await;
        let i = meta_integration("act_1000000002");
        let window = DateRange::new(d(2025, 5, 1), d(2025, 11, 16)).unwrap();
        assert_eq!(window.days(), 200);
        let whole = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(sandbox.counters().meta_report_runs, 1, "200 days: one run");
        assert_spend_served("1000000002", &whole, window);

        sandbox.set_faults(Faults {
            meta_report_fail_above_days: Some(150),
            ..Faults::default()
        });
        let split = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(
            sandbox.counters().meta_report_runs,
            4,
            "the failed run, then one per 100-day half"
        );
        assert_spend_served("1000000002", &split, window);
        assert_eq!(split.points, whole.points, "the same numbers either way");
    }

    #[tokio::test]
    async fn a_stalled_run_is_given_up_and_its_halves_read_directly() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = meta_connected_with(&sandbox, &base, quick()).await;
        let i = meta_integration("act_1000000001");
        let window = DateRange::new(d(2025, 1, 1), d(2025, 6, 29)).unwrap();
        sandbox.set_faults(Faults {
            meta_report_stall: Some(true),
            ..Faults::default()
        });
        let result = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(
            sandbox.counters().meta_report_runs,
            1,
            "180 days: one run, then two 90-day reads"
        );
        assert_spend_served("1000000001", &result, window);
    }

    #[tokio::test]
    async fn pages_of_25_rows_are_followed_by_cursor() {
        let (sandbox, base) = sandbox().await;
        let policy = ReportPolicy {
            page_size: 25,
            ..quick()
        };
        let (m, creds) = meta_connected_with(&sandbox, &base, policy).await;
        let i = meta_integration("act_1000000001");
        let window = DateRange::new(d(2026, 1, 1), d(2026, 3, 31)).unwrap();
        let delivered = window
            .from
            .iter_days()
            .take_while(|x| *x <= window.to)
            .filter(|x| meta_insights::day("1000000001", *x).is_some())
            .count() as u32;
        let result = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(result.provider_calls, delivered.div_ceil(25));
        assert!(result.provider_calls >= 3);
        assert_spend_served("1000000001", &result, window);
    }

    #[tokio::test]
    async fn high_usage_slows_the_pages_down_but_finishes() {
        let (sandbox, base) = sandbox().await;
        let policy = ReportPolicy {
            page_size: 25,
            ..quick()
        };
        let (m, creds) = meta_connected_with(&sandbox, &base, policy).await;
        let i = meta_integration("act_1000000001");
        let window = DateRange::new(d(2026, 1, 1), d(2026, 1, 31)).unwrap();
        // 80%: above the 75% line, below the 95% stop.
        sandbox.set_faults(Faults {
            meta_usage: Some(80),
            ..Faults::default()
        });
        let result = sync(&*m, &i, &creds, window).await.unwrap();
        assert_eq!(result.provider_calls, 2, "both pages read");
        assert_eq!(result.quota_remaining, Some(Decimal::new(20, 2)));
        assert_spend_served("1000000001", &result, window);
    }

    #[tokio::test]
    async fn yen_have_no_minor_unit() {
        let (sandbox, base) = sandbox().await;
        let (m, creds) = meta_sync_connected(&sandbox, &base).await;
        let i = meta_integration("act_1000000004");
        let window = DateRange::new(d(2026, 5, 1), d(2026, 5, 31)).unwrap();
        let result = sync(&*m, &i, &creds, window).await.unwrap();
        assert_spend_served("1000000004", &result, window);
        let spend: Vec<_> = result
            .points
            .iter()
            .filter(|p| p.metric == Metric::new("meta.spend"))
            .collect();
        assert!(spend.iter().any(|p| p.value > Decimal::from(10_000)));
        for p in &spend {
            assert_eq!(p.currency.as_ref().unwrap().as_str(), "JPY");
            assert_eq!(p.value.scale(), 0, "whole yen: {}", p.value);
        }
        let value = result
            .points
            .iter()
            .find(|p| p.metric == Metric::new("meta.purchase_value") && !p.value.is_zero())
            .unwrap();
        assert_eq!(value.value.fract(), Decimal::ZERO);
    }
}

mod resend_sending {
    use super::*;
    use kpi_providers::resend::send::EmailRequest;

    fn client(base: &str) -> ResendClient {
        ResendClient::new(
            http::client(Duration::from_secs(10)).unwrap(),
            Url::parse(&format!("{base}/resend")).unwrap(),
        )
    }

    fn key() -> SecretString {
        SecretString::from("re_live_1234567890".to_owned())
    }

    fn email(to: &str, subject: &str) -> EmailRequest {
        EmailRequest {
            from: "KPI Reports <reports@sandbox.example.com>".into(),
            to: vec![to.into()],
            subject: subject.into(),
            html: "<p>Hello</p>".into(),
            text: "Hello".into(),
            reply_to: vec![],
            tags: vec![],
            headers: Default::default(),
        }
    }

    #[tokio::test]
    async fn a_batch_is_one_call_and_its_key_makes_a_retry_send_nothing_twice() {
        let (sandbox, base) = sandbox().await;
        let r = client(&base);
        let batch: Vec<_> = (0..3)
            .map(|i| email(&format!("user{i}@example.com"), "Weekly report"))
            .collect();
        let ids = r
            .send_batch(&key(), &batch, "report/demo/2026-W48")
            .await
            .unwrap();
        assert_eq!(ids.len(), 3);
        assert_eq!(sandbox.resend_outbox().len(), 3);
        assert_eq!(sandbox.counters().resend_calls, 1);
        // The same batch again (a job that ran twice): the same ids, nothing sent.
        let again = r
            .send_batch(&key(), &batch, "report/demo/2026-W48")
            .await
            .unwrap();
        assert_eq!(again, ids);
        assert_eq!(sandbox.resend_outbox().len(), 3);
        // The same key over another payload is refused.
        let other = vec![email("else@example.com", "Other")];
        let err = r
            .send_batch(&key(), &other, "report/demo/2026-W48")
            .await
            .unwrap_err();
        assert!(
            err.message().contains("invalid_idempotent_request"),
            "{err:?}"
        );
        let outbox = sandbox.resend_outbox();
        assert_eq!(outbox.len(), 3);
        assert_eq!(
            outbox[0].idempotency_key.as_deref(),
            Some("report/demo/2026-W48")
        );
    }

    #[tokio::test]
    async fn a_lost_answer_is_retried_once_with_the_same_key_and_sends_one_email() {
        let (sandbox, base) = sandbox().await;
        let r = client(&base);
        sandbox.set_faults(Faults {
            resend_lose_answers: Some(1),
            ..Faults::default()
        });
        let ids = r
            .send_batch(
                &key(),
                &[email("owner@example.com", "Sync failed")],
                "notice/x/1",
            )
            .await
            .unwrap();
        assert_eq!(ids.len(), 1);
        let outbox = sandbox.resend_outbox();
        assert_eq!(outbox.len(), 1, "exactly one email");
        assert_eq!(outbox[0].id, ids[0]);
        assert_eq!(sandbox.counters().resend_calls, 2, "one retry");
    }

    #[tokio::test]
    async fn rate_limits_are_followed_from_the_headers_and_429s_wait() {
        let (sandbox, base) = sandbox().await;
        sandbox.set_faults(Faults {
            resend_rate_limit: Some(2),
            ..Faults::default()
        });
        // One client follows ratelimit-remaining: no 429 at all.
        let r = client(&base);
        for i in 0..5 {
            r.send_batch(&key(), &[email("a@example.com", "s")], &format!("k-{i}"))
                .await
                .unwrap();
        }
        assert_eq!(sandbox.counters().resend_calls, 5, "no call refused");
        // Two clients of the same team race: one gets a 429 with retry-after and waits.
        let (a, b) = (client(&base), client(&base));
        let sends = (0..3).map(|i| {
            let (a, b) = (&a, &b);
            async move {
                let c = if i % 2 == 0 { a } else { b };
                c.send_batch(&key(), &[email("b@example.com", "s")], &format!("race-{i}"))
                    .await
            }
        });
        for result in futures::future::join_all(sends).await {
            result.unwrap();
        }
        assert_eq!(sandbox.resend_outbox().len(), 8);
    }

    #[tokio::test]
    async fn quotas_and_bad_keys_are_not_retried_and_outages_are() {
        let (sandbox, base) = sandbox().await;
        let r = client(&base);
        sandbox.set_faults(Faults {
            resend_quota: Some("daily".into()),
            ..Faults::default()
        });
        let err = r
            .send_batch(&key(), &[email("a@example.com", "s")], "q-1")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "configuration");
        assert!(err.message().contains("tomorrow"), "{}", err.message());
        assert_eq!(sandbox.counters().resend_calls, 1, "not retried");
        sandbox.set_faults(Faults::default());
        let err = r
            .send_batch(
                &SecretString::from("re_bad".to_owned()),
                &[email("a@example.com", "s")],
                "q-2",
            )
            .await
            .unwrap_err();
        assert!(err.is_reauth(), "{err:?}");
        let calls = sandbox.counters().resend_calls;
        sandbox.set_faults(Faults {
            resend: Some(503),
            ..Faults::default()
        });
        let err = r
            .send_batch(&key(), &[email("a@example.com", "s")], "q-3")
            .await
            .unwrap_err();
        assert_eq!(err.code(), "transient");
        assert_eq!(
            sandbox.counters().resend_calls - calls,
            4,
            "retried, then handed back"
        );
        assert!(sandbox.resend_outbox().is_empty());
    }
}

mod resend_delivery {
    use super::*;
    use chrono::{DateTime, Duration as Days};
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::{SentEmails, SyncRequest};
    use kpi_core::ports::store::EmailRecord;
    use kpi_core::{Integration, IntegrationId, Metric, Provider, WorkspaceId};
    use kpi_providers::resend::send::EmailRequest;
    use rust_decimal::Decimal;

    struct Recorded(Vec<EmailRecord>);

    #[async_trait::async_trait]
    impl SentEmails for Recorded {
        async fn sent_by(
            &self,
            _: &Integration,
            from: DateTime<Utc>,
            to: DateTime<Utc>,
        ) -> kpi_core::Result<Vec<EmailRecord>> {
            Ok(self
                .0
                .iter()
                .filter(|e| e.created_at >= from && e.created_at < to)
                .cloned()
                .collect())
        }
    }

    #[tokio::test]
    async fn sends_without_a_webhook_are_looked_up_and_counted() {
        let (sandbox, base) = sandbox().await;
        let m = kpi_providers::resend::plugin(&BuildContext {
            vars: &kpi_core::config::Vars::new(|_| None),
            http: http::client(Duration::from_secs(10)).unwrap(),
            sandbox: Some(&SandboxSite {
                base: Url::parse(&base).unwrap(),
                app_credentials: sandbox.app_credentials(),
            }),
            sandbox_setting: None,
            production: false,
        })
        .unwrap();
        let kpi_core::registry::Plugin::Ready { adapter, .. } = m else {
            panic!("resend did not build");
        };
        let key = SecretString::from("re_live_1234567890".to_owned());
        let client = ResendClient::new(
            http::client(Duration::from_secs(10)).unwrap(),
            Url::parse(&format!("{base}/resend")).unwrap(),
        );
        let emails: Vec<_> = (0..3)
            .map(|i| EmailRequest {
                from: "kpi@sandbox.example.com".into(),
                to: vec![format!("u{i}@example.com")],
                subject: "Report".into(),
                html: "<p>r</p>".into(),
                text: "r".into(),
                reply_to: vec![],
                tags: vec![],
                headers: Default::default(),
            })
            .collect();
        let ids = client
            .send_batch(&key, &emails, "report/x/1")
            .await
            .unwrap();
        sandbox.set_resend_last_event(&ids[0], "delivered");
        sandbox.set_resend_last_event(&ids[1], "bounced");
        let integration = Integration::new(
            IntegrationId::new_random(),
            WorkspaceId::parse("ws").unwrap(),
            Provider::RESEND,
            "Resend",
            Utc::now(),
        );
        let two_hours_ago = Utc::now() - Days::hours(2);
        let records = Recorded(
            ids.iter()
                .enumerate()
                .map(|(n, id)| EmailRecord {
                    id: format!("report/x/1/{n}"),
                    workspace: integration.workspace.clone(),
                    kind: "kpi_report".into(),
                    to: vec![format!("u{n}@example.com")],
                    subject: "Report".into(),
                    provider_message_id: Some(id.clone()),
                    integration: Some(integration.id),
                    status: "sent".into(),
                    created_at: two_hours_ago,
                    updated_at: two_hours_ago,
                })
                .collect(),
        );
        let day = two_hours_ago.date_naive();
        let result = adapter
            .sync(SyncRequest {
                integration: &integration,
                credentials: &kpi_core::ConnectionCredentials::ApiKey { key, webhook: None },
                window: DateRange::new(day, day).unwrap(),
                records: Some(&records),
            })
            .await
            .unwrap();
        assert_eq!(result.provider_calls, 3, "one lookup per undecided send");
        let value = |name: &str| {
            result
                .points
                .iter()
                .find(|p| p.metric == Metric::new(name))
                .map(|p| p.value)
        };
        assert_eq!(value("resend.sent"), Some(Decimal::from(3)));
        assert_eq!(value("resend.delivered"), Some(Decimal::from(1)));
        assert_eq!(value("resend.bounced"), Some(Decimal::from(1)));
        assert_eq!(
            value("resend.delivery_rate"),
            Some(Decimal::from(1) / Decimal::from(3))
        );
        let no_records = adapter
            .sync(SyncRequest {
                integration: &integration,
                credentials: &kpi_core::ConnectionCredentials::ApiKey {
                    key: SecretString::from("re_live_1234567890".to_owned()),
                    webhook: None,
                },
                window: DateRange::new(day, day).unwrap(),
                records: None,
            })
            .await;
        assert!(no_records.is_err());
    }
}
