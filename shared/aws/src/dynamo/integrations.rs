//! The DynamoDB `IntegrationStore`: integrations and the due-for-sync index.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};
use kpi_core::page::{Page, PageRequest};
use kpi_core::ports::store::{DueIntegration, IntegrationStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Integration, IntegrationId, Result, WorkspaceScope};

use super::items::*;
use super::{DynamoStore, page_of};
use crate::error::aws_error;

#[async_trait]
impl IntegrationStore for DynamoStore {
    async fn create_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&integration.workspace)?;
        let mut stored = integration.clone();
        stored.version = 1;
        if self.put_if_absent(integration_item(&stored)?, None).await? {
            Ok(stored)
        } else {
            Err(Error::conflict(
                "an integration with this id already exists",
            ))
        }
    }

    async fn get_integration(
        &self,
        scope: &WorkspaceScope,
        id: IntegrationId,
    ) -> Result<Integration> {
        let item = self
            .get_item(
                workspace_pk(scope.workspace().as_str()),
                &integration_sk(&id.to_string()),
            )
            .await?
            .ok_or_else(|| Error::not_found("integration not found"))?;
        body(&item)
    }

    async fn list_integrations(
        &self,
        scope: &WorkspaceScope,
        page: &PageRequest,
    ) -> Result<Page<Integration>> {
        let pk = workspace_pk(scope.workspace().as_str());
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("PK = :pk AND begins_with(SK, :prefix)")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":prefix", s("INT#"))
            .limit(page.limit as i32)
            .set_exclusive_start_key(key_from_cursor(page.cursor.as_ref(), &[(PK, &pk)])?)
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        page_of(out.items(), out.last_evaluated_key())
    }

    async fn update_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&integration.workspace)?;
        let mut next = integration.clone();
        next.version = integration.version + 1;
        self.put_versioned(
            integration_item(&next)?,
            integration.version,
            None,
            "integration",
        )
        .await?;
        Ok(next)
    }

    async fn delete_integration(&self, scope: &WorkspaceScope, id: IntegrationId) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(workspace_pk(scope.workspace().as_str())))
            .key(SK, s(integration_sk(&id.to_string())))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        Ok(out.attributes.is_some())
    }

    async fn due_integrations(
        &self,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<DueIntegration>> {
        // `~` sorts after every character of an id, so every key of `now` is included.
        let upper = format!("{}#~", sortable_timestamp(now));
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :due AND GSI1SK <= :upper")
            .expression_attribute_values(":due", s(DUE_PARTITION))
            .expression_attribute_values(":upper", s(upper))
            .limit(page.limit as i32)
            .set_exclusive_start_key(key_from_cursor(
                page.cursor.as_ref(),
                &[(GSI1PK, DUE_PARTITION)],
            )?)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        let mut items = Vec::with_capacity(out.items().len());
        for item in out.items() {
            let i: Integration = body(item)?;
            if let Some(next_sync_at) = i.next_sync_at {
                items.push(DueIntegration {
                    workspace: i.workspace,
                    integration: i.id,
                    provider: i.provider,
                    next_sync_at,
                });
            }
        }
        Ok(Page {
            items,
            next: cursor_from_key(out.last_evaluated_key()),
        })
    }
}
