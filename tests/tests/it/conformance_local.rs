//! The embedded backends (SQLite store, in-process queue, local master key) against
//! the conformance suites.

mod store {
    kpi_tests::all_store_cases!(store_conformance, kpi_tests::fixtures::sqlite_store);
}

mod queue {
    kpi_tests::all_queue_cases!(kpi_tests::fixtures::local_queue);
}

mod vault {
    use kpi_tests::conformance::vault;
    use kpi_tests::fixtures;

    #[tokio::test]
    async fn round_trip() {
        vault::round_trip(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn bound_to_its_context() {
        vault::bound_to_its_context(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn tampering_is_detected() {
        vault::tampering_is_detected(&fixtures::local_vault()).await;
    }

    #[tokio::test]
    async fn store_holds_no_plaintext() {
        let (store, _guard) = fixtures::sqlite_store().await;
        let v = fixtures::local_vault();
        vault::store_holds_no_plaintext(&store, &v, || async {
            let mut rows = store.dump_table("integrations").await.unwrap();
            rows.extend(store.dump_table("oauth_states").await.unwrap());
            rows
        })
        .await;
    }
}

/// The KPI table's layout on SQLite: what the conformance suite cannot see.
mod kpi_layout {
    use std::str::FromStr;

    use chrono::{NaiveDate, Utc};
    use kpi_core::job::JobTrigger;
    use kpi_core::ports::store::KpiQuery;
    use kpi_core::ports::store::{JobStore, KpiStore};
    use kpi_core::{
        IntegrationId, JobId, JobStatus, KpiPoint, SyncJob, WorkspaceId, WorkspaceScope,
    };
    use kpi_local::{KPI_QUERY, SqliteStore};
    use kpi_tests::GA4_SESSIONS;
    use kpi_tests::moto::{remove_dir, temp_dir};
    use rust_decimal::Decimal;

    fn scope() -> WorkspaceScope {
        WorkspaceScope::for_system(WorkspaceId::parse("ws-layout").unwrap(), "test")
    }

    fn point(integration: IntegrationId, day: u32, value: &str) -> KpiPoint {
        KpiPoint::new(
            WorkspaceId::parse("ws-layout").unwrap(),
            integration,
            GA4_SESSIONS,
            NaiveDate::from_ymd_opt(2026, 11, day).unwrap(),
            Decimal::from_str(value).unwrap(),
            None,
        )
        .unwrap()
    }

    fn sessions(from: u32, to: u32) -> KpiQuery {
        KpiQuery {
            metric: GA4_SESSIONS.metric,
            from: NaiveDate::from_ymd_opt(2026, 11, from).unwrap(),
            to: NaiveDate::from_ymd_opt(2026, 11, to).unwrap(),
            integration: None,
        }
    }

    /// A dev server's database from before the integration-first layout opens
    /// with every point it held, queryable, and opens again unchanged.
    #[tokio::test]
    async fn a_database_of_the_first_kpi_layout_opens_with_its_points() {
        let dir = temp_dir("kpi-layout");
        let path = dir.join("kpi.db");
        let (a, b) = (IntegrationId::new_random(), IntegrationId::new_random());
        {
            let c = rusqlite::Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE kpi_points (
                    workspace TEXT NOT NULL, metric TEXT NOT NULL, date TEXT NOT NULL,
                    integration TEXT NOT NULL, body TEXT NOT NULL,
                    PRIMARY KEY (workspace, metric, date, integration)
                 ) WITHOUT ROWID;",
            )
            .unwrap();
            for p in [point(a, 1, "10"), point(a, 2, "20"), point(b, 2, "7")] {
                c.execute(
                    "INSERT INTO kpi_points VALUES (?1, ?2, ?3, ?4, ?5)",
                    rusqlite::params![
                        p.workspace.as_str(),
                        p.metric.as_str(),
                        p.date.to_string(),
                        p.integration.to_string(),
                        serde_json::to_string(&p).unwrap()
                    ],
                )
                .unwrap();
            }
        }
        for _ in 0..2 {
            let store = SqliteStore::open(&path).unwrap();
            let found = store.query_kpis(&scope(), &sessions(1, 2)).await.unwrap();
            let values: Vec<String> = found.iter().map(|p| p.value.to_string()).collect();
            let mut day_two = [(a.to_string(), "20"), (b.to_string(), "7")];
            day_two.sort();
            let expected: Vec<&str> = std::iter::once("10")
                .chain(day_two.iter().map(|(_, v)| *v))
                .collect();
            assert_eq!(values, expected);
        }
        let c = rusqlite::Connection::open(&path).unwrap();
        let tables: Vec<String> = c
            .prepare("SELECT name FROM sqlite_master WHERE type = 'table' AND name LIKE 'kpi%' ORDER BY name")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            tables,
            ["kpi_points", "kpi_series"],
            "the old table is gone"
        );
        remove_dir(&dir);
    }

    /// The job's success and its points are one transaction here: a stale
    /// job write leaves no point behind.
    #[tokio::test]
    async fn a_stale_job_write_leaves_no_points() {
        let store = SqliteStore::open_in_memory().unwrap();
        let integration = IntegrationId::new_random();
        let mut job = SyncJob::new(
            JobId::new_time_ordered(),
            WorkspaceId::parse("ws-layout").unwrap(),
            integration,
            kpi_providers::ga4::ID,
            JobTrigger::Schedule,
            None,
            Utc::now(),
        );
        assert!(store.create_job(&scope(), &job).await.unwrap());
        job = store.get_job(&scope(), job.id).await.unwrap();
        job.transition(JobStatus::Running, Utc::now()).unwrap();
        let running = store.update_job(&scope(), &job).await.unwrap();
        store.update_job(&scope(), &running).await.unwrap(); // someone else moved it on
        let mut done = running.clone();
        done.transition(JobStatus::Succeeded, Utc::now()).unwrap();
        assert!(
            store
                .update_job_with_kpis(&scope(), &done, &[point(integration, 3, "1")])
                .await
                .unwrap_err()
                .is_conflict()
        );
        assert!(
            store
                .query_kpis(&scope(), &sessions(1, 30))
                .await
                .unwrap()
                .is_empty()
        );
    }

    /// The KPI query reads two index ranges, never a table scan.
    #[tokio::test]
    async fn the_kpi_query_scans_no_table() {
        let dir = temp_dir("kpi-plan");
        let path = dir.join("kpi.db");
        drop(SqliteStore::open(&path).unwrap());
        let c = rusqlite::Connection::open(&path).unwrap();
        let plan: Vec<String> = c
            .prepare(&format!("EXPLAIN QUERY PLAN {KPI_QUERY}"))
            .unwrap()
            .query_map(
                rusqlite::params![
                    "ws",
                    "ga4.sessions",
                    "2026-11-01",
                    "2026-11-30",
                    None::<String>
                ],
                |r| r.get::<_, String>(3),
            )
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        // The series (alias s) by workspace and metric, then each series'
        // dates (alias p) by its whole key prefix.
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH s USING PRIMARY KEY (workspace=? AND metric=?")),
            "{plan:?}"
        );
        assert!(
            plan.iter().any(|l| l.starts_with(
                "SEARCH p USING PRIMARY KEY (workspace=? AND integration=? AND metric=? AND date>"
            )),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|l| !l.starts_with("SCAN")),
            "no scan: {plan:?}"
        );
        remove_dir(&dir);
    }
}
