//! Short-lived records (sign-in sessions and attempts) in the `ephemeral` table.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::Result;
use kpi_core::ports::store::EphemeralStore;
use kpi_core::time::sortable_timestamp;
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, from_json, to_json};

#[async_trait]
impl EphemeralStore for SqliteStore {
    async fn put_ephemeral(
        &self,
        key: &str,
        body: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let (key, body) = (key.to_owned(), to_json(body)?);
        self.with(move |c| {
            c.execute(
                "INSERT INTO ephemeral (key, expires_at, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT (key) DO UPDATE SET expires_at = excluded.expires_at, body = excluded.body",
                params![key, sortable_timestamp(expires_at), body],
            )
            .map_err(db_error)?;
            Ok(())
        })
        .await
    }

    async fn get_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let key = key.to_owned();
        self.read(move |c| {
            c.query_row(
                "SELECT body FROM ephemeral WHERE key = ?1 AND expires_at > ?2",
                params![key, sortable_timestamp(now)],
                |r| r.get::<_, String>(0),
            )
            .optional()
            .map_err(db_error)?
            .map(|b| from_json(&b))
            .transpose()
        })
        .await
    }

    async fn take_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let key = key.to_owned();
        self.with(move |c| {
            // One statement: of two takers, the one whose DELETE ran first gets it.
            let taken: Option<(String, String)> = c
                .query_row(
                    "DELETE FROM ephemeral WHERE key = ?1 RETURNING expires_at, body",
                    params![key],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()
                .map_err(db_error)?;
            match taken {
                Some((expires_at, body)) if expires_at > sortable_timestamp(now) => {
                    Ok(Some(from_json(&body)?))
                }
                _ => Ok(None),
            }
        })
        .await
    }

    async fn delete_ephemeral(&self, key: &str) -> Result<()> {
        let key = key.to_owned();
        self.with(move |c| {
            c.execute("DELETE FROM ephemeral WHERE key = ?1", params![key])
                .map_err(db_error)?;
            Ok(())
        })
        .await
    }
}
