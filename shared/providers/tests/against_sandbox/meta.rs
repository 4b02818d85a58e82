//! Facebook Login and the Meta Ads adapter against the sandbox.

use super::*;

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
        kpi_providers::meta::ID,
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
        kpi_providers::meta::ID,
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
    use kpi_core::{Integration, IntegrationId, Metric, WorkspaceId};
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
            kpi_providers::meta::ID,
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
