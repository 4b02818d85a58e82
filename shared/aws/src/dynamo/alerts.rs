//! The DynamoDB `AlertStore`: alert rules and their events.

use async_trait::async_trait;
use kpi_core::ports::store::{AlertEvent, AlertStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Result, WorkspaceScope};

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

/// Alert rules: `WS#{workspace}` / `ALERT#{id}` (versioned); their events
/// `WS#{workspace}` / `ALERTEV#{rule}#{at}#{id}`, so a rule's history is one
/// range query, newest first.
#[async_trait]
impl AlertStore for DynamoStore {
    async fn create_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = 1;
        let mut item = Item::new();
        item.insert(PK.into(), s(workspace_pk(next.workspace.as_str())));
        item.insert(SK.into(), s(format!("ALERT#{}", next.id)));
        item.insert(VERSION.into(), n(1));
        item.insert(BODY.into(), s(to_json(&next)?));
        if self.put_if_absent(item, None).await? {
            Ok(next)
        } else {
            Err(Error::conflict("an alert rule with this id exists"))
        }
    }

    async fn get_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<kpi_core::alert::AlertRule> {
        let item = self
            .get_item(
                workspace_pk(scope.workspace().as_str()),
                &format!("ALERT#{id}"),
            )
            .await?
            .ok_or_else(|| Error::not_found("alert rule not found"))?;
        body(&item)
    }

    async fn list_alerts(&self, scope: &WorkspaceScope) -> Result<Vec<kpi_core::alert::AlertRule>> {
        self.query_prefix(
            workspace_pk(scope.workspace().as_str()),
            "ALERT#".into(),
            false,
            1000,
        )
        .await?
        .iter()
        .map(body)
        .collect()
    }

    async fn update_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &kpi_core::alert::AlertRule,
    ) -> Result<kpi_core::alert::AlertRule> {
        scope.check(&rule.workspace)?;
        let mut next = rule.clone();
        next.version = rule.version + 1;
        let mut item = Item::new();
        item.insert(PK.into(), s(workspace_pk(next.workspace.as_str())));
        item.insert(SK.into(), s(format!("ALERT#{}", next.id)));
        item.insert(VERSION.into(), n(next.version));
        item.insert(BODY.into(), s(to_json(&next)?));
        self.put_versioned(item, rule.version, None, "alert rule")
            .await?;
        Ok(next)
    }

    async fn delete_alert(
        &self,
        scope: &WorkspaceScope,
        id: kpi_core::ids::AlertId,
    ) -> Result<bool> {
        let pk = workspace_pk(scope.workspace().as_str());
        let out = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk.clone()))
            .key(SK, s(format!("ALERT#{id}")))
            .return_values(aws_sdk_dynamodb::types::ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        for event in self.list_alert_events(scope, id, 500).await? {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s(pk.clone()))
                .key(SK, s(alert_event_sk(&event)))
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        }
        Ok(out.attributes().is_some_and(|a| !a.is_empty()))
    }

    async fn add_alert_event(&self, scope: &WorkspaceScope, event: &AlertEvent) -> Result<bool> {
        scope.check(&event.workspace)?;
        // The event's id alone decides whether it is new (its time may differ
        // between two recordings of the same event).
        let mut marker = Item::new();
        marker.insert(
            PK.into(),
            s(format!("ALERTEVID#{}#{}", event.workspace, event.id)),
        );
        marker.insert(SK.into(), s("ALERTEVID"));
        if !self.put_if_absent(marker, None).await? {
            return Ok(false);
        }
        let mut item = Item::new();
        item.insert(PK.into(), s(workspace_pk(event.workspace.as_str())));
        item.insert(SK.into(), s(alert_event_sk(event)));
        item.insert(BODY.into(), s(to_json(event)?));
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(true)
    }

    async fn list_alert_events(
        &self,
        scope: &WorkspaceScope,
        rule: kpi_core::ids::AlertId,
        limit: u32,
    ) -> Result<Vec<AlertEvent>> {
        self.query_prefix(
            workspace_pk(scope.workspace().as_str()),
            format!("ALERTEV#{rule}#"),
            true,
            limit.clamp(1, 500) as usize,
        )
        .await?
        .iter()
        .map(body)
        .collect()
    }
}

fn alert_event_sk(event: &AlertEvent) -> String {
    format!(
        "ALERTEV#{}#{}#{}",
        event.rule,
        sortable_timestamp(event.at),
        event.id
    )
}
