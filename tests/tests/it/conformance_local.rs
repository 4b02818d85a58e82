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
    use kpi_core::kpi::Currency;
    use kpi_core::metric::Unit;
    use kpi_core::ports::store::KpiQuery;
    use kpi_core::ports::store::{JobStore, KpiStore};
    use kpi_core::{
        IntegrationId, JobId, JobStatus, KpiPoint, SyncJob, WorkspaceId, WorkspaceScope,
    };
    use kpi_local::{KPI_QUERY, SqliteStore};
    use kpi_tests::moto::{remove_dir, temp_dir};
    use kpi_tests::{GA4_SESSIONS, GA4_TOTAL_REVENUE};
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

    /// The two earlier layouts: every key named its workspace, integration
    /// and metric; keyed by metric and date first (with the whole point as
    /// the body), then by integration first (with a series table of names).
    const FIRST_LAYOUT: &str = "CREATE TABLE kpi_points (
            workspace TEXT NOT NULL, metric TEXT NOT NULL, date TEXT NOT NULL,
            integration TEXT NOT NULL, body TEXT NOT NULL,
            PRIMARY KEY (workspace, metric, date, integration)
         ) WITHOUT ROWID;";
    const SECOND_LAYOUT: &str = "CREATE TABLE kpi_points (
            workspace TEXT NOT NULL, integration TEXT NOT NULL, metric TEXT NOT NULL,
            date TEXT NOT NULL, body TEXT NOT NULL,
            PRIMARY KEY (workspace, integration, metric, date)
         ) WITHOUT ROWID;
         CREATE TABLE kpi_series (
            workspace TEXT NOT NULL, metric TEXT NOT NULL, integration TEXT NOT NULL,
            PRIMARY KEY (workspace, metric, integration)
         ) WITHOUT ROWID;";

    /// A dev server's database of an earlier KPI layout opens with every
    /// point it held, queryable, and opens again unchanged; new points join
    /// the series it brought.
    #[tokio::test]
    async fn a_database_of_an_earlier_kpi_layout_opens_with_its_points() {
        for (layout, second) in [(FIRST_LAYOUT, false), (SECOND_LAYOUT, true)] {
            let dir = temp_dir("kpi-layout");
            let path = dir.join("kpi.db");
            let (a, b) = (IntegrationId::new_random(), IntegrationId::new_random());
            {
                let c = rusqlite::Connection::open(&path).unwrap();
                c.execute_batch(layout).unwrap();
                let revenue = KpiPoint::new(
                    WorkspaceId::parse("ws-layout").unwrap(),
                    b,
                    GA4_TOTAL_REVENUE,
                    NaiveDate::from_ymd_opt(2026, 11, 2).unwrap(),
                    Decimal::from_str("12.3400").unwrap(),
                    Some(Currency::parse("EUR").unwrap()),
                )
                .unwrap();
                for p in [
                    point(a, 1, "10"),
                    point(a, 2, "20"),
                    point(b, 2, "7"),
                    revenue,
                ] {
                    let (ws, metric, date, integration) = (
                        p.workspace.as_str(),
                        p.metric.as_str(),
                        p.date.to_string(),
                        p.integration.to_string(),
                    );
                    if second {
                        let body = serde_json::json!({
                            "value": p.value, "unit": p.unit, "currency": p.currency
                        });
                        c.execute(
                            "INSERT INTO kpi_points VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![ws, integration, metric, date, body.to_string()],
                        )
                        .unwrap();
                        c.execute(
                            "INSERT OR IGNORE INTO kpi_series VALUES (?1, ?2, ?3)",
                            rusqlite::params![ws, metric, integration],
                        )
                        .unwrap();
                    } else {
                        c.execute(
                            "INSERT INTO kpi_points VALUES (?1, ?2, ?3, ?4, ?5)",
                            rusqlite::params![
                                ws,
                                metric,
                                date,
                                integration,
                                serde_json::to_string(&p).unwrap()
                            ],
                        )
                        .unwrap();
                    }
                }
            }
            let mut day_two = [(a.to_string(), "20"), (b.to_string(), "7")];
            day_two.sort();
            let mut expected: Vec<&str> = std::iter::once("10")
                .chain(day_two.iter().map(|(_, v)| *v))
                .collect();
            for round in 0..2 {
                let store = SqliteStore::open(&path).unwrap();
                if round == 1 {
                    store
                        .upsert_kpis(&scope(), &[point(a, 3, "30"), point(a, 1, "11")])
                        .await
                        .unwrap();
                    expected[0] = "11";
                    expected.push("30");
                }
                let found = store.query_kpis(&scope(), &sessions(1, 3)).await.unwrap();
                let values: Vec<String> = found.iter().map(|p| p.value.to_string()).collect();
                assert_eq!(values, expected, "second layout: {second}");
                let revenue = KpiQuery {
                    metric: GA4_TOTAL_REVENUE.metric,
                    ..sessions(1, 3)
                };
                let found = store.query_kpis(&scope(), &revenue).await.unwrap();
                assert_eq!(found.len(), 1);
                assert_eq!(
                    found[0].value.to_string(),
                    "12.3400",
                    "decimals kept exactly"
                );
                assert_eq!(found[0].unit, Unit::Currency);
                assert_eq!(found[0].currency.as_ref().map(|c| c.as_str()), Some("EUR"));
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
            let series: i64 = c
                .query_row("SELECT count(*) FROM kpi_series", [], |r| r.get(0))
                .unwrap();
            assert_eq!(series, 3, "one series per integration and metric");
            remove_dir(&dir);
        }
    }

    /// Points given twice for the same date in one batch: the last one stands.
    #[tokio::test]
    async fn the_last_of_a_batch_s_points_of_a_date_stands() {
        let store = SqliteStore::open_in_memory().unwrap();
        let a = IntegrationId::new_random();
        let written = store
            .upsert_kpis(
                &scope(),
                &[point(a, 2, "1"), point(a, 1, "5"), point(a, 2, "3")],
            )
            .await
            .unwrap();
        assert_eq!(written, 3);
        let found = store.query_kpis(&scope(), &sessions(1, 2)).await.unwrap();
        let values: Vec<String> = found.iter().map(|p| p.value.to_string()).collect();
        assert_eq!(values, ["5", "3"]);
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
        // The series (alias s) by workspace and metric, from their unique
        // key alone, then each series' dates (alias p) by its number.
        assert!(
            plan.iter().any(|l| l.starts_with(
                "SEARCH s USING COVERING INDEX sqlite_autoindex_kpi_series_1 (workspace=? AND metric=?"
            )),
            "{plan:?}"
        );
        assert!(
            plan.iter()
                .any(|l| l.starts_with("SEARCH p USING PRIMARY KEY (series=? AND date>")),
            "{plan:?}"
        );
        assert!(
            plan.iter().all(|l| !l.starts_with("SCAN")),
            "no scan: {plan:?}"
        );
        remove_dir(&dir);
    }
}
