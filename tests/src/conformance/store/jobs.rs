//! Sync jobs: due integrations, a job committed with its integration, jobs by status.

use std::collections::BTreeSet;

use chrono::Duration;
use kpi_core::page::PageRequest;
use kpi_core::ports::Store;
use kpi_core::ports::store::JobFilter;
use kpi_core::{ErrorKind, IntegrationStatus, JobId, JobStatus, WorkspaceId};

use super::{admin, collect_pages, connected, integration, job_for, now, scope};

pub async fn due_integrations_are_connected_and_due<S: Store>(store: &S) {
    let t = now();
    let ws = scope("ws-due");
    let mut due = Vec::new();
    for k in 0..9 {
        due.push(
            connected(store, "ws-due", t - Duration::minutes(10 + k))
                .await
                .id,
        );
    }
    let exactly_now = connected(store, "ws-due", t).await.id;
    due.push(exactly_now);
    connected(store, "ws-due", t + Duration::minutes(5)).await; // not yet
    store
        .create_integration(&ws, &integration("ws-due", kpi_providers::ga4::ID))
        .await
        .unwrap(); // pending, never due
    let mut paused = connected(store, "ws-due", t - Duration::hours(1)).await;
    paused.transition(IntegrationStatus::Paused, t).unwrap();
    store.update_integration(&ws, &paused).await.unwrap();

    let found = collect_pages(4, |p| async move { store.due_integrations(t, &p).await }).await;
    let found_ids: Vec<_> = found.iter().map(|d| d.integration).collect();
    assert_eq!(
        found_ids.iter().copied().collect::<BTreeSet<_>>(),
        due.iter().copied().collect::<BTreeSet<_>>()
    );
    assert_eq!(found_ids.len(), due.len());
    assert!(
        found
            .windows(2)
            .all(|w| w[0].next_sync_at <= w[1].next_sync_at),
        "earliest first"
    );
    assert!(
        found
            .iter()
            .all(|d| d.workspace.as_str() == "ws-due" && d.provider == kpi_providers::ga4::ID)
    );

    // Moving the next sync time takes an integration off the due list.
    let mut moved = store.get_integration(&ws, exactly_now).await.unwrap();
    moved.next_sync_at = Some(t + Duration::hours(6));
    store.update_integration(&ws, &moved).await.unwrap();
    let after = collect_pages(50, |p| async move { store.due_integrations(t, &p).await }).await;
    assert_eq!(after.len(), due.len() - 1);
}

pub async fn job_and_integration_commit_together<S: Store>(store: &S) {
    let ws = scope("ws-tx");
    let t = now();
    let i = connected(store, "ws-tx", t).await;
    // Two scheduler runs for the same tick read the same integration version;
    // the second to write loses. (Run one after the other: moto rolls a failed
    // transaction back by restoring a snapshot of the whole table, which would
    // also undo a concurrent winner; DynamoDB itself does not.)
    let mut a = i.clone();
    a.next_sync_at = Some(i.following_sync(t));
    let b = a.clone();
    let (job_a, job_b) = (job_for(&i), job_for(&i));
    store
        .create_job_with_integration(&ws, &job_a, &a)
        .await
        .unwrap();
    let loser = store.create_job_with_integration(&ws, &job_b, &b).await;
    assert_eq!(loser.unwrap_err().kind(), &ErrorKind::Conflict);
    let jobs = store
        .list_jobs(&ws, i.id, &PageRequest::first(10))
        .await
        .unwrap();
    assert_eq!(jobs.items.len(), 1, "one job for one tick");
    let stored = store.get_integration(&ws, i.id).await.unwrap();
    assert_eq!(stored.version, i.version + 1);

    // A job id that already exists rolls back the integration write too.
    let mut next = stored.clone();
    next.next_sync_at = Some(t + Duration::days(1));
    let err = store
        .create_job_with_integration(&ws, &jobs.items[0], &next)
        .await
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Conflict);
    assert_eq!(store.get_integration(&ws, i.id).await.unwrap(), stored);
}

pub async fn jobs_by_status_for_operators<S: Store>(store: &S) {
    let ws = scope("ws-ops");
    let i = connected(store, "ws-ops", now()).await;
    let job = job_for(&i);
    assert!(store.create_job(&ws, &job).await.unwrap());
    assert!(
        !store.create_job(&ws, &job).await.unwrap(),
        "create is idempotent"
    );
    let mut dead_ids = Vec::new();
    for _ in 0..6 {
        let j = job_for(&i);
        store.create_job(&ws, &j).await.unwrap();
        let mut j = store.get_job(&ws, j.id).await.unwrap();
        j.transition(JobStatus::Running, now()).unwrap();
        let mut j = store.update_job(&ws, &j).await.unwrap();
        j.transition(JobStatus::Dead, now()).unwrap();
        store.update_job(&ws, &j).await.unwrap();
        dead_ids.push(j.id);
    }
    let filter = |provider, workspace: Option<&str>| JobFilter {
        status: JobStatus::Dead,
        provider,
        workspace: workspace.map(|w| WorkspaceId::parse(w).unwrap()),
        since: None,
        until: None,
    };
    let f = filter(None, None);
    let dead = collect_pages(4, |p| {
        let f = f.clone();
        async move { store.list_jobs_by_status(&admin(), &f, &p).await }
    })
    .await;
    dead_ids.reverse();
    assert_eq!(
        dead.iter().map(|j| j.id).collect::<Vec<_>>(),
        dead_ids,
        "latest first"
    );
    assert!(
        dead.iter()
            .all(|j| j.status() == JobStatus::Dead && j.attempts == 1)
    );

    let none = store
        .list_jobs_by_status(
            &admin(),
            &filter(Some(kpi_providers::meta::ID), None),
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert!(none.items.is_empty());
    let other_ws = store
        .list_jobs_by_status(
            &admin(),
            &filter(None, Some("ws-nobody")),
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert!(other_ws.items.is_empty());
    let mut windowed = filter(Some(kpi_providers::ga4::ID), Some("ws-ops"));
    windowed.since = Some(now() + Duration::hours(1));
    assert!(
        store
            .list_jobs_by_status(&admin(), &windowed, &PageRequest::first(50))
            .await
            .unwrap()
            .items
            .is_empty()
    );
    windowed.since = Some(now() - Duration::hours(1));
    windowed.until = Some(now() + Duration::hours(1));
    let windowed = collect_pages(50, |p| {
        let f = windowed.clone();
        async move { store.list_jobs_by_status(&admin(), &f, &p).await }
    })
    .await;
    assert_eq!(windowed.len(), 6);
    let queued = store
        .list_jobs_by_status(
            &admin(),
            &JobFilter {
                status: JobStatus::Queued,
                ..filter(None, None)
            },
            &PageRequest::first(50),
        )
        .await
        .unwrap();
    assert_eq!(queued.items.len(), 1);

    let found = store.find_job(&admin(), dead_ids[0]).await.unwrap();
    assert_eq!(found.workspace, *ws.workspace());
    assert_eq!(
        store
            .find_job(&admin(), JobId::new_time_ordered())
            .await
            .unwrap_err()
            .kind(),
        &ErrorKind::NotFound
    );
}
