//! The Resend client and adapter against the sandbox.

use super::*;

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
    use kpi_core::{Integration, IntegrationId, Metric, WorkspaceId};
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
            kpi_providers::resend::ID,
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
