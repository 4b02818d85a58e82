//! The store contract (see `kpi_core::ports::store`), case by case.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{DateTime, Duration, NaiveDate, Utc};
use kpi_core::job::JobTrigger;
use kpi_core::kpi::Currency;
use kpi_core::metric::MetricSpec;

use crate::{GA4_SESSIONS, GA4_TOTAL_REVENUE};
use kpi_core::page::{Page, PageRequest};
use kpi_core::ports::Store;
use kpi_core::ports::store::{AccountLink, JobFilter, KpiQuery, OAuthState};
use kpi_core::{
    AdminScope, ErrorKind, Integration, IntegrationId, IntegrationStatus, JobId, JobStatus,
    KpiPoint, Provider, SyncJob, WorkspaceId, WorkspaceScope,
};
use rust_decimal::Decimal;

pub fn scope(ws: &str) -> WorkspaceScope {
    WorkspaceScope::for_system(WorkspaceId::parse(ws).unwrap(), "conformance test")
}

fn admin() -> AdminScope {
    AdminScope::for_system("conformance test")
}

/// Truncated to microseconds: what both backends keep of a timestamp.
pub fn now() -> DateTime<Utc> {
    let t = Utc::now();
    DateTime::from_timestamp_micros(t.timestamp_micros()).unwrap()
}

pub fn integration(ws: &str, provider: Provider) -> Integration {
    Integration::new(
        IntegrationId::new_random(),
        WorkspaceId::parse(ws).unwrap(),
        provider,
        format!("{provider} account"),
        now(),
    )
}

async fn connected<S: Store>(store: &S, ws: &str, next_sync: DateTime<Utc>) -> Integration {
    let mut i = integration(ws, kpi_providers::ga4::ID);
    i.transition(IntegrationStatus::Connected, now()).unwrap();
    i.next_sync_at = Some(next_sync);
    store.create_integration(&scope(ws), &i).await.unwrap()
}

fn job_for(i: &Integration) -> SyncJob {
    SyncJob::new(
        JobId::new_time_ordered(),
        i.workspace.clone(),
        i.id,
        i.provider,
        JobTrigger::Schedule,
        None,
        now(),
    )
}

/// Follows cursors until the end, checking no page is larger than asked.
async fn collect_pages<T, F, Fut>(limit: u32, mut fetch: F) -> Vec<T>
where
    F: FnMut(PageRequest) -> Fut,
    Fut: std::future::Future<Output = kpi_core::Result<Page<T>>>,
{
    let mut all = Vec::new();
    let mut request = PageRequest::first(limit);
    for _ in 0..1000 {
        let page = fetch(request.clone()).await.unwrap();
        assert!(page.items.len() <= limit as usize, "page larger than limit");
        all.extend(page.items);
        match page.next {
            Some(cursor) => request = PageRequest::after(limit, cursor),
            None => return all,
        }
    }
    panic!("pagination did not end");
}

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
    let mut moved = job.clone();
    moved.workspace = b.workspace().clone();
    assert!(store.update_job(&b, &moved).await.is_err());

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

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, d).unwrap()
}

fn kpi(i: &Integration, metric: MetricSpec, date: NaiveDate, value: &str) -> KpiPoint {
    let currency =
        (metric.unit == kpi_core::metric::Unit::Currency).then(|| Currency::parse("EUR").unwrap());
    KpiPoint::new(
        i.workspace.clone(),
        i.id,
        metric,
        date,
        Decimal::from_str(value).unwrap(),
        currency,
    )
    .unwrap()
}

