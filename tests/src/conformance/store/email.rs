//! Email records, their delivery status and suppressed addresses.

use chrono::Duration;
use kpi_core::ports::Store;
use kpi_core::{IntegrationId, WorkspaceId};

use super::{now, scope};

pub async fn email_records_and_suppressions<S: Store>(store: &S) {
    use kpi_core::ports::store::EmailRecord;
    let ws = scope("ws-mail");
    let t = now();
    let mut email = EmailRecord {
        id: "notice-1".into(),
        workspace: WorkspaceId::parse("ws-mail").unwrap(),
        kind: "sync_failure".into(),
        to: vec!["ops@example.com".into()],
        subject: "Sync failed".into(),
        provider_message_id: None,
        integration: None,
        status: "queued".into(),
        created_at: t,
        updated_at: t,
    };
    store.put_email(&ws, &email).await.unwrap();
    email.status = "delivered".into();
    email.provider_message_id = Some("re-msg-1".into());
    store.put_email(&ws, &email).await.unwrap();
    assert_eq!(
        store.get_email(&ws, "notice-1").await.unwrap(),
        Some(email.clone())
    );
    assert_eq!(
        store
            .get_email(&scope("ws-other"), "notice-1")
            .await
            .unwrap(),
        None
    );
    assert!(store.put_email(&scope("ws-other"), &email).await.is_err());

    assert!(
        !store
            .is_suppressed(&ws, "Bounce@Example.com")
            .await
            .unwrap()
    );
    store
        .suppress(&ws, "Bounce@Example.com", "bounced", t)
        .await
        .unwrap();
    assert!(
        store
            .is_suppressed(&ws, "bounce@example.com ")
            .await
            .unwrap()
    );
    assert!(
        !store
            .is_suppressed(&scope("ws-other"), "bounce@example.com")
            .await
            .unwrap()
    );
    // A provider's id leads back to the record, and nothing else does.
    assert_eq!(
        store.email_by_provider_id("re-msg-1").await.unwrap(),
        Some((
            WorkspaceId::parse("ws-mail").unwrap(),
            "notice-1".to_owned()
        ))
    );
    assert_eq!(store.email_by_provider_id("re-msg-2").await.unwrap(), None);
    // A sender's emails by time, for its delivery KPIs.
    let sender = IntegrationId::new_random();
    for (n, minutes) in [(1, 10), (2, 70), (3, 130)] {
        let at = t + Duration::minutes(minutes);
        store
            .put_email(
                &ws,
                &EmailRecord {
                    id: format!("report-{n}"),
                    integration: Some(sender),
                    provider_message_id: Some(format!("re-report-{n}")),
                    created_at: at,
                    updated_at: at,
                    ..email.clone()
                },
            )
            .await
            .unwrap();
    }
    let mut delivered = store.get_email(&ws, "report-2").await.unwrap().unwrap();
    delivered.status = "delivered".into();
    store.put_email(&ws, &delivered).await.unwrap();
    let sent = store
        .emails_sent_by(
            &ws,
            sender,
            t + Duration::minutes(60),
            t + Duration::minutes(130),
        )
        .await
        .unwrap();
    assert_eq!(
        sent.iter()
            .map(|e| (e.id.as_str(), e.status.as_str()))
            .collect::<Vec<_>>(),
        vec![("report-2", "delivered")],
        "[from, to), the newest status"
    );
    assert_eq!(
        store
            .emails_sent_by(&ws, sender, t, t + Duration::days(1))
            .await
            .unwrap()
            .len(),
        3
    );
    assert!(
        store
            .emails_sent_by(&scope("ws-other"), sender, t, t + Duration::days(1))
            .await
            .unwrap()
            .is_empty()
    );
    // Suppressions are listed and lifted per workspace.
    store
        .suppress(&ws, "complaint@example.com", "complained", t)
        .await
        .unwrap();
    let listed = store.list_suppressions(&ws).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|s| s.address.as_str())
            .collect::<Vec<_>>(),
        vec!["bounce@example.com", "complaint@example.com"]
    );
    assert_eq!(listed[0].reason, "bounced");
    assert!(
        store
            .list_suppressions(&scope("ws-other"))
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        !store
            .unsuppress(&scope("ws-other"), "bounce@example.com")
            .await
            .unwrap()
    );
    assert!(store.unsuppress(&ws, "Bounce@Example.com").await.unwrap());
    assert!(!store.unsuppress(&ws, "bounce@example.com").await.unwrap());
    assert!(
        !store
            .is_suppressed(&ws, "bounce@example.com")
            .await
            .unwrap()
    );
}
