//! How many store reads finding due reports takes among many workspaces: the
//! due-report index answers with the due ones only, a read per page of 200,
//! however many workspaces have a report scheduled later.

use chrono::{Duration, Utc};
use kpi_core::ports::Store;
use kpi_core::{WorkspaceId, WorkspaceScope};

/// Schedules `total` workspaces, `due` of them due now; returns the reads a
/// scheduler tick makes to find every due one, as the report sender pages.
async fn reads_to_find_due(store: &dyn Store, total: usize, due: usize) -> (usize, usize) {
    let now = Utc::now();
    for n in 0..total {
        let scope = WorkspaceScope::for_system(
            WorkspaceId::parse(&format!("ws-due-{n:05}")).unwrap(),
            "test",
        );
        let at = if n < due {
            now - Duration::minutes(n as i64 % 50)
        } else {
            now + Duration::hours(1 + n as i64 % 100)
        };
        store.schedule_report(&scope, Some(at)).await.unwrap();
    }
    let (mut reads, mut found) = (0, 0);
    loop {
        reads += 1;
        let page = store.due_reports(now, 200).await.unwrap();
        found += page.len();
        // The sender moves each one's next run past `now`.
        for (ws, _) in &page {
            let scope = WorkspaceScope::for_system(ws.clone(), "test");
            store
                .schedule_report(&scope, Some(now + Duration::days(7)))
                .await
                .unwrap();
        }
        if page.len() < 200 {
            return (reads, found);
        }
    }
}

#[tokio::test]
async fn ten_thousand_workspaces_on_sqlite() {
    let (store, _guard) = kpi_tests::fixtures::sqlite_store().await;
    let (reads, found) = reads_to_find_due(&store, 10_000, 250).await;
    assert_eq!(found, 250);
    assert_eq!(
        reads, 2,
        "two pages of at most 200; the 9,750 later ones are never read"
    );
}

#[tokio::test]
async fn workspaces_on_dynamodb() {
    let (store, _guard) = kpi_tests::fixtures::dynamo_store().await;
    // Fewer on the emulator (each schedule is three calls); the reads do not
    // depend on how many are scheduled later.
    let (reads, found) = reads_to_find_due(&store, 600, 250).await;
    assert_eq!(found, 250);
    assert_eq!(reads, 2);
}
