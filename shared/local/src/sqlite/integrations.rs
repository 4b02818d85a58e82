//! Integrations: the `IntegrationStore` and the compare-and-swap write it shares with jobs.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::page::{Cursor, Page, PageRequest};
use kpi_core::ports::store::{DueIntegration, IntegrationStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Integration, IntegrationId, Result, WorkspaceScope};
use rusqlite::{OptionalExtension, params};

use super::{
    DUE_INTEGRATIONS_QUERY, SqliteStore, db_error, from_json, one_body, split_cursor, to_json,
    two_part_cursor,
};

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

pub(super) fn write_integration_cas(
    tx: &rusqlite::Transaction<'_>,
    scope: &WorkspaceScope,
    integration: &Integration,
) -> Result<Integration> {
    let mut next = integration.clone();
    next.version = integration.version + 1;
    let body = to_json(&next)?;
    let changed = tx
        .prepare_cached(
            "UPDATE integrations SET version = ?1, due_at = ?2, body = ?3, provider = ?4
             WHERE id = ?5 AND workspace = ?6 AND version = ?7",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                next.version as i64,
                due_at(&next),
                body,
                next.provider.as_str(),
                next.id.to_string(),
                scope.workspace().as_str(),
                integration.version as i64
            ])
        })
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
