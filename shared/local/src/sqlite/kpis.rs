//! KPI points: the `KpiStore` over the `kpi_points` table.

use async_trait::async_trait;
use kpi_core::ports::store::{KpiQuery, KpiStore};
use kpi_core::{KpiPoint, Result, WorkspaceScope};
use rusqlite::params;

use super::{SqliteStore, db_error, from_json, to_json};

#[async_trait]
impl KpiStore for SqliteStore {
    async fn upsert_kpis(&self, scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<usize> {
        for p in points {
            scope.check(&p.workspace)?;
        }
        let rows = points
            .iter()
            .map(|p| {
                Ok((
                    p.workspace.to_string(),
                    p.metric.to_string(),
                    p.date.to_string(),
                    p.integration.to_string(),
                    to_json(p)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            {
                let mut stmt = tx
                    .prepare(
                        "INSERT INTO kpi_points (workspace, metric, date, integration, body)
                         VALUES (?1, ?2, ?3, ?4, ?5)
                         ON CONFLICT (workspace, metric, date, integration)
                         DO UPDATE SET body = excluded.body",
                    )
                    .map_err(db_error)?;
                for row in &rows {
                    stmt.execute(params![row.0, row.1, row.2, row.3, row.4])
                        .map_err(db_error)?;
                }
            }
            tx.commit().map_err(db_error)?;
            Ok(rows.len())
        })
        .await
    }

    async fn query_kpis(&self, scope: &WorkspaceScope, query: &KpiQuery) -> Result<Vec<KpiPoint>> {
        let ws = scope.workspace().to_string();
        let q = query.clone();
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT body FROM kpi_points
                     WHERE workspace = ?1 AND metric = ?2 AND date >= ?3 AND date <= ?4
                       AND (?5 IS NULL OR integration = ?5)
                     ORDER BY date, integration",
                )
                .map_err(db_error)?;
            let bodies = stmt
                .query_map(
                    params![
                        ws,
                        q.metric.as_str(),
                        q.from.to_string(),
                        q.to.to_string(),
                        q.integration.map(|i| i.to_string())
                    ],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db_error)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_error)?;
            bodies.iter().map(|b| from_json(b)).collect()
        })
        .await
    }
}
