//! The embedded store: one SQLite file in WAL mode.
//!
//! Records are kept as JSON bodies with the columns that queries, indexes and
//! conditions need beside them. Every compare-and-swap is a single conditional
//! statement or one transaction, so the semantics match DynamoDB's conditional
//! writes and transactions. All access goes through one connection on a blocking
//! thread: SQLite serialises writers anyway, and one process owns the file.

mod ephemeral;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::page::{Cursor, Page, PageRequest};
use kpi_core::ports::store::{
    AccountLink, AccountStore, AlertEvent, AlertStore, DedupeStore, DueIntegration, EmailRecord,
    EmailStore, IntegrationStore, JobFilter, JobStore, KpiQuery, KpiStore, LeaseStore, OAuthState,
    OAuthStateStore, ReportStore, Suppression, WorkspaceSettingsStore, normalize_address,
};
use kpi_core::time::sortable_timestamp;
use kpi_core::{
    AdminScope, Error, Integration, IntegrationId, JobId, KpiPoint, Result, SyncJob, WorkspaceId,
    WorkspaceScope,
};
use rusqlite::{Connection, OptionalExtension, params};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS integrations (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    provider TEXT NOT NULL,
    version INTEGER NOT NULL,
    due_at TEXT,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS integrations_by_workspace ON integrations (workspace, id);
CREATE INDEX IF NOT EXISTS integrations_due ON integrations (due_at, id) WHERE due_at IS NOT NULL;

CREATE TABLE IF NOT EXISTS sync_jobs (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    integration TEXT NOT NULL,
    provider TEXT NOT NULL,
    status TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sync_jobs_by_integration ON sync_jobs (integration, id);
CREATE INDEX IF NOT EXISTS sync_jobs_by_status ON sync_jobs (status, updated_at, id);

CREATE TABLE IF NOT EXISTS kpi_points (
    workspace TEXT NOT NULL,
    metric TEXT NOT NULL,
    date TEXT NOT NULL,
    integration TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace, metric, date, integration)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS ephemeral (
    key TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS oauth_states (
    key TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL,
    body TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS dedupe_keys (
    key TEXT PRIMARY KEY,
    expires_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS emails (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);

CREATE TABLE IF NOT EXISTS email_index (
    workspace TEXT NOT NULL,
    integration TEXT NOT NULL,
    created_at TEXT NOT NULL,
    id TEXT NOT NULL,
    PRIMARY KEY (workspace, integration, created_at, id)
);

CREATE TABLE IF NOT EXISTS email_refs (
    provider_id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    id TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS suppressions (
    workspace TEXT NOT NULL,
    address TEXT NOT NULL,
    reason TEXT NOT NULL,
    at TEXT NOT NULL,
    PRIMARY KEY (workspace, address)
);

CREATE TABLE IF NOT EXISTS leases (
    name TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

CREATE TABLE IF NOT EXISTS report_due (
    workspace TEXT PRIMARY KEY,
    next_run_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS report_due_by_time ON report_due (next_run_at);

CREATE TABLE IF NOT EXISTS alerts (
    workspace TEXT NOT NULL,
    id TEXT NOT NULL,
    version INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace, id)
);

CREATE TABLE IF NOT EXISTS alert_events (
    workspace TEXT NOT NULL,
    rule TEXT NOT NULL,
    id TEXT NOT NULL,
    at TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace, rule, id)
);

CREATE TABLE IF NOT EXISTS workspace_settings (
    workspace TEXT NOT NULL,
    name TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (workspace, name)
);

CREATE TABLE IF NOT EXISTS provider_links (
    account TEXT NOT NULL,
    integration TEXT NOT NULL,
    workspace TEXT NOT NULL,
    PRIMARY KEY (account, integration)
);
"#;

#[derive(Clone)]
pub struct SqliteStore {
    /// The one writer (SQLite takes one writer at a time anyway).
    conn: Arc<Mutex<Connection>>,
    /// Read-only connections for the API's hot reads: under WAL they read
    /// beside the writer and each other, so concurrent KPI queries do not
    /// queue on one connection. None for an in-memory database.
    readers: Arc<Vec<Mutex<Connection>>>,
    next_reader: Arc<AtomicUsize>,
}

/// Read connections of a file database.
const READERS: usize = 4;

fn db_error(e: rusqlite::Error) -> Error {
    match e {
        rusqlite::Error::SqliteFailure(f, _)
            if matches!(
                f.code,
                rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked
            ) =>
        {
            Error::transient("the database is busy").with_source(e)
        }
        other => Error::internal("database error").with_source(other),
    }
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal("cannot encode record").with_source(e))
}

fn from_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text)
        .map_err(|e| Error::internal("stored record is corrupt").with_source(e))
}

/// The record whose JSON body the one-column query `sql` selects, if any.
fn one_body<T: serde::de::DeserializeOwned>(
    c: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Option<T>> {
    let body: Option<String> = c
        .query_row(sql, params, |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    body.map(|b| from_json(&b)).transpose()
}

/// Index value of the due-integrations index: set only while the integration
/// should be picked up by the scheduler.
fn due_at(integration: &Integration) -> Option<String> {
    integration
        .status()
        .is_syncable()
        .then_some(integration.next_sync_at)
        .flatten()
        .map(sortable_timestamp)
}

/// Splits a cursor made by [`two_part_cursor`].
fn split_cursor(cursor: &Cursor) -> Result<(String, String)> {
    let raw = cursor.decode()?;
    raw.split_once('|')
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
        .ok_or_else(|| Error::validation("cursor", "invalid cursor"))
}

fn two_part_cursor(a: &str, b: &str) -> Cursor {
    Cursor::encode(&format!("{a}|{b}"))
}

/// One page of due integrations (now, cursor due, cursor id, limit): a range
/// read of the partial `integrations_due` index, never a table scan (the
/// fan-out benchmark prints its query plan).
pub const DUE_INTEGRATIONS_QUERY: &str = "SELECT body FROM integrations
     WHERE due_at IS NOT NULL AND due_at <= ?1 AND (due_at, id) > (?2, ?3)
     ORDER BY due_at, id LIMIT ?4";

impl SqliteStore {
    /// Opens (creating if needed) the database file and its schema.
    pub fn open(path: &Path) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                Error::config(format!("cannot create {}", dir.display())).with_source(e)
            })?;
        }
        let conn = Connection::open(path).map_err(|e| {
            Error::config(format!("cannot open the database {}", path.display())).with_source(e)
        })?;
        let mut store = Self::init(conn)?;
        let readers = (0..READERS)
            .map(|_| {
                let reader = Connection::open_with_flags(
                    path,
                    rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY
                        | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(db_error)?;
                reader
                    .pragma_update(None, "busy_timeout", 5000)
                    .map_err(db_error)?;
                Ok(Mutex::new(reader))
            })
            .collect::<Result<Vec<_>>>()?;
        store.readers = Arc::new(readers);
        Ok(store)
    }

    /// A private in-memory database, for tests.
    pub fn open_in_memory() -> Result<Self> {
        Self::init(Connection::open_in_memory().map_err(db_error)?)
    }

    fn init(conn: Connection) -> Result<Self> {
        // WAL lets readers (the admin pages) proceed while a sync writes.
        conn.pragma_update_and_check(None, "journal_mode", "WAL", |_| Ok(()))
            .map_err(db_error)?;
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db_error)?;
        conn.pragma_update(None, "busy_timeout", 5000)
            .map_err(db_error)?;
        conn.execute_batch(SCHEMA).map_err(db_error)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
            readers: Arc::new(Vec::new()),
            next_reader: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// Runs the read `f` on a read connection (a free one, else the next in
    /// turn), or on the writer when there are none.
    async fn read<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        if self.readers.is_empty() {
            return self.with(f).await;
        }
        let readers = self.readers.clone();
        let turn = self.next_reader.fetch_add(1, Ordering::Relaxed);
        tokio::task::spawn_blocking(move || {
            let n = readers.len();
            let mut guard = (0..n)
                .find_map(|k| readers[(turn + k) % n].try_lock().ok())
                .unwrap_or_else(|| readers[turn % n].lock().unwrap_or_else(|e| e.into_inner()));
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::internal("database task failed").with_source(e))?
    }

    /// Runs `f` with the connection on a blocking thread.
    async fn with<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T> + Send + 'static,
    {
        let conn = self.conn.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = conn.lock().unwrap_or_else(|e| e.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(|e| Error::internal("database task failed").with_source(e))?
    }

    /// Raw rows of a table, for tests that scan what the store holds.
    pub async fn dump_table(&self, table: &'static str) -> Result<Vec<String>> {
        self.with(move |c| {
            let mut stmt = c
                .prepare(&format!("SELECT * FROM {table}"))
                .map_err(db_error)?;
            let columns = stmt.column_count();
            let rows = stmt
                .query_map([], |row| {
                    let mut line = Vec::with_capacity(columns);
                    for i in 0..columns {
                        let v: rusqlite::types::Value = row.get(i)?;
                        line.push(format!("{v:?}"));
                    }
                    Ok(line.join("\t"))
                })
                .map_err(db_error)?;
            rows.collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_error)
        })
        .await
    }
}

fn write_integration_cas(
    tx: &rusqlite::Transaction<'_>,
    scope: &WorkspaceScope,
    integration: &Integration,
) -> Result<Integration> {
    let mut next = integration.clone();
    next.version = integration.version + 1;
    let changed = tx
        .execute(
            "UPDATE integrations SET version = ?1, due_at = ?2, body = ?3, provider = ?4
             WHERE id = ?5 AND workspace = ?6 AND version = ?7",
            params![
                next.version as i64,
                due_at(&next),
                to_json(&next)?,
                next.provider.as_str(),
                next.id.to_string(),
                scope.workspace().as_str(),
                integration.version as i64
            ],
        )
        .map_err(db_error)?;
    if changed == 1 {
        return Ok(next);
    }
    let exists: bool = tx
        .query_row(
            "SELECT 1 FROM integrations WHERE id = ?1 AND workspace = ?2",
            params![integration.id.to_string(), scope.workspace().as_str()],
            |_| Ok(true),
        )
        .optional()
        .map_err(db_error)?
        .unwrap_or(false);
    if exists {
        Err(Error::conflict(
            "the integration was changed by someone else; reload and try again",
        ))
    } else {
        Err(Error::not_found("integration not found"))
    }
}

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

#[async_trait]
impl IntegrationStore for SqliteStore {
    async fn create_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&integration.workspace)?;
        let mut stored = integration.clone();
        stored.version = 1;
        self.with(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO integrations (id, workspace, provider, version, due_at, body)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5) ON CONFLICT (id) DO NOTHING",
                    params![
                        stored.id.to_string(),
                        stored.workspace.as_str(),
                        stored.provider.as_str(),
                        due_at(&stored),
                        to_json(&stored)?,
                    ],
                )
                .map_err(db_error)?;
            if inserted == 1 {
                Ok(stored)
            } else {
                Err(Error::conflict(
                    "an integration with this id already exists",
                ))
            }
        })
        .await
    }

    async fn get_integration(
        &self,
        scope: &WorkspaceScope,
        id: IntegrationId,
    ) -> Result<Integration> {
        let ws = scope.workspace().to_string();
        self.read(move |c| {
            one_body(
                c,
                "SELECT body FROM integrations WHERE id = ?1 AND workspace = ?2",
                params![id.to_string(), ws],
            )?
            .ok_or_else(|| Error::not_found("integration not found"))
        })
        .await
    }

    async fn list_integrations(
        &self,
        scope: &WorkspaceScope,
        page: &PageRequest,
    ) -> Result<Page<Integration>> {
        let ws = scope.workspace().to_string();
        let after = page.cursor.as_ref().map(Cursor::decode).transpose()?;
        let limit = page.limit;
        self.read(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT body FROM integrations WHERE workspace = ?1 AND id > ?2
                     ORDER BY id LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(
                    params![ws, after.unwrap_or_default(), i64::from(limit) + 1],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db_error)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_error)?;
            let mut items = rows
                .iter()
                .map(|b| from_json::<Integration>(b))
                .collect::<Result<Vec<_>>>()?;
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|i| Cursor::encode(&i.id.to_string()))
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }

    async fn update_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&integration.workspace)?;
        let scope = scope.clone();
        let integration = integration.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let next = write_integration_cas(&tx, &scope, &integration)?;
            tx.commit().map_err(db_error)?;
            Ok(next)
        })
        .await
    }

    async fn delete_integration(&self, scope: &WorkspaceScope, id: IntegrationId) -> Result<bool> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM integrations WHERE id = ?1 AND workspace = ?2",
                    params![id.to_string(), ws],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn due_integrations(
        &self,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<DueIntegration>> {
        let now = sortable_timestamp(now);
        let after = page.cursor.as_ref().map(split_cursor).transpose()?;
        let limit = page.limit;
        self.with(move |c| {
            let (after_due, after_id) = after.unwrap_or_default();
            let mut stmt = c.prepare(DUE_INTEGRATIONS_QUERY).map_err(db_error)?;
            let bodies = stmt
                .query_map(
                    params![now, after_due, after_id, i64::from(limit) + 1],
                    |r| r.get::<_, String>(0),
                )
                .map_err(db_error)?
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(db_error)?;
            let mut items = Vec::with_capacity(bodies.len());
            for body in &bodies {
                let i: Integration = from_json(body)?;
                if let Some(next_sync_at) = i.next_sync_at {
                    items.push(DueIntegration {
                        workspace: i.workspace,
                        integration: i.id,
                        provider: i.provider,
                        next_sync_at,
                    });
                }
            }
            let next = if items.len() > limit as usize {
                items.truncate(limit as usize);
                items.last().map(|d| {
                    two_part_cursor(
                        &sortable_timestamp(d.next_sync_at),
                        &d.integration.to_string(),
                    )
                })
            } else {
                None
            };
            Ok(Page { items, next })
        })
        .await
    }
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
        let mut next = job.clone();
        next.version = job.version + 1;
        let expected = job.version;
        self.with(move |c| {
            let changed = c
                .execute(
                    "UPDATE sync_jobs SET status = ?1, updated_at = ?2, version = ?3, body = ?4
                     WHERE id = ?5 AND workspace = ?6 AND version = ?7",
                    params![
                        next.status().as_str(),
                        sortable_timestamp(next.updated_at),
                        next.version as i64,
                        to_json(&next)?,
                        next.id.to_string(),
                        next.workspace.as_str(),
                        expected as i64
                    ],
                )
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

#[async_trait]
impl OAuthStateStore for SqliteStore {
    async fn put_oauth_state(&self, scope: &WorkspaceScope, state: &OAuthState) -> Result<()> {
        scope.check(&state.workspace)?;
        let state = state.clone();
        self.with(move |c| {
            let inserted = c
                .execute(
                    "INSERT INTO oauth_states (key, expires_at, body) VALUES (?1, ?2, ?3)
                     ON CONFLICT (key) DO NOTHING",
                    params![
                        state.key,
                        sortable_timestamp(state.expires_at),
                        to_json(&state)?
                    ],
                )
                .map_err(db_error)?;
            if inserted == 1 {
                Ok(())
            } else {
                Err(Error::conflict("oauth state already exists"))
            }
        })
        .await
    }

    async fn consume_oauth_state(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>> {
        let key = key.to_owned();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let body: Option<(String, String)> = tx
                .query_row(
                    "DELETE FROM oauth_states WHERE key = ?1 RETURNING expires_at, body",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            match body {
                Some((expires_at, body)) if expires_at > sortable_timestamp(now) => {
                    Ok(Some(from_json(&body)?))
                }
                _ => Ok(None),
            }
        })
        .await
    }
}

#[async_trait]
impl DedupeStore for SqliteStore {
    async fn first_seen(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let key = key.to_owned();
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO dedupe_keys (key, expires_at) VALUES (?1, ?2)
                     ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at
                     WHERE dedupe_keys.expires_at <= ?3",
                    params![key, sortable_timestamp(expires_at), sortable_timestamp(now)],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn forget(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM dedupe_keys WHERE key = ?1", params![key])
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl EmailStore for SqliteStore {
    async fn put_email(&self, scope: &WorkspaceScope, email: &EmailRecord) -> Result<()> {
        scope.check(&email.workspace)?;
        let email = email.clone();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            tx.execute(
                "INSERT INTO emails (workspace, id, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace, id) DO UPDATE SET body = excluded.body",
                params![email.workspace.as_str(), email.id, to_json(&email)?],
            )
            .map_err(db_error)?;
            if let Some(integration) = &email.integration {
                tx.execute(
                    "INSERT INTO email_index (workspace, integration, created_at, id) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT DO NOTHING",
                    params![
                        email.workspace.as_str(),
                        integration.to_string(),
                        sortable_timestamp(email.created_at),
                        email.id
                    ],
                )
                .map_err(db_error)?;
            }
            if let Some(provider_id) = &email.provider_message_id {
                tx.execute(
                    "INSERT INTO email_refs (provider_id, workspace, id) VALUES (?1, ?2, ?3)
                     ON CONFLICT (provider_id) DO NOTHING",
                    params![provider_id, email.workspace.as_str(), email.id],
                )
                .map_err(db_error)?;
            }
            tx.commit().map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn get_email(&self, scope: &WorkspaceScope, id: &str) -> Result<Option<EmailRecord>> {
        let ws = scope.workspace().to_string();
        let id = id.to_owned();
        self.with(move |c| {
            one_body(
                c,
                "SELECT body FROM emails WHERE workspace = ?1 AND id = ?2",
                params![ws, id],
            )
        })
        .await
    }

    async fn suppress(
        &self,
        scope: &WorkspaceScope,
        address: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        let ws = scope.workspace().to_string();
        let (address, reason) = (normalize_address(address), reason.to_owned());
        self.with(move |c| {
            c.execute(
                "INSERT INTO suppressions (workspace, address, reason, at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (workspace, address) DO UPDATE SET reason = excluded.reason, at = excluded.at",
                params![ws, address, reason, sortable_timestamp(at)],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn is_suppressed(&self, scope: &WorkspaceScope, address: &str) -> Result<bool> {
        let ws = scope.workspace().to_string();
        let address = normalize_address(address);
        self.with(move |c| {
            Ok(c.query_row(
                "SELECT 1 FROM suppressions WHERE workspace = ?1 AND address = ?2",
                params![ws, address],
                |_| Ok(()),
            )
            .optional()
            .map_err(db_error)?
            .is_some())
        })
        .await
    }

    async fn list_suppressions(&self, scope: &WorkspaceScope) -> Result<Vec<Suppression>> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT address, reason, at FROM suppressions WHERE workspace = ?1 ORDER BY address LIMIT 1000",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?))
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (address, reason, at) = row.map_err(db_error)?;
                let at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| Error::internal("a stored time is unreadable").with_source(e))?
                    .to_utc();
                out.push(Suppression { address, reason, at });
            }
            Ok(out)
        })
        .await
    }

    async fn unsuppress(&self, scope: &WorkspaceScope, address: &str) -> Result<bool> {
        let ws = scope.workspace().to_string();
        let address = normalize_address(address);
        self.with(move |c| {
            let n = c
                .execute(
                    "DELETE FROM suppressions WHERE workspace = ?1 AND address = ?2",
                    params![ws, address],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn emails_sent_by(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EmailRecord>> {
        let ws = scope.workspace().to_string();
        let (from, to) = (sortable_timestamp(from), sortable_timestamp(to));
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT e.body FROM email_index i JOIN emails e ON e.workspace = i.workspace AND e.id = i.id
                     WHERE i.workspace = ?1 AND i.integration = ?2 AND i.created_at >= ?3 AND i.created_at < ?4
                     ORDER BY i.created_at, i.id",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws, integration.to_string(), from, to], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                let body = row.map_err(db_error)?;
                out.push(serde_json::from_str(&body).map_err(|e| {
                    Error::internal("a stored email record is unreadable").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn email_by_provider_id(
        &self,
        provider_message_id: &str,
    ) -> Result<Option<(WorkspaceId, String)>> {
        let provider_id = provider_message_id.to_owned();
        self.with(move |c| {
            let found: Option<(String, String)> = c
                .query_row(
                    "SELECT workspace, id FROM email_refs WHERE provider_id = ?1",
                    params![provider_id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_error)?;
            found
                .map(|(ws, id)| Ok((WorkspaceId::parse(&ws)?, id)))
                .transpose()
        })
        .await
    }
}

#[async_trait]
impl LeaseStore for SqliteStore {
    async fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT INTO leases (name, owner, expires_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, expires_at = excluded.expires_at
                     WHERE leases.expires_at <= ?4 OR leases.owner = excluded.owner",
                    params![name, owner, sortable_timestamp(expires_at), sortable_timestamp(now)],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let (name, owner) = (name.to_owned(), owner.to_owned());
        self.with(move |c| {
            c.execute(
                "DELETE FROM leases WHERE name = ?1 AND owner = ?2",
                params![name, owner],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn link_account(
        &self,
        account: &str,
        workspace: &WorkspaceId,
        integration: IntegrationId,
    ) -> Result<()> {
        let account = account.to_owned();
        let workspace = workspace.to_string();
        self.with(move |c| {
            c.execute(
                "INSERT OR IGNORE INTO provider_links (account, integration, workspace) VALUES (?1, ?2, ?3)",
                params![account, integration.to_string(), workspace],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn unlink_account(&self, account: &str, integration: IntegrationId) -> Result<()> {
        let account = account.to_owned();
        self.with(move |c| {
            c.execute(
                "DELETE FROM provider_links WHERE account = ?1 AND integration = ?2",
                params![account, integration.to_string()],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn account_integrations(&self, account: &str, limit: u32) -> Result<Vec<AccountLink>> {
        let account = account.to_owned();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT workspace, integration FROM provider_links WHERE account = ?1 ORDER BY integration LIMIT ?2",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![account, limit], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                let (workspace, integration) = row.map_err(db_error)?;
                out.push(AccountLink {
                    workspace: WorkspaceId::parse(&workspace)?,
                    integration: IntegrationId::parse(&integration)?,
                });
            }
            Ok(out)
        })
        .await
    }
}

#[async_trait]
impl WorkspaceSettingsStore for SqliteStore {
    async fn get_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
    ) -> Result<Option<serde_json::Value>> {
        let (workspace, name) = (scope.workspace().to_string(), name.to_owned());
        self.with(move |c| {
            let body: Option<String> = c
                .query_row(
                    "SELECT body FROM workspace_settings WHERE workspace = ?1 AND name = ?2",
                    params![workspace, name],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            body.map(|b| {
                serde_json::from_str(&b)
                    .map_err(|e| Error::internal("a stored setting is unreadable").with_source(e))
            })
            .transpose()
        })
        .await
    }

    async fn put_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        let (workspace, name, body) = (
            scope.workspace().to_string(),
            name.to_owned(),
            value.to_string(),
        );
        self.with(move |c| {
            c.execute(
                "INSERT INTO workspace_settings (workspace, name, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (workspace, name) DO UPDATE SET body = excluded.body",
                params![workspace, name, body],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }
}

#[async_trait]
impl AlertStore for SqliteStore {
    async fn create_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = 1;
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO alerts (workspace, id, version, body) VALUES (?1, ?2, 1, ?3)",
                    params![next.workspace.as_str(), next.id.to_string(), to_json(&next)?],
                )
                .map_err(db_error)?;
            if n == 0 {
                return Err(Error::conflict("an alert rule with this id exists"));
            }
            Ok(next)
        })
        .await
    }

    async fn get_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<kpi_core::alert::AlertRule> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            one_body::<kpi_core::alert::AlertRule>(
                c,
                "SELECT body FROM alerts WHERE workspace = ?1 AND id = ?2",
                params![ws, id.to_string()],
            )?
            .ok_or_else(|| Error::not_found("alert rule not found"))
        })
        .await
    }

    async fn list_alerts(&self, scope: &WorkspaceScope) -> Result<Vec<kpi_core::alert::AlertRule>> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare("SELECT body FROM alerts WHERE workspace = ?1 ORDER BY id LIMIT 1000")
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws], |r| r.get::<_, String>(0))
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row.map_err(db_error)?).map_err(|e| {
                    Error::internal("a stored alert rule is unreadable").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }

    async fn update_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = rule.version + 1;
        let expected = rule.version;
        self.with(move |c| {
            let n = c
                .execute(
                    "UPDATE alerts SET version = ?1, body = ?2 WHERE workspace = ?3 AND id = ?4 AND version = ?5",
                    params![
                        next.version as i64,
                        to_json(&next)?,
                        next.workspace.as_str(),
                        next.id.to_string(),
                        expected as i64
                    ],
                )
                .map_err(db_error)?;
            if n == 1 {
                return Ok(next);
            }
            let exists: Option<i64> = c
                .query_row(
                    "SELECT 1 FROM alerts WHERE workspace = ?1 AND id = ?2",
                    params![next.workspace.as_str(), next.id.to_string()],
                    |r| r.get(0),
                )
                .optional()
                .map_err(db_error)?;
            Err(match exists {
                Some(_) => Error::conflict("the alert rule was changed by someone else; reload and try again"),
                None => Error::not_found("alert rule not found"),
            })
        })
        .await
    }

    async fn delete_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<bool> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let tx = c.transaction().map_err(db_error)?;
            let n = tx
                .execute(
                    "DELETE FROM alerts WHERE workspace = ?1 AND id = ?2",
                    params![ws, id.to_string()],
                )
                .map_err(db_error)?;
            tx.execute(
                "DELETE FROM alert_events WHERE workspace = ?1 AND rule = ?2",
                params![ws, id.to_string()],
            )
            .map_err(db_error)?;
            tx.commit().map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn add_alert_event(&self, scope: &WorkspaceScope, event: &AlertEvent) -> Result<bool> {
        scope.check(&event.workspace)?;
        let event = event.clone();
        self.with(move |c| {
            let n = c
                .execute(
                    "INSERT OR IGNORE INTO alert_events (workspace, rule, id, at, body) VALUES (?1, ?2, ?3, ?4, ?5)",
                    params![
                        event.workspace.as_str(),
                        event.rule.to_string(),
                        event.id,
                        sortable_timestamp(event.at),
                        to_json(&event)?
                    ],
                )
                .map_err(db_error)?;
            Ok(n == 1)
        })
        .await
    }

    async fn list_alert_events(
        &self,
        scope: &WorkspaceScope,
        rule: kpi_core::ids::AlertId,
        limit: u32,
    ) -> Result<Vec<AlertEvent>> {
        let ws = scope.workspace().to_string();
        self.with(move |c| {
            let mut stmt = c
                .prepare(
                    "SELECT body FROM alert_events WHERE workspace = ?1 AND rule = ?2 ORDER BY at DESC, id DESC LIMIT ?3",
                )
                .map_err(db_error)?;
            let rows = stmt
                .query_map(params![ws, rule.to_string(), limit.clamp(1, 500)], |r| {
                    r.get::<_, String>(0)
                })
                .map_err(db_error)?;
            let mut out = Vec::new();
            for row in rows {
                out.push(serde_json::from_str(&row.map_err(db_error)?).map_err(|e| {
                    Error::internal("a stored alert event is unreadable").with_source(e)
                })?);
            }
            Ok(out)
        })
        .await
    }
}

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
