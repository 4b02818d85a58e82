//! Expiring keys: `OAuthStateStore`, `DedupeStore` and `LeaseStore`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::{DedupeStore, LeaseStore, OAuthState, OAuthStateStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Result, WorkspaceScope};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, from_json, to_json};

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

    async fn oauth_state_held(&self, key: &str, now: DateTime<Utc>) -> Result<bool> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT 1 FROM oauth_states WHERE key = ?1 AND expires_at > ?2",
                params![key, sortable_timestamp(now)],
                |_| Ok(()),
            )
            .optional()
            .map(|found| found.is_some())
            .map_err(db_error)
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
