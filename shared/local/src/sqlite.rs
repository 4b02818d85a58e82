//! The embedded store: one SQLite file in WAL mode.
//!
//! Records are kept as JSON bodies with the columns that queries, indexes and
//! conditions need beside them. Every compare-and-swap is a single conditional
//! statement or one transaction, so the semantics match DynamoDB's conditional
//! writes and transactions. All access goes through one connection on a blocking
//! thread: SQLite serialises writers anyway, and one process owns the file.

mod alerts;
mod coordination;
mod email;
mod ephemeral;
mod integrations;
mod jobs;
mod kpis;
mod reports;
mod workspaces;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

pub use kpis::KPI_QUERY;

use kpi_core::page::Cursor;
use kpi_core::{Error, Result};
use rusqlite::{Connection, OptionalExtension};

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

-- A series is one metric of one integration; its points are keyed by the
-- series' number and the date. A sync's points of a metric sit together,
-- a new integration's at the end of the table, and each key is a few bytes
-- (the whole name of the series in every key made most of a sync's
-- writing). The KPI query reaches a metric's series of a workspace through
-- kpi_series' unique key, then each series' dates.
CREATE TABLE IF NOT EXISTS kpi_series (
    id INTEGER PRIMARY KEY,
    workspace TEXT NOT NULL,
    metric TEXT NOT NULL,
    integration TEXT NOT NULL,
    UNIQUE (workspace, metric, integration)
);

-- Series are kept, never removed, as their points outlive a deleted
-- integration. A point's value is the decimal's text (never a float); its
-- currency is NULL unless the unit is money.
CREATE TABLE IF NOT EXISTS kpi_points (
    series INTEGER NOT NULL,
    date TEXT NOT NULL,
    value TEXT NOT NULL,
    unit TEXT NOT NULL,
    currency TEXT,
    PRIMARY KEY (series, date)
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
    // Cached: the same few lookups run for every job and request.
    let body: Option<String> = c
        .prepare_cached(sql)
        .map_err(db_error)?
        .query_row(params, |r| r.get(0))
        .optional()
        .map_err(db_error)?;
    body.map(|b| from_json(&b)).transpose()
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
        kpis::migrate(&conn, SCHEMA)?;
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
