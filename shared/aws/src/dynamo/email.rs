//! The DynamoDB `EmailStore`: email records, provider-id pointers and suppressions.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::{EmailRecord, EmailStore, Suppression, normalize_address};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, IntegrationId, Result, WorkspaceId, WorkspaceScope};

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

/// The sort key of an email under its sender, ordered by time.
fn email_by_sk(integration: &IntegrationId, at: DateTime<Utc>, id: &str) -> String {
    format!("EMAILBY#{integration}#{}#{id}", sortable_timestamp(at))
}

#[async_trait]
impl EmailStore for DynamoStore {
    async fn put_email(&self, scope: &WorkspaceScope, email: &EmailRecord) -> Result<()> {
        scope.check(&email.workspace)?;
        // The pointer first: a pointer without its record finds nothing; a
        // record without its pointer would miss its events.
        if let Some(provider_id) = &email.provider_message_id {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(PK, s(format!("EMAILREF#{provider_id}")))
                .item(SK, s("EMAILREF"))
                .item("ws", s(email.workspace.as_str()))
                .item("email", s(&email.id))
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        }
        let body_json = to_json(email)?;
        // By sender and time, for the sender's delivery KPIs: a copy of the
        // record under a sort key that ranges over time.
        if let Some(integration) = &email.integration {
            self.client
                .put_item()
                .table_name(&self.table)
                .item(PK, s(workspace_pk(email.workspace.as_str())))
                .item(SK, s(email_by_sk(integration, email.created_at, &email.id)))
                .item(BODY, s(body_json.clone()))
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(workspace_pk(email.workspace.as_str())))
            .item(SK, s(format!("EMAIL#{}", email.id)))
            .item(BODY, s(body_json))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(())
    }

    async fn get_email(&self, scope: &WorkspaceScope, id: &str) -> Result<Option<EmailRecord>> {
        self.get_item(
            workspace_pk(scope.workspace().as_str()),
            &format!("EMAIL#{id}"),
        )
        .await?
        .as_ref()
        .map(body)
        .transpose()
    }

    async fn suppress(
        &self,
        scope: &WorkspaceScope,
        address: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(PK, s(workspace_pk(scope.workspace().as_str())))
            .item(SK, s(format!("SUPPRESS#{}", normalize_address(address))))
            .item("reason", s(reason))
            .item("at", s(sortable_timestamp(at)))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(())
    }

    async fn is_suppressed(&self, scope: &WorkspaceScope, address: &str) -> Result<bool> {
        Ok(self
            .get_item(
                workspace_pk(scope.workspace().as_str()),
                &format!("SUPPRESS#{}", normalize_address(address)),
            )
            .await?
            .is_some())
    }

    async fn list_suppressions(&self, scope: &WorkspaceScope) -> Result<Vec<Suppression>> {
        let items = self
            .query_prefix(
                workspace_pk(scope.workspace().as_str()),
                "SUPPRESS#".into(),
                false,
                1000,
            )
            .await?;
        items
            .iter()
            .filter_map(|item| {
                let address = get_s(item, SK)?.strip_prefix("SUPPRESS#")?.to_owned();
                Some((
                    address,
                    get_s(item, "reason")?.to_owned(),
                    get_s(item, "at")?.to_owned(),
                ))
            })
            .map(|(address, reason, at)| {
                let at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| Error::internal("a stored time is unreadable").with_source(e))?
                    .to_utc();
                Ok(Suppression {
                    address,
                    reason,
                    at,
                })
            })
            .collect()
    }

    async fn unsuppress(&self, scope: &WorkspaceScope, address: &str) -> Result<bool> {
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(workspace_pk(scope.workspace().as_str())))
            .key(SK, s(format!("SUPPRESS#{}", normalize_address(address))))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn emails_sent_by(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EmailRecord>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND #sk BETWEEN :lower AND :upper")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(workspace_pk(scope.workspace().as_str())))
                .expression_attribute_values(
                    ":lower",
                    s(format!(
                        "EMAILBY#{integration}#{}",
                        sortable_timestamp(from)
                    )),
                )
                .expression_attribute_values(
                    ":upper",
                    s(format!("EMAILBY#{integration}#{}", sortable_timestamp(to))),
                )
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB Query", e))?;
            for item in page.items() {
                let record: EmailRecord = body(item)?;
                // BETWEEN includes the upper bound's prefix; `to` is exclusive.
                if record.created_at < to {
                    out.push(record);
                }
            }
            start = page.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(out);
            }
        }
    }

    async fn email_by_provider_id(
        &self,
        provider_message_id: &str,
    ) -> Result<Option<(WorkspaceId, String)>> {
        let Some(item) = self
            .get_item(format!("EMAILREF#{provider_message_id}"), "EMAILREF")
            .await?
        else {
            return Ok(None);
        };
        match (get_s(&item, "ws"), get_s(&item, "email")) {
            (Some(ws), Some(id)) => Ok(Some((WorkspaceId::parse(ws)?, id.to_owned()))),
            _ => Err(Error::internal("an email pointer is incomplete")),
        }
    }
}
