//! Google's OAuth and the GA4 adapter against the sandbox.

use super::*;

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

mod ga4_sync {
    use super::*;
    use chrono::NaiveDate;
    use kpi_core::credentials::ConnectionCredentials;
    use kpi_core::kpi::DateRange;
    use kpi_core::ports::provider::{HealthStatus, SyncRequest};
    use kpi_core::{Integration, IntegrationId, Metric, WorkspaceId};
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
            kpi_providers::ga4::ID,
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
