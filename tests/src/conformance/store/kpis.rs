//! KPI points: upserts that overwrite, and range queries.

use crate::{GA4_SESSIONS, GA4_TOTAL_REVENUE};
use chrono::NaiveDate;
use kpi_core::ports::Store;
use kpi_core::ports::store::KpiQuery;
use kpi_core::{ErrorKind, IntegrationId, JobStatus};

use super::{connected, day, job_for, kpi, now, scope};

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

/// A sync's last write: the job's success and its points land together; a
/// stale version changes neither the job nor (where the store can hold both
/// in one transaction) the points; another workspace's points are refused.
pub async fn a_job_finishes_with_its_points<S: Store>(store: &S) {
    let ws = scope("ws-finish");
    let a = connected(store, "ws-finish", now()).await;
    let b = connected(store, "ws-finish", now()).await;
    let mut job = job_for(&a);
    assert!(store.create_job(&ws, &job).await.unwrap());
    job = store.get_job(&ws, job.id).await.unwrap();
    job.transition(JobStatus::Running, now()).unwrap();
    let running = store.update_job(&ws, &job).await.unwrap();

    let mut done = running.clone();
    done.rows_written = 3;
    done.transition(JobStatus::Succeeded, now()).unwrap();
    let points = vec![
        kpi(&a, GA4_SESSIONS, day(2), "20"),
        kpi(&a, GA4_SESSIONS, day(1), "10"),
        kpi(&a, GA4_TOTAL_REVENUE, day(1), "9.99"),
    ];
    let stored = store
        .update_job_with_kpis(&ws, &done, &points)
        .await
        .unwrap();
    assert_eq!(stored.version, running.version + 1);
    assert_eq!(
        store.get_job(&ws, job.id).await.unwrap().status(),
        JobStatus::Succeeded
    );
    // Points of another integration on the same days sort after by id
    // within a day.
    store
        .upsert_kpis(&ws, &[kpi(&b, GA4_SESSIONS, day(1), "5")])
        .await
        .unwrap();
    let sessions = store
        .query_kpis(&ws, &sessions_of(day(1), day(2), None))
        .await
        .unwrap();
    let mut expected: Vec<(NaiveDate, IntegrationId)> =
        vec![(day(1), a.id), (day(1), b.id), (day(2), a.id)];
    expected.sort_by_key(|(d, i)| (*d, i.to_string()));
    assert_eq!(
        sessions
            .iter()
            .map(|p| (p.date, p.integration))
            .collect::<Vec<_>>(),
        expected,
        "by date, then integration"
    );

    // The same write again is stale: the job is already one version on.
    let mut late = done.clone();
    late.rows_written = 99;
    let err = store
        .update_job_with_kpis(&ws, &late, &[kpi(&a, GA4_SESSIONS, day(3), "30")])
        .await
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::Conflict, "{err}");
    assert_eq!(store.get_job(&ws, job.id).await.unwrap().rows_written, 3);

    // Another workspace's points: refused before anything is written.
    let other = connected(store, "ws-finish-other", now()).await;
    let mut next = job_for(&a);
    assert!(store.create_job(&ws, &next).await.unwrap());
    next = store.get_job(&ws, next.id).await.unwrap();
    next.transition(JobStatus::Running, now()).unwrap();
    let next = store.update_job(&ws, &next).await.unwrap();
    let mut next_done = next.clone();
    next_done.transition(JobStatus::Succeeded, now()).unwrap();
    assert!(
        store
            .update_job_with_kpis(&ws, &next_done, &[kpi(&other, GA4_SESSIONS, day(4), "1")])
            .await
            .is_err()
    );
    assert_eq!(
        store.get_job(&ws, next.id).await.unwrap().status(),
        JobStatus::Running
    );
    let theirs = store
        .query_kpis(
            &scope("ws-finish-other"),
            &sessions_of(day(4), day(4), None),
        )
        .await
        .unwrap();
    assert!(theirs.is_empty());
}

fn sessions_of(from: NaiveDate, to: NaiveDate, integration: Option<IntegrationId>) -> KpiQuery {
    KpiQuery {
        metric: GA4_SESSIONS.metric,
        from,
        to,
        integration,
    }
}
