//! Sent emails, their indexes and suppressed addresses: the `EmailStore`.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::{EmailRecord, EmailStore, Suppression, normalize_address};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, IntegrationId, Result, WorkspaceId, WorkspaceScope};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error, one_body, to_json};

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
