//! The DynamoDB `ReportStore`: the schedule of due reports.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::ReportStore;
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Result, WorkspaceId, WorkspaceScope};

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

/// Due reports: one partition `REPORTDUE` sorted by `{time}#{workspace}`, so
/// the scheduler reads only what is due (one query); each workspace's
/// `WS#{workspace}` / `REPORTDUE` item remembers its entry to move it.
#[async_trait]
impl ReportStore for DynamoStore {
    async fn schedule_report(
        &self,
        scope: &WorkspaceScope,
        next: Option<DateTime<Utc>>,
    ) -> Result<()> {
        let ws = scope.workspace().as_str();
        let pointer = self.get_item(workspace_pk(ws), "REPORTDUE").await?;
        if let Some(old) = pointer.as_ref().and_then(|p| get_s(p, "entry")) {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key(PK, s("REPORTDUE"))
                .key(SK, s(old))
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        }
        match next {
            Some(at) => {
                let entry = format!("{}#{ws}", sortable_timestamp(at));
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item(PK, s("REPORTDUE"))
                    .item(SK, s(&entry))
                    .item("ws", s(ws))
                    .send()
                    .await
                    .map_err(|e| aws_error("DynamoDB PutItem", e))?;
                self.client
                    .put_item()
                    .table_name(&self.table)
                    .item(PK, s(workspace_pk(ws)))
                    .item(SK, s("REPORTDUE"))
                    .item("entry", s(entry))
                    .send()
                    .await
                    .map_err(|e| aws_error("DynamoDB PutItem", e))?;
            }
            None => {
                self.client
                    .delete_item()
                    .table_name(&self.table)
                    .key(PK, s(workspace_pk(ws)))
                    .key(SK, s("REPORTDUE"))
                    .send()
                    .await
                    .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
            }
        }
        Ok(())
    }

    async fn due_reports(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, DateTime<Utc>)>> {
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("#pk = :pk AND #sk <= :now")
            .expression_attribute_names("#pk", PK)
            .expression_attribute_names("#sk", SK)
            .expression_attribute_values(":pk", s("REPORTDUE"))
            // `~` sorts after every workspace id: entries at `now` exactly are due.
            .expression_attribute_values(":now", s(format!("{}#~", sortable_timestamp(now))))
            .limit(limit.clamp(1, 1000) as i32)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        out.items()
            .iter()
            .filter_map(|item| {
                let (at, _) = get_s(item, SK)?.split_once('#')?;
                Some((get_s(item, "ws")?.to_owned(), at.to_owned()))
            })
            .map(|(ws, at)| {
                let at = DateTime::parse_from_rfc3339(&at)
                    .map_err(|e| Error::internal("a stored time is unreadable").with_source(e))?
                    .to_utc();
                Ok((WorkspaceId::parse(&ws)?, at))
            })
            .collect()
    }
}
