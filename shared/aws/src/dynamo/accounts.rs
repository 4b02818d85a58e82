//! The DynamoDB `AccountStore` and `WorkspaceSettingsStore`: account links and workspace settings.

use async_trait::async_trait;
use kpi_core::ports::store::{AccountLink, AccountStore, WorkspaceSettingsStore};
use kpi_core::{IntegrationId, Result, WorkspaceId, WorkspaceScope};

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

/// Account links: `ACCOUNT#{account}` / `INT#{integration}`, one item each.
#[async_trait]
impl AccountStore for DynamoStore {
    async fn link_account(
        &self,
        account: &str,
        workspace: &WorkspaceId,
        integration: IntegrationId,
    ) -> Result<()> {
        let mut item = Item::new();
        item.insert(PK.into(), s(format!("ACCOUNT#{account}")));
        item.insert(SK.into(), s(integration_sk(&integration.to_string())));
        item.insert("ws".into(), s(workspace.to_string()));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(())
    }

    async fn unlink_account(&self, account: &str, integration: IntegrationId) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(format!("ACCOUNT#{account}")))
            .key(SK, s(integration_sk(&integration.to_string())))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        Ok(())
    }

    async fn account_integrations(&self, account: &str, limit: u32) -> Result<Vec<AccountLink>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_values(":pk", s(format!("ACCOUNT#{account}")))
            .limit(limit.clamp(1, 100) as i32)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        out.items()
            .iter()
            .filter_map(|item| {
                let integration = get_s(item, SK)?.strip_prefix("INT#")?;
                Some((get_s(item, "ws")?, integration))
            })
            .map(|(workspace, integration)| {
                Ok(AccountLink {
                    workspace: WorkspaceId::parse(workspace)?,
                    integration: IntegrationId::parse(integration)?,
                })
            })
            .collect()
    }
}

/// Workspace settings: `WS#{workspace}` / `SETTING#{name}`, the JSON in the body.
#[async_trait]
impl WorkspaceSettingsStore for DynamoStore {
    async fn get_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
    ) -> Result<Option<serde_json::Value>> {
        self.get_item(
            workspace_pk(scope.workspace().as_str()),
            &format!("SETTING#{name}"),
        )
        .await?
        .as_ref()
        .map(body)
        .transpose()
    }

    async fn put_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(workspace_pk(scope.workspace().as_str())))
            .item(SK, s(format!("SETTING#{name}")))
            .item(BODY, s(value.to_string()))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(())
    }
}
