//! KPI points: the `KpiStore` over the `kpi_points` and `kpi_series` tables.

use async_trait::async_trait;
use kpi_core::kpi::Currency;
use kpi_core::metric::Unit;
use kpi_core::ports::store::{KpiQuery, KpiStore};
use kpi_core::{Error, IntegrationId, KpiPoint, Result, WorkspaceId, WorkspaceScope};
use rusqlite::{Connection, OptionalExtension, Row, params};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::{SqliteStore, db_error, from_json, to_json};

/// What a point's row holds beside its key columns: a sync writes hundreds
/// of rows, and the key is not repeated in the body. (A body of the first
/// layout, the whole point, reads as this too.)
#[derive(Serialize, Deserialize)]
struct Stored {
    value: Decimal,
    unit: Unit,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    currency: Option<Currency>,
}

/// Points of one metric (workspace, metric, from, to, integration or NULL):
/// the metric's series first (CROSS JOIN keeps that order), then each
/// integration's date range. Two index ranges, never a scan (a test reads the
/// plan). The rows come by integration, then date; they are put in date order
/// afterwards, in memory (SQLite would sort them through a temporary B-tree,
/// which cost the KPI query a third of its throughput under load).
pub const KPI_QUERY: &str =
    "SELECT p.integration, p.date, p.body FROM kpi_series s CROSS JOIN kpi_points p
     WHERE s.workspace = ?1 AND s.metric = ?2
       AND (?5 IS NULL OR s.integration = ?5)
       AND p.workspace = s.workspace AND p.integration = s.integration
       AND p.metric = s.metric AND p.date >= ?3 AND p.date <= ?4";

/// A point as its row: workspace, integration, metric, date, body.
pub(super) type PointRow = (String, String, String, String, String);

/// The rows of `points`, each checked to be of the scope's workspace.
pub(super) fn point_rows(scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<Vec<PointRow>> {
    points
        .iter()
        .map(|p| {
            scope.check(&p.workspace)?;
            Ok((
                p.workspace.to_string(),
                p.integration.to_string(),
                p.metric.to_string(),
                p.date.to_string(),
                to_json(&Stored {
                    value: p.value,
                    unit: p.unit,
                    currency: p.currency.clone(),
                })?,
            ))
        })
        .collect()
}

/// The point of a row the KPI query read (integration, date, body), of the
/// query's workspace and metric.
fn point_of_row(query: &KpiQuery, workspace: &WorkspaceId, r: &Row<'_>) -> Result<KpiPoint> {
    let corrupt = || Error::internal("stored KPI point is corrupt");
    let text = |k: usize| -> Result<&str> {
        r.get_ref(k)
            .map_err(db_error)?
            .as_str()
            .map_err(|_| corrupt())
    };
    let stored: Stored = from_json(text(2)?)?;
    Ok(KpiPoint {
        workspace: workspace.clone(),
        integration: IntegrationId::parse(text(0)?).map_err(|_| corrupt())?,
        metric: query.metric,
        date: text(1)?.parse().map_err(|_| corrupt())?,
        value: stored.value,
        unit: stored.unit,
        currency: stored.currency,
    })
}

/// Writes the rows within the caller's transaction, overwriting points of the
/// same (integration, metric, date), and notes each series.
pub(super) fn write_points(c: &Connection, rows: &[PointRow]) -> Result<()> {
    let mut point = c
        .prepare_cached(
            "INSERT INTO kpi_points (workspace, integration, metric, date, body)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (workspace, integration, metric, date)
             DO UPDATE SET body = excluded.body",
        )
        .map_err(db_error)?;
    let mut series = c
        .prepare_cached(
            "INSERT INTO kpi_series (workspace, metric, integration) VALUES (?1, ?2, ?3)
             ON CONFLICT DO NOTHING",
        )
        .map_err(db_error)?;
    // One series write per series of the batch, however an adapter orders
    // its points (metric by metric, or day by day).
    let mut seen = std::collections::BTreeSet::new();
    for (workspace, integration, metric, date, body) in rows {
        point
            .execute(params![workspace, integration, metric, date, body])
            .map_err(db_error)?;
        let key = (workspace.as_str(), metric.as_str(), integration.as_str());
        if seen.insert(key) {
            series
                .execute(params![key.0, key.1, key.2])
                .map_err(db_error)?;
        }
    }
    Ok(())
}

/// Rebuilds a `kpi_points` table of the first layout (keyed by metric and
/// date first) in the current one, with its series, in one transaction; runs
/// before the schema, so a database from before the change opens as it was.
pub(super) fn migrate(c: &Connection, schema: &str) -> Result<()> {
    let sql: Option<String> = c
        .query_row(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'kpi_points'",
            [],
            |r| r.get(0),
        )
        .optional()
        .map_err(db_error)?;
    let Some(sql) = sql else { return Ok(()) };
    if !sql.contains("PRIMARY KEY (workspace, metric, date, integration)") {
        return Ok(());
    }
    let steps = format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE kpi_points RENAME TO kpi_points_by_date;
         {schema}
         INSERT INTO kpi_points (workspace, integration, metric, date, body)
             SELECT workspace, integration, metric, date, body FROM kpi_points_by_date;
         INSERT INTO kpi_series (workspace, metric, integration)
             SELECT DISTINCT workspace, metric, integration FROM kpi_points_by_date;
         DROP TABLE kpi_points_by_date;
         COMMIT;"
    );
    c.execute_batch(&steps).map_err(|e| {
        let _ = c.execute_batch("ROLLBACK");
        db_error(e)
    })
}

#[async_trait]
impl KpiStore for SqliteStore {
    async fn upsert_kpis(&self, scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<usize> {
        let rows = point_rows(scope, points)?;
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            write_points(&tx, &rows)?;
            tx.commit().map_err(db_error)?;
            Ok(rows.len())
        })
        .await
    }

    async fn query_kpis(&self, scope: &WorkspaceScope, query: &KpiQuery) -> Result<Vec<KpiPoint>> {
        let ws = scope.workspace().clone();
        let q = query.clone();
        self.read(move |c| {
            let mut stmt = c.prepare_cached(KPI_QUERY).map_err(db_error)?;
            let mut rows = stmt
                .query(params![
                    ws.as_str(),
                    q.metric.as_str(),
                    q.from.to_string(),
                    q.to.to_string(),
                    q.integration.map(|i| i.to_string())
                ])
                .map_err(db_error)?;
            let mut points = Vec::new();
            while let Some(r) = rows.next().map_err(db_error)? {
                points.push(point_of_row(&q, &ws, r)?);
            }
            // A UUID's bytes order as its text does: the order the contract
            // states (date, then integration id).
            points.sort_unstable_by_key(|p| (p.date, p.integration));
            Ok(points)
        })
        .await
    }
}
