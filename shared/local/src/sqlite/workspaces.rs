//! Provider account links and per-workspace settings: `AccountStore`, `WorkspaceSettingsStore`.

use async_trait::async_trait;
use kpi_core::ports::store::{AccountLink, AccountStore, WorkspaceSettingsStore};
use kpi_core::{Error, IntegrationId, Result, WorkspaceId, WorkspaceScope};
use rusqlite::{OptionalExtension, params};

use super::{SqliteStore, db_error};

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
