//! The DynamoDB `JobStore`: sync jobs and their per-integration and by-status indexes.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, TransactWriteItem};
use kpi_core::page::{Page, PageRequest};
use kpi_core::ports::store::{JobFilter, JobStore, KpiStore};
use kpi_core::time::sortable_timestamp;
use kpi_core::{
    AdminScope, Error, Integration, IntegrationId, JobId, KpiPoint, Result, SyncJob, WorkspaceScope,
};

use super::items::*;
use super::{DynamoStore, page_of};
use crate::error::{aws_error, code};

fn owned_job(item: &Item, scope: &WorkspaceScope) -> Result<SyncJob> {
    let job: SyncJob = body(item)?;
    scope
        .check(&job.workspace)
        .map_err(|_| Error::not_found("sync job not found"))?;
    Ok(job)
}

#[async_trait]
impl JobStore for DynamoStore {
    async fn create_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<bool> {
        scope.check(&job.workspace)?;
        let mut stored = job.clone();
        stored.version = job.version.max(1);
        self.put_if_absent(job_item(&stored)?, None).await
    }

    async fn create_job_with_integration(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        integration: &Integration,
    ) -> Result<Integration> {
        scope.check(&job.workspace)?;
        scope.check(&integration.workspace)?;
        let mut next = integration.clone();
        next.version = integration.version + 1;
        let mut stored_job = job.clone();
        stored_job.version = job.version.max(1);
        let put = |item: Item, condition: &str| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .condition_expression(condition)
        };
        let integration_put = put(integration_item(&next)?, "#v = :expected")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(integration.version))
            .build()
            .map_err(|e| Error::internal("invalid transaction").with_source(e))?;
        let job_put = put(job_item(&stored_job)?, "attribute_not_exists(PK)")
            .build()
            .map_err(|e| Error::internal("invalid transaction").with_source(e))?;
        let result = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(integration_put).build())
            .transact_items(TransactWriteItem::builder().put(job_put).build())
            .send()
            .await;
        match result {
            Ok(_) => Ok(next),
            Err(e) if code(&e) == Some("TransactionCanceledException") => Err(Error::conflict(
                "the integration changed or the job already exists",
            )
            .with_source(e)),
            Err(e) => Err(aws_error("DynamoDB TransactWriteItems", e)),
        }
    }

    async fn get_job(&self, scope: &WorkspaceScope, id: JobId) -> Result<SyncJob> {
        let item = self
            .get_item(job_pk(&id.to_string()), "JOB")
            .await?
            .ok_or_else(|| Error::not_found("sync job not found"))?;
        owned_job(&item, scope)
    }

    async fn update_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<SyncJob> {
        scope.check(&job.workspace)?;
        let mut next = job.clone();
        next.version = job.version + 1;
        // The key holds no workspace: the write is conditional on the stored
        // job being in this scope too.
        let owner = Some(scope.workspace().as_str());
        self.put_versioned(job_item(&next)?, job.version, owner, "sync job")
            .await?;
        Ok(next)
    }

    async fn update_job_with_kpis(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        points: &[KpiPoint],
    ) -> Result<SyncJob> {
        // A sync's points exceed a transaction's 100 items: the points first
        // (idempotent upserts), then the job's compare-and-swap.
        self.upsert_kpis(scope, points).await?;
        self.update_job(scope, job).await
    }

    async fn list_jobs(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>> {
        let pk = format!("INTJOBS#{integration}");
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI1)
            .key_condition_expression("GSI1PK = :pk")
            .filter_expression("#ws = :ws")
            .expression_attribute_names("#ws", WORKSPACE)
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":ws", s(scope.workspace().as_str()))
            .scan_index_forward(false)
            .limit(page.limit as i32)
            .set_exclusive_start_key(key_from_cursor(page.cursor.as_ref(), &[(GSI1PK, &pk)])?)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        page_of(out.items(), out.last_evaluated_key())
    }

    async fn find_job(&self, _admin: &AdminScope, id: JobId) -> Result<SyncJob> {
        let item = self
            .get_item(job_pk(&id.to_string()), "JOB")
            .await?
            .ok_or_else(|| Error::not_found("sync job not found"))?;
        body(&item)
    }

    async fn list_jobs_by_status(
        &self,
        _admin: &AdminScope,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>> {
        let pk = format!("JOBSTATUS#{}", filter.status);
        // Key values may not be empty; every timestamp sorts after "0".
        let lower = filter
            .since
            .map(sortable_timestamp)
            .unwrap_or_else(|| "0".into());
        // Sort keys are `{updated}#{id}`, so `{until}` itself bounds them exclusively.
        let upper = filter
            .until
            .map(sortable_timestamp)
            .unwrap_or_else(|| "~".into());
        let mut filters = Vec::new();
        let mut req = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(GSI2)
            .key_condition_expression("GSI2PK = :pk AND GSI2SK BETWEEN :lower AND :upper")
            .expression_attribute_values(":pk", s(pk.clone()))
            .expression_attribute_values(":lower", s(lower))
            .expression_attribute_values(":upper", s(upper))
            .scan_index_forward(false)
            .limit(page.limit as i32)
            .set_exclusive_start_key(key_from_cursor(page.cursor.as_ref(), &[(GSI2PK, &pk)])?);
        if let Some(p) = filter.provider {
            filters.push("#provider = :provider");
            req = req
                .expression_attribute_names("#provider", "provider")
                .expression_attribute_values(":provider", s(p.as_str()));
        }
        if let Some(ws) = &filter.workspace {
            filters.push("#ws = :ws");
            req = req
                .expression_attribute_names("#ws", WORKSPACE)
                .expression_attribute_values(":ws", s(ws.as_str()));
        }
        if !filters.is_empty() {
            req = req.filter_expression(filters.join(" AND "));
        }
        let out = req
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB Query", e))?;
        page_of(out.items(), out.last_evaluated_key())
    }
}
