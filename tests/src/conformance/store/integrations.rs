//! Integrations and their writes and pages; provider account links; workspace settings.

use std::collections::BTreeSet;

use crate::GA4_SESSIONS;
use chrono::Utc;
use kpi_core::page::PageRequest;
use kpi_core::ports::Store;
use kpi_core::ports::store::{AccountLink, KpiQuery};
use kpi_core::{ErrorKind, Integration, IntegrationId, IntegrationStatus, JobStatus, WorkspaceId};

use super::{collect_pages, connected, day, integration, job_for, kpi, now, scope};

pub async fn integration_crud_round_trip<S: Store>(store: &S) {
    let ws = scope("ws-a");
    let mut i = integration("ws-a", kpi_providers::resend::ID);
    i.settings.insert("domain".into(), "example.com".into());
    let created = store.create_integration(&ws, &i).await.unwrap();
    assert_eq!(created.version, 1);
    let again = store.create_integration(&ws, &i).await.unwrap_err();
    assert_eq!(again.kind(), &ErrorKind::Conflict);

    let mut got = store.get_integration(&ws, i.id).await.unwrap();
    assert_eq!(got, created);
    got.transition(IntegrationStatus::Connected, now()).unwrap();
    got.display_name = "Renamed".into();
    let updated = store.update_integration(&ws, &got).await.unwrap();
    assert_eq!(updated.version, 2);
    assert_eq!(store.get_integration(&ws, i.id).await.unwrap(), updated);

    assert!(store.delete_integration(&ws, i.id).await.unwrap());
    assert!(
        !store.delete_integration(&ws, i.id).await.unwrap(),
        "delete is idempotent"
    );
    let gone = store.get_integration(&ws, i.id).await.unwrap_err();
    assert_eq!(gone.kind(), &ErrorKind::NotFound);
    let stale = store.update_integration(&ws, &updated).await.unwrap_err();
    assert_eq!(stale.kind(), &ErrorKind::NotFound);
}

