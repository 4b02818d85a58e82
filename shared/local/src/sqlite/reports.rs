//! Report schedules: the `ReportStore` over the `report_due` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::ReportStore;
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Result, WorkspaceId, WorkspaceScope};
use rusqlite::params;

use super::{SqliteStore, db_error};

#[async_trait]
impl ReportStore for SqliteStore {
    async fn schedule_report(
        &self,
        scope: &WorkspaceScope,
        next: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            match next {
                Some(at) => c.execute(
                    "INSERT INTO report_due (workspace, next_run_at) VALUES (?1, ?2)
                     ON CONFLICT (workspace) DO UPDATE SET next_run_at = excluded.next_run_at",
                    params![ws, sortable_timestamp(at)],
                ),
                None => c.execute("DELETE FROM report_due WHERE workspace = ?1", params![ws]),
            }
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn due_reports(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, DateTime<Utc>)>> {
        let now = sortable_timestamp(now);
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT workspace, next_run_at FROM report_due WHERE next_run_at <= ?1 ORDER BY next_run_at, workspace LIMIT ?2",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![now, limit.clamp(1, 1000)], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (ws, at) = row.map_err(db_error)?;
                let at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| Error::internal("a stored time is unreadable").with_source(e))?
                    .to_utc();
                out.push((WorkspaceId::parse(&ws)?, at));
            }
            Ok(out)
        })
        .await
    }
}
