//! KPI points: the `KpiStore` over the `kpi_points` and `kpi_series` tables.

use std::collections::HashMap;
use std::fmt::Write;
use std::ops::Range;
use std::str::FromStr;

use async_trait::async_trait;
use kpi_core::kpi::Currency;
use kpi_core::metric::{Metric, Unit};
use kpi_core::ports::store::{KpiQuery, KpiStore};
use kpi_core::{Error, IntegrationId, KpiPoint, Result, WorkspaceId, WorkspaceScope};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, OptionalExtension, Row, params};
use rust_decimal::Decimal;

use super::{SqliteStore, db_error};

/// Points of one metric (workspace, metric, from, to, integration or NULL):
/// the metric's series of the workspace first (CROSS JOIN keeps that
/// order), then each series' date range. Two index ranges, never a scan (a
/// test reads the plan). The rows come by series, then date; they are put in
/// date order afterwards, in memory (SQLite would sort them through a
/// temporary B-tree, which cost the KPI query a third of its throughput
/// under load).
pub const KPI_QUERY: &str = "SELECT s.integration, p.date, p.value, p.unit, p.currency
     FROM kpi_series s CROSS JOIN kpi_points p
     WHERE s.workspace = ?1 AND s.metric = ?2
       AND (?5 IS NULL OR s.integration = ?5)
       AND p.series = s.id AND p.date >= ?3 AND p.date <= ?4";

/// A batch of points as rows, by series: a series is looked up once, and its
/// rows go in in date order. Every row's date and value are written one after
/// the other into one text, so a sync's hundreds of points take a few
/// allocations, not two each.
pub(super) struct PointRows {
    workspace: String,
    text: String,
    series: Vec<SeriesRows>,
}

struct SeriesRows {
    integration: String,
    metric: Metric,
    rows: Vec<PointRow>,
}

/// A point: where its date, value and currency are in [`PointRows::text`].
struct PointRow {
    date: Range<usize>,
    value: Range<usize>,
    unit: Unit,
    currency: Option<Range<usize>>,
}