pub async fn other_workspace_sees_nothing<S: Store>(store: &S) {
    let (a, b) = (scope("tenant-a"), scope("tenant-b"));
    let i = connected(store, "tenant-a", now()).await;
    assert_eq!(
        store.get_integration(&b, i.id).await.unwrap_err().kind(),
        &ErrorKind::NotFound
    );
    assert!(
        store
            .list_integrations(&b, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    assert!(!store.delete_integration(&b, i.id).await.unwrap());
    // A scope cannot write a record that names another workspace.
    assert!(store.update_integration(&b, &i).await.is_err());
    assert!(store.get_integration(&a, i.id).await.is_ok(), "untouched");

    let job = job_for(&i);
    assert!(store.create_job(&a, &job).await.unwrap());
    assert_eq!(
        store.get_job(&b, job.id).await.unwrap_err().kind(),
        &ErrorKind::NotFound
    );
    assert!(
        store
            .list_jobs(&b, i.id, &PageRequest::first(10))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    let before = store.get_job(&a, job.id).await.unwrap();
    let mut moved = before.clone();
    moved.workspace = b.workspace().clone();
    // Another workspace's job is not there for b, even by its id and
    // current version, and stays a's as it was.
    assert_eq!(
        store.update_job(&b, &moved).await.unwrap_err().kind(),
        &ErrorKind::NotFound
    );
    let kept = store.get_job(&a, job.id).await.unwrap();
    assert_eq!(
        (&kept.workspace, kept.version),
        (a.workspace(), before.version)
    );

    let point = kpi(&i, GA4_SESSIONS, day(1), "5");
    store
        .upsert_kpis(&a, std::slice::from_ref(&point))
        .await
        .unwrap();
    assert!(store.upsert_kpis(&b, &[point]).await.is_err());
    let q = KpiQuery {
        metric: GA4_SESSIONS.metric,
        from: day(1),
        to: day(31),
        integration: None,
    };
    assert!(store.query_kpis(&b, &q).await.unwrap().is_empty());
    assert_eq!(store.query_kpis(&a, &q).await.unwrap().len(), 1);
}

pub async fn conditional_write_loses_to_concurrent_writer<S: Store>(store: &S) {
    let ws = scope("ws-race");
    let base = store
        .create_integration(&ws, &integration("ws-race", kpi_providers::ga4::ID))
        .await
        .unwrap();
    let mut first = base.clone();
    first.display_name = "first".into();
    let mut second = base.clone();
    second.display_name = "second".into();
    let (r1, r2) = tokio::join!(
        store.update_integration(&ws, &first),
        store.update_integration(&ws, &second)
    );
    let oks = [r1.is_ok(), r2.is_ok()];
    assert_eq!(
        oks.iter().filter(|x| **x).count(),
        1,
        "exactly one writer wins"
    );
    let loser = if r1.is_ok() { r2 } else { r1 };
    assert_eq!(loser.unwrap_err().kind(), &ErrorKind::Conflict);
    let stored = store.get_integration(&ws, base.id).await.unwrap();
    assert_eq!(stored.version, 2);
    assert!(["first", "second"].contains(&stored.display_name.as_str()));

    // Same for jobs.
    let job = job_for(&base);
    store.create_job(&ws, &job).await.unwrap();
    let job = store.get_job(&ws, job.id).await.unwrap();
    let mut running = job.clone();
    running.transition(JobStatus::Running, now()).unwrap();
    store.update_job(&ws, &running).await.unwrap();
    let lost = store.update_job(&ws, &running).await.unwrap_err();
    assert_eq!(lost.kind(), &ErrorKind::Conflict);
}

pub async fn pagination_across_pages<S: Store>(store: &S) {
    let ws = scope("ws-pages");
    let mut ids = BTreeSet::new();
    for _ in 0..23 {
        let i = integration("ws-pages", kpi_providers::meta::ID);
        ids.insert(i.id);
        store.create_integration(&ws, &i).await.unwrap();
    }
    // Another workspace's integrations never show up in these pages.
    store
        .create_integration(
            &scope("ws-other"),
            &integration("ws-other", kpi_providers::ga4::ID),
        )
        .await
        .unwrap();
    let ws_ref = &ws;
    let listed = collect_pages(
        5,
        |p| async move { store.list_integrations(ws_ref, &p).await },
    )
    .await;
    let listed_ids: Vec<_> = listed.iter().map(|i| i.id).collect();
    assert_eq!(listed_ids.len(), 23, "every integration exactly once");
    assert_eq!(listed_ids.iter().copied().collect::<BTreeSet<_>>(), ids);

    let owner = listed[0].clone();
    let mut job_ids = Vec::new();
    for _ in 0..12 {
        let job = job_for(&owner);
        job_ids.push(job.id);
        store.create_job(&ws, &job).await.unwrap();
    }
    let owner_id = owner.id;
    let jobs = collect_pages(
        5,
        |p| async move { store.list_jobs(ws_ref, owner_id, &p).await },
    )
    .await;
    job_ids.reverse();
    assert_eq!(
        jobs.iter().map(|j| j.id).collect::<Vec<_>>(),
        job_ids,
        "newest first"
    );

    let tampered = kpi_core::page::Cursor::from_token("not-a-cursor!");
    let err = store
        .list_integrations(&ws, &PageRequest::after(5, tampered))
        .await
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Validation { .. }));
}

pub async fn account_links_count_the_integrations_of_one_provider_account<S: Store>(store: &S) {
    let (a, b) = (IntegrationId::new_random(), IntegrationId::new_random());
    let (ws_a, ws_b) = (
        WorkspaceId::parse("ws-link-a").unwrap(),
        WorkspaceId::parse("ws-link-b").unwrap(),
    );
    let key = format!("acct-{}", uuid::Uuid::new_v4());
    assert!(
        store
            .account_integrations(&key, 10)
            .await
            .unwrap()
            .is_empty()
    );
    store.link_account(&key, &ws_a, a).await.unwrap();
    store.link_account(&key, &ws_b, b).await.unwrap();
    store.link_account(&key, &ws_a, a).await.unwrap();
    let mut linked = store.account_integrations(&key, 10).await.unwrap();
    linked.sort();
    let mut expected = vec![
        AccountLink {
            workspace: ws_a.clone(),
            integration: a,
        },
        AccountLink {
            workspace: ws_b.clone(),
            integration: b,
        },
    ];
    expected.sort();
    assert_eq!(
        linked, expected,
        "idempotent links, each with its workspace"
    );
    assert_eq!(store.account_integrations(&key, 1).await.unwrap().len(), 1);
    store.unlink_account(&key, a).await.unwrap();
    store.unlink_account(&key, a).await.unwrap();
    assert_eq!(
        store.account_integrations(&key, 10).await.unwrap(),
        vec![AccountLink {
            workspace: ws_b,
            integration: b
        }]
    );
    assert!(
        store
            .account_integrations("another-account", 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn workspace_settings_are_per_workspace_and_overwritten<S: Store>(store: &S) {
    let a = scope("ws-settings-a");
    let b = scope("ws-settings-b");
    assert_eq!(
        store
            .get_workspace_setting(&a, "notifications")
            .await
            .unwrap(),
        None
    );
    let first = serde_json::json!({"recipients": ["owner@example.com"]});
    store
        .put_workspace_setting(&a, "notifications", &first)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_workspace_setting(&a, "notifications")
            .await
            .unwrap(),
        Some(first)
    );
    assert_eq!(
        store
            .get_workspace_setting(&b, "notifications")
            .await
            .unwrap(),
        None,
        "another workspace sees nothing"
    );
    assert_eq!(
        store.get_workspace_setting(&a, "reports").await.unwrap(),
        None
    );
    let second = serde_json::json!({"recipients": []});
    store
        .put_workspace_setting(&a, "notifications", &second)
        .await
        .unwrap();
    assert_eq!(
        store
            .get_workspace_setting(&a, "notifications")
            .await
            .unwrap(),
        Some(second)
    );
}

/// Many read-modify-writes of one integration at once (workers finishing,
/// notices noted, a user's edit): every one lands, none is dropped.
pub async fn concurrent_changes_to_one_integration_all_land<S: Store>(store: &S) {
    let ws = scope("ws-cas");
    let now = Utc::now();
    let i = Integration::new(
        IntegrationId::new_random(),
        WorkspaceId::parse("ws-cas").unwrap(),
        kpi_providers::ga4::ID,
        "GA4",
        now,
    );
    let i = store.create_integration(&ws, &i).await.unwrap();
    let clock = kpi_core::ports::SystemClock;
    let writers = (0..12).map(|n| {
        let (ws, clock) = (&ws, &clock);
        async move {
            kpi_sync::cas::modify_integration(store, clock, ws, i.id, |i| {
                i.settings
                    .insert(format!("writer-{n}"), serde_json::json!(n));
                Ok(())
            })
            .await
        }
    });
    for written in futures::future::join_all(writers).await {
        written.expect("no write is dropped");
    }
    let after = store.get_integration(&ws, i.id).await.unwrap();
    assert_eq!(after.settings.len(), 12, "{:?}", after.settings.keys());
}
