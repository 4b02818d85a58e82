//! KPI points: upserts that overwrite, and range queries.

use crate::{GA4_SESSIONS, GA4_TOTAL_REVENUE};
use kpi_core::ports::Store;
use kpi_core::ports::store::KpiQuery;

use super::{connected, day, kpi, now, scope};

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
