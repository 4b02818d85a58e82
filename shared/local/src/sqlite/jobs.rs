//! Sync jobs: the `JobStore` over the `sync_jobs` table.

use async_trait::async_trait;
use kpi_core::page::{Cursor, Page, PageRequest};
use kpi_core::ports::store::{JobFilter, JobStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{
    AdminScope, Error, Integration, IntegrationId, JobId, KpiPoint, Result, SyncJob, WorkspaceScope,
};
use rusqlite::{Connection, OptionalExtension, params};

use super::integrations::write_integration_cas;
use super::kpis::{point_rows, write_points};
use super::{SqliteStore, db_error, from_json, one_body, split_cursor, to_json, two_part_cursor};

fn insert_job(tx: &rusqlite::Transaction<'_>, job: &SyncJob) -> Result<bool> {
    let mut stored = job.clone();
    stored.version = job.version.max(1);
    let inserted = tx
        .execute(
            "INSERT INTO sync_jobs (id, workspace, integration, provider, status, updated_at, version, body)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (id) DO NOTHING",
            params![
                stored.id.to_string(),
                stored.workspace.as_str(),
                stored.integration.to_string(),
                stored.provider.as_str(),
                stored.status().as_str(),
                sortable_timestamp(stored.updated_at),
                stored.version as i64,
                to_json(&stored)?,
            ],
        )
        .map_err(db_error)?;
    Ok(inserted == 1)
}

fn read_jobs(
    stmt: &mut rusqlite::Statement<'_>,
    params: impl rusqlite::Params,
) -> Result<Vec<SyncJob>> {
    let bodies = stmt
        .query_map(params, |r| r.get::<_, String>(0))
        .map_err(db_error)?
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(db_error)?;
    bodies.iter().map(|b| from_json(b)).collect()
}

#[async_trait]
impl JobStore for SqliteStore {
    async fn create_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<bool> {
        scope.check(&job.workspace)?;
        let job = job.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let created = insert_job(&tx, &job)?;
            tx.commit().map_err(db_error)?;
            Ok(created)
        })
        .await
    }

    async fn create_job_with_integration(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&job.workspace)?;
        scope.check(&integration.workspace)?;
        let (scope, job, integration) = (scope.clone(), job.clone(), integration.clone());
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let next = write_integration_cas(&tx, &scope, &integration)?;
            if !insert_job(&tx, &job)? {
                // Dropping the transaction rolls the integration write back.
                return Err(Error::conflict("this sync job already exists"));
            }
            tx.commit().map_err(db_error)?;
            Ok(next)
        })
        .await
    }

    async fn get_job(&self, scope: &WorkspaceScope, id: JobId) -> Result<SyncJob> {
        let ws = scope.workspace().to_string();
        self.read(move |c| {
            one_body(
                c,
                "SELECT body FROM sync_jobs WHERE id = ?1 AND workspace = ?2",
                params![id.to_string(), ws],
            )?
            .ok_or_else(|| Error::not_found("sync job not found"))
        })
        .await
    }

    async fn update_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<SyncJob> {
        scope.check(&job.workspace)?;
        let job = job.clone();
        self.with(move |c| write_job(c, &job)).await
    }

    async fn update_job_with_kpis(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        points: &[KpiPoint],
    ) -> Result<SyncJob> {
        scope.check(&job.workspace)?;
        let rows = point_rows(scope, points)?;
        let job = job.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let next = write_job(&tx, &job)?;
            write_points(&tx, &rows)?;
            tx.commit().map_err(db_error)?;
            Ok(next)
        })
        .await
    }

    async fn list_jobs(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>> {
        let ws = scope.workspace().to_string();
        let before = page.cursor.as_ref().map(Cursor::decode).transpose()?;
        let limit = page.limit;
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT body FROM sync_jobs
                     WHERE integration = ?1 AND workspace = ?2 AND (?3 IS NULL OR id < ?3)
                     ORDER BY id DESC LIMIT ?4",
                )
                .map_err(db_error)?;
            let mut items = read_jobs(
                &mut stmt,
                params![integration.to_string(), ws, before, i64::from(limit) + 1],
            )?;
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|j| Cursor::encode(&j.id.to_string()))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn find_job(&self, _admin: &AdminScope, id: JobId) -> Result<SyncJob> {
        self.with(move |c| {
            one_body(
                c,
                "SELECT body FROM sync_jobs WHERE id = ?1",
                params![id.to_string()],
            )?
            .ok_or_else(|| Error::not_found("sync job not found"))
        })
        .await
    }

    async fn list_jobs_by_status(
        &self,
        _admin: &AdminScope,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>> {
        let filter = filter.clone();
        let before = page.cursor.as_ref().map(split_cursor).transpose()?;
        let limit = page.limit;
        self.with(move |c| {
            let (before_at, before_id) = before.unzip();
            let mut stmt = c
                .prepare(
                    "SELECT body FROM sync_jobs
                     WHERE status = ?1
                       AND (?2 IS NULL OR provider = ?2)
                       AND (?3 IS NULL OR workspace = ?3)
                       AND (?4 IS NULL OR updated_at >= ?4)
                       AND (?5 IS NULL OR updated_at < ?5)
                       AND (?6 IS NULL OR (updated_at, id) < (?6, ?7))
                     ORDER BY updated_at DESC, id DESC LIMIT ?8",
                )
                .map_err(db_error)?;
            let mut items = read_jobs(
                &mut stmt,
                params![
                    filter.status.as_str(),
                    filter.provider.as_ref().map(|p| p.as_str()),
                    filter.workspace.as_ref().map(|w| w.as_str().to_owned()),
                    filter.since.map(sortable_timestamp),
                    filter.until.map(sortable_timestamp),
                    before_at,
                    before_id,
                    i64::from(limit) + 1
                ],
            )?;
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items
                    .last()
                    .map(|j| two_part_cursor(&sortable_timestamp(j.updated_at), &j.id.to_string()))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }
}

/// Compare-and-swap of `job` on its version, within the caller's transaction if any.
fn write_job(c: &Connection, job: &SyncJob) -> Result<SyncJob> {
    let mut next = job.clone();
    next.version = job.version + 1;
    let body = to_json(&next)?;
    let changed = c
        .prepare_cached(
            "UPDATE sync_jobs SET status = ?1, updated_at = ?2, version = ?3, body = ?4
             WHERE id = ?5 AND workspace = ?6 AND version = ?7",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                next.status().as_str(),
                sortable_timestamp(next.updated_at),
                next.version as i64,
                body,
                next.id.to_string(),
                next.workspace.as_str(),
                job.version as i64
            ])
        })
        .map_err(db_error)?;
    if changed == 1 {
        return Ok(next);
    }
    let exists = c
        .query_row(
            "SELECT 1 FROM sync_jobs WHERE id = ?1 AND workspace = ?2",
            params![next.id.to_string(), next.workspace.as_str()],
            |_| Ok(()),
        )
        .optional()
        .map_err(db_error)?
        .is_some();
    Err(if exists {
        Error::conflict("the sync job was changed by someone else")
    } else {
        Error::not_found("sync job not found")
    })
}