pub async fn kpi_upsert_overwrites_and_queries_ranges<S: Store>(store: &S) {
    let ws = scope("ws-kpi");
    let a = connected(store, "ws-kpi", now()).await;
    let b = connected(store, "ws-kpi", now()).await;
    // 31 days x 2 integrations: more than one write batch.
    let mut points = Vec::new();
    for d in 1..=31 {
        points.push(kpi(&a, GA4_SESSIONS, day(d), &format!("{d}")));
        points.push(kpi(&b, GA4_SESSIONS, day(d), "1"));
    }
    points.push(kpi(&a, GA4_TOTAL_REVENUE, day(1), "1234.5678901234"));
    store.upsert_kpis(&ws, &points).await.unwrap();

    // Re-sync of an overlapping window, with a duplicate key inside the batch.
    let resync = vec![
        kpi(&a, GA4_SESSIONS, day(30), "300"),
        kpi(&a, GA4_SESSIONS, day(31), "0"),
        kpi(&a, GA4_SESSIONS, day(31), "310"),
    ];
    store.upsert_kpis(&ws, &resync).await.unwrap();

    let all = store
        .query_kpis(
            &ws,
            &KpiQuery {
                metric: GA4_SESSIONS.metric,
                from: day(1),
                to: day(31),
                integration: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(all.len(), 62, "overwritten, never duplicated");
    assert!(all.windows(2).all(|w| w[0].date <= w[1].date), "by date");

    let only_a = store
        .query_kpis(
            &ws,
            &KpiQuery {
                metric: GA4_SESSIONS.metric,
                from: day(29),
                to: day(31),
                integration: Some(a.id),
            },
        )
        .await
        .unwrap();
    let values: Vec<String> = only_a.iter().map(|p| p.value.to_string()).collect();
    assert_eq!(values, ["29", "300", "310"]);

    let revenue = store
        .query_kpis(
            &ws,
            &KpiQuery {
                metric: GA4_TOTAL_REVENUE.metric,
                from: day(1),
                to: day(1),
                integration: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        revenue[0].value.to_string(),
        "1234.5678901234",
        "decimals kept exactly"
    );
    assert_eq!(revenue[0].currency.as_ref().unwrap().as_str(), "EUR");
}

fn oauth_state(ws: &str, key: &str, expires_at: DateTime<Utc>) -> OAuthState {
    OAuthState {
        key: key.into(),
        workspace: WorkspaceId::parse(ws).unwrap(),
        user: "user-1".into(),
        provider: kpi_providers::ga4::ID,
        integration: None,
        browser_binding: "binding-hash".into(),
        pkce_verifier: Some("verifier".into()),
        return_to: Some("/settings/integrations".into()),
        expires_at,
    }
}

pub async fn oauth_state_is_consumed_once<S: Store + 'static>(store: &S) {
    let ws = scope("ws-oauth");
    let t = now();
    let state = oauth_state("ws-oauth", "state-hash-1", t + Duration::minutes(10));
    store.put_oauth_state(&ws, &state).await.unwrap();
    assert!(
        store.put_oauth_state(&ws, &state).await.is_err(),
        "keys are unique"
    );
    let (c1, c2) = tokio::join!(
        store.consume_oauth_state("state-hash-1", t),
        store.consume_oauth_state("state-hash-1", t)
    );
    let winners: Vec<_> = [c1.unwrap(), c2.unwrap()].into_iter().flatten().collect();
    assert_eq!(winners.len(), 1, "exactly one consumer wins");
    assert_eq!(winners[0], state);
    assert!(
        store
            .consume_oauth_state("state-hash-1", t)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .consume_oauth_state("never-issued", t)
            .await
            .unwrap()
            .is_none()
    );
    // A scope cannot store a state for another workspace.
    assert!(
        store
            .put_oauth_state(&scope("ws-x"), &oauth_state("ws-oauth", "k2", t))
            .await
            .is_err()
    );
}

pub async fn many_concurrent_consumers_one_winner<S: Store + 'static>(store: &S) {
    let ws = scope("ws-oauth");
    let t = now();
    store
        .put_oauth_state(
            &ws,
            &oauth_state("ws-oauth", "contended", t + Duration::minutes(10)),
        )
        .await
        .unwrap();
    let results =
        futures::future::join_all((0..8).map(|_| store.consume_oauth_state("contended", t))).await;
    assert_eq!(results.into_iter().filter_map(|r| r.unwrap()).count(), 1);
}

pub async fn expiry_is_honoured_before_deletion<S: Store>(store: &S) {
    let ws = scope("ws-exp");
    let t = now();
    store
        .put_oauth_state(
            &ws,
            &oauth_state("ws-exp", "old-state", t + Duration::minutes(10)),
        )
        .await
        .unwrap();
    // Eleven minutes later the record may still exist physically, but is expired.
    let later = t + Duration::minutes(11);
    assert!(
        store
            .consume_oauth_state("old-state", later)
            .await
            .unwrap()
            .is_none()
    );

    let until = t + Duration::hours(24);
    assert!(store.first_seen("delivery-1", until, t).await.unwrap());
    assert!(
        !store
            .first_seen("delivery-1", until, t + Duration::hours(1))
            .await
            .unwrap()
    );
    assert!(
        store
            .first_seen(
                "delivery-1",
                until + Duration::hours(24),
                until + Duration::seconds(1)
            )
            .await
            .unwrap(),
        "an expired dedupe record counts as absent"
    );
    assert!(
        !store
            .first_seen("delivery-1", until, until + Duration::seconds(2))
            .await
            .unwrap()
    );
    // A first caller that could not act hands the key back.
    store.forget("delivery-1").await.unwrap();
    store.forget("delivery-1").await.unwrap();
    assert!(
        store
            .first_seen("delivery-1", until, until + Duration::seconds(3))
            .await
            .unwrap(),
        "forgotten: first again"
    );
}

pub async fn dedupe_has_one_first_under_concurrency<S: Store>(store: &S) {
    let t = now();
    let until = t + Duration::hours(1);
    let (a, b, c) = tokio::join!(
        store.first_seen("webhook-42", until, t),
        store.first_seen("webhook-42", until, t),
        store.first_seen("webhook-42", until, t)
    );
    let firsts = [a.unwrap(), b.unwrap(), c.unwrap()]
        .iter()
        .filter(|x| **x)
        .count();
    assert_eq!(firsts, 1);
}

pub async fn leases_are_exclusive_until_they_expire<S: Store>(store: &S) {
    let t = now();
    let name = "refresh:integration-1";
    assert!(
        store
            .try_acquire_lease(name, "worker-a", t + Duration::seconds(30), t)
            .await
            .unwrap()
    );
    assert!(
        !store
            .try_acquire_lease(name, "worker-b", t + Duration::seconds(30), t)
            .await
            .unwrap()
    );
    assert!(
        store
            .try_acquire_lease(name, "worker-a", t + Duration::seconds(60), t)
            .await
            .unwrap(),
        "the holder may extend"
    );
    store.release_lease(name, "worker-b").await.unwrap(); // not the holder: no effect
    assert!(
        !store
            .try_acquire_lease(name, "worker-b", t + Duration::seconds(90), t)
            .await
            .unwrap()
    );
    let later = t + Duration::seconds(61);
    assert!(
        store
            .try_acquire_lease(name, "worker-b", later + Duration::seconds(30), later)
            .await
            .unwrap(),
        "an expired lease can be taken"
    );
    store.release_lease(name, "worker-b").await.unwrap();
    assert!(
        store
            .try_acquire_lease(name, "worker-c", later + Duration::seconds(30), later)
            .await
            .unwrap()
    );
}

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

/// Every case, for test files that want to name them all.
#[macro_export]
macro_rules! all_store_cases {
    ($mac:ident, $make:path) => {
        $crate::$mac!($make;
            integration_crud_round_trip,
            other_workspace_sees_nothing,
            conditional_write_loses_to_concurrent_writer,
            pagination_across_pages,
            due_integrations_are_connected_and_due,
            job_and_integration_commit_together,
            jobs_by_status_for_operators,
            kpi_upsert_overwrites_and_queries_ranges,
            oauth_state_is_consumed_once,
            many_concurrent_consumers_one_winner,
            expiry_is_honoured_before_deletion,
            dedupe_has_one_first_under_concurrency,
            leases_are_exclusive_until_they_expire,
            email_records_and_suppressions,
            account_links_count_the_integrations_of_one_provider_account,
            workspace_settings_are_per_workspace_and_overwritten,
            alert_rules_and_their_history,
            due_reports_come_from_an_index,
            ephemeral_records_expire_and_are_taken_once,
            concurrent_changes_to_one_integration_all_land,
        );
    };
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

pub async fn alert_rules_and_their_history<S: Store>(store: &S) {
    use kpi_core::alert::{AlertRule, AlertState, Comparison, Condition, Window};
    use kpi_core::ids::AlertId;
    use kpi_core::ports::store::{AlertDay, AlertEvent};
    let ws = scope("ws-alerts");
    let t = now();
    let rule = AlertRule {
        id: AlertId::new_time_ordered(),
        workspace: WorkspaceId::parse("ws-alerts").unwrap(),
        name: "Low sessions".into(),
        metric: kpi_core::Metric::new("ga4.sessions"),
        integration: None,
        condition: Condition::Threshold {
            comparison: Comparison::Below,
            threshold: 10.into(),
        },
        window: Window::Day,
        recipients: vec!["owner@example.com".into()],
        cooldown_hours: 24,
        notify_recovery: false,
        enabled: true,
        state: AlertState::default(),
        version: 0,
        created_at: t,
        updated_at: t,
    };
    let created = store.create_alert(&ws, &rule).await.unwrap();
    assert_eq!(created.version, 1);
    assert!(
        store
            .create_alert(&ws, &rule)
            .await
            .unwrap_err()
            .is_conflict()
    );
    assert!(store.create_alert(&scope("ws-other"), &rule).await.is_err());
    assert_eq!(store.get_alert(&ws, rule.id).await.unwrap(), created);
    assert!(
        store
            .get_alert(&scope("ws-other"), rule.id)
            .await
            .unwrap_err()
            .is_not_found()
    );
    let mut changed = created.clone();
    changed.state.firing = true;
    let updated = store.update_alert(&ws, &changed).await.unwrap();
    assert_eq!(updated.version, 2);
    assert!(
        store
            .update_alert(&ws, &changed)
            .await
            .unwrap_err()
            .is_conflict(),
        "a stale version loses"
    );
    assert_eq!(store.list_alerts(&ws).await.unwrap(), vec![updated.clone()]);
    assert!(
        store
            .list_alerts(&scope("ws-other"))
            .await
            .unwrap()
            .is_empty()
    );

    let event = |id: &str, at| AlertEvent {
        id: id.into(),
        rule: rule.id,
        workspace: WorkspaceId::parse("ws-alerts").unwrap(),
        kind: "fired".into(),
        days: vec![AlertDay {
            date: t.date_naive(),
            value: Some(5.into()),
            previous: None,
            change_percent: None,
        }],
        emailed: true,
        reason: None,
        at,
    };
    assert!(store.add_alert_event(&ws, &event("e1", t)).await.unwrap());
    assert!(
        !store
            .add_alert_event(&ws, &event("e1", t + Duration::seconds(5)))
            .await
            .unwrap(),
        "the same event once"
    );
    assert!(
        store
            .add_alert_event(&ws, &event("e2", t + Duration::minutes(1)))
            .await
            .unwrap()
    );
    let history = store.list_alert_events(&ws, rule.id, 10).await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(),
        vec!["e2", "e1"]
    );
    assert!(
        store
            .list_alert_events(&scope("ws-other"), rule.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(store.delete_alert(&ws, rule.id).await.unwrap());
    assert!(!store.delete_alert(&ws, rule.id).await.unwrap());
    assert!(
        store
            .list_alert_events(&ws, rule.id, 10)
            .await
            .unwrap()
            .is_empty()
    );
}

pub async fn due_reports_come_from_an_index<S: Store>(store: &S) {
    let t = now();
    let (a, b, c) = (
        scope("ws-report-a"),
        scope("ws-report-b"),
        scope("ws-report-c"),
    );
    store
        .schedule_report(&a, Some(t - Duration::hours(1)))
        .await
        .unwrap();
    store
        .schedule_report(&b, Some(t + Duration::hours(1)))
        .await
        .unwrap();
    store.schedule_report(&c, Some(t)).await.unwrap();
    let due = |at| async move {
        store
            .due_reports(at, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|(ws, _)| ws.as_str().starts_with("ws-report-"))
            .map(|(ws, _)| ws.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        due(t).await,
        vec!["ws-report-a", "ws-report-c"],
        "earliest first, due at now included"
    );
    // Rescheduling moves the entry; unscheduling removes it.
    store
        .schedule_report(&a, Some(t + Duration::days(7)))
        .await
        .unwrap();
    store.schedule_report(&c, None).await.unwrap();
    assert!(due(t).await.is_empty());
    assert_eq!(due(t + Duration::hours(2)).await, vec!["ws-report-b"]);
    assert_eq!(
        due(t + Duration::days(8)).await,
        vec!["ws-report-b", "ws-report-a"]
    );
    assert_eq!(
        store
            .due_reports(t + Duration::days(8), 1)
            .await
            .unwrap()
            .len(),
        1,
        "limit"
    );
}

pub async fn ephemeral_records_expire_and_are_taken_once<S: Store>(store: &S) {
    let t = Utc::now();
    let body = serde_json::json!({"sub": "u-1", "csrf": "c"});
    store
        .put_ephemeral("session-a", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(
        store.get_ephemeral("session-a", t).await.unwrap(),
        Some(body.clone())
    );
    assert_eq!(
        store.get_ephemeral("session-a", t).await.unwrap(),
        Some(body.clone()),
        "a get leaves it"
    );
    assert_eq!(
        store
            .get_ephemeral("session-a", t + Duration::minutes(11))
            .await
            .unwrap(),
        None,
        "expired before it is deleted"
    );
    // Replaced whole.
    let newer = serde_json::json!({"sub": "u-1", "csrf": "d"});
    store
        .put_ephemeral("session-a", &newer, t + Duration::minutes(20))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_ephemeral("session-a", t + Duration::minutes(15))
            .await
            .unwrap(),
        Some(newer.clone())
    );
    store.delete_ephemeral("session-a").await.unwrap();
    store.delete_ephemeral("session-a").await.unwrap();
    assert_eq!(store.get_ephemeral("session-a", t).await.unwrap(), None);

    // Taken once, by one of many; an expired one by none.
    store
        .put_ephemeral("attempt-1", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    let takers =
        futures::future::join_all((0..6).map(|_| store.take_ephemeral("attempt-1", t))).await;
    let won: Vec<_> = takers
        .into_iter()
        .map(|r| r.unwrap())
        .filter(Option::is_some)
        .collect();
    assert_eq!(won, vec![Some(body.clone())]);
    assert_eq!(store.get_ephemeral("attempt-1", t).await.unwrap(), None);
    store
        .put_ephemeral("attempt-2", &body, t + Duration::minutes(10))
        .await
        .unwrap();
    assert_eq!(
        store
            .take_ephemeral("attempt-2", t + Duration::minutes(10))
            .await
            .unwrap(),
        None
    );
    assert_eq!(store.take_ephemeral("never-made", t).await.unwrap(), None);
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