/// The rows of `points`, each checked to be of the scope's workspace.
pub(super) fn point_rows(scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<PointRows> {
    let mut index: HashMap<(IntegrationId, Metric), usize> = HashMap::new();
    let mut series: Vec<SeriesRows> = Vec::new();
    let mut text = String::with_capacity(points.len() * 24);
    for p in points {
        scope.check(&p.workspace)?;
        let k = *index.entry((p.integration, p.metric)).or_insert_with(|| {
            series.push(SeriesRows {
                integration: p.integration.to_string(),
                metric: p.metric,
                rows: Vec::new(),
            });
            series.len() - 1
        });
        let row = PointRow {
            date: put(&mut text, &p.date),
            value: put(&mut text, &p.value),
            unit: p.unit,
            currency: p.currency.as_ref().map(|c| put(&mut text, &c.as_str())),
        };
        series[k].rows.push(row);
    }
    for s in &mut series {
        // The same date twice: the last one stands, as row by row it would.
        s.rows.reverse();
        s.rows
            .sort_by(|a, b| text[a.date.clone()].cmp(&text[b.date.clone()]));
        s.rows
            .dedup_by(|later, first| text[later.date.clone()] == text[first.date.clone()]);
    }
    Ok(PointRows {
        workspace: scope.workspace().to_string(),
        text,
        series,
    })
}

/// Appends `value` to `text`; where it is.
fn put(text: &mut String, value: &dyn std::fmt::Display) -> Range<usize> {
    let start = text.len();
    // Writing into a String cannot fail.
    let _ = write!(text, "{value}");
    start..text.len()
}

/// The point of a row the KPI query read (integration, date, value, unit,
/// currency), of the query's workspace and metric.
fn point_of_row(query: &KpiQuery, workspace: &WorkspaceId, r: &Row<'_>) -> Result<KpiPoint> {
    let corrupt = || Error::internal("stored KPI point is corrupt");
    let text = |k: usize| -> Result<Option<&str>> {
        let value = r.get_ref(k).map_err(db_error)?;
        match value {
            ValueRef::Null => Ok(None),
            v => v.as_str().map(Some).map_err(|_| corrupt()),
        }
    };
    let required = |k: usize| -> Result<&str> { text(k)?.ok_or_else(corrupt) };
    Ok(KpiPoint {
        workspace: workspace.clone(),
        integration: IntegrationId::parse(required(0)?).map_err(|_| corrupt())?,
        metric: query.metric,
        date: required(1)?.parse().map_err(|_| corrupt())?,
        value: Decimal::from_str(required(2)?).map_err(|_| corrupt())?,
        unit: Unit::parse(required(3)?).ok_or_else(corrupt)?,
        currency: text(4)?
            .map(Currency::parse)
            .transpose()
            .map_err(|_| corrupt())?,
    })
}

/// Writes the rows within the caller's transaction, overwriting points of the
/// same series and date, and adds each series not yet known.
pub(super) fn write_points(c: &Connection, rows: &PointRows) -> Result<()> {
    let mut find = c
        .prepare_cached(
            "SELECT id FROM kpi_series WHERE workspace = ?1 AND metric = ?2 AND integration = ?3",
        )
        .map_err(db_error)?;
    let mut add = c
        .prepare_cached(
            "INSERT INTO kpi_series (workspace, metric, integration) VALUES (?1, ?2, ?3)",
        )
        .map_err(db_error)?;
    let mut point = c
        .prepare_cached(
            "INSERT INTO kpi_points (series, date, value, unit, currency)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT (series, date) DO UPDATE
             SET value = excluded.value, unit = excluded.unit, currency = excluded.currency",
        )
        .map_err(db_error)?;
    let text = |r: &Range<usize>| &rows.text[r.clone()];
    for s in &rows.series {
        let key = params![rows.workspace, s.metric.as_str(), s.integration];
        let id: i64 = match find
            .query_row(key, |r| r.get(0))
            .optional()
            .map_err(db_error)?
        {
            Some(id) => id,
            None => {
                add.execute(key).map_err(db_error)?;
                c.last_insert_rowid()
            }
        };
        for row in &s.rows {
            point
                .execute(params![
                    id,
                    text(&row.date),
                    text(&row.value),
                    row.unit.as_str(),
                    row.currency.as_ref().map(text)
                ])
                .map_err(db_error)?;
        }
    }
    Ok(())
}

/// Rebuilds a `kpi_points` table of an earlier layout (every key holding the
/// workspace, integration and metric by name: keyed by metric and date first,
/// or by integration first; the value, unit and currency in a JSON body) in
/// the current one, with its series, in one transaction; runs before the
/// schema, so a database from before the change opens as it was.
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
    if !sql.contains("workspace TEXT") {
        return Ok(());
    }
    let steps = format!(
        "BEGIN IMMEDIATE;
         ALTER TABLE kpi_points RENAME TO kpi_points_by_name;
         DROP TABLE IF EXISTS kpi_series;
         {schema}
         INSERT INTO kpi_series (workspace, metric, integration)
             SELECT DISTINCT workspace, metric, integration FROM kpi_points_by_name
             ORDER BY workspace, integration, metric;
         INSERT INTO kpi_points (series, date, value, unit, currency)
             SELECT s.id, o.date, json_extract(o.body, '$.value'),
                 json_extract(o.body, '$.unit'), json_extract(o.body, '$.currency')
             FROM kpi_points_by_name o JOIN kpi_series s
                 ON s.workspace = o.workspace AND s.metric = o.metric
                 AND s.integration = o.integration;
         DROP TABLE kpi_points_by_name;
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
        let written = points.len();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            write_points(&tx, &rows)?;
            tx.commit().map_err(db_error)?;
            Ok(written)
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
