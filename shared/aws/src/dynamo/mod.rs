//! The store on one DynamoDB table (key layout in [`items`]).

mod ephemeral;
pub mod items;

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, Put, PutRequest, ReturnValue, ScalarAttributeType, TimeToLiveSpecification,
    TransactWriteItem, WriteRequest,
};
use chrono::{DateTime, Utc};
use kpi_core::page::{Page, PageRequest};
use kpi_core::ports::store::{
    AccountLink, AccountStore, AlertEvent, AlertStore, DedupeStore, DueIntegration, EmailRecord,
    EmailStore, IntegrationStore, JobFilter, JobStore, KpiQuery, KpiStore, LeaseStore, OAuthState,
    OAuthStateStore, ReportStore, Suppression, WorkspaceSettingsStore, normalize_address,
};
use kpi_core::time::sortable_timestamp;
use kpi_core::{
    AdminScope, Error, Integration, IntegrationId, JobId, KpiPoint, Result, SyncJob, WorkspaceId,
    WorkspaceScope,
};

use crate::error::{aws_error, code};
use items::*;

const CONDITION_FAILED: &str = "ConditionalCheckFailedException";
/// BatchWriteItem's limit.
const WRITE_BATCH: usize = 25;

#[derive(Clone)]
pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    pub fn new(config: &SdkConfig, table: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            table: table.into(),
        }
    }

    /// Creates the table with its indexes and TTL, as `template.yaml` declares it.
    /// For tests and local setups; deployments create it with CloudFormation.
    pub async fn create_table(&self) -> Result<()> {
        let attr = |name: &str| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(ScalarAttributeType::S)
                .build()
                .map_err(|e| Error::internal("table definition").with_source(e))
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(|e| Error::internal("table definition").with_source(e))
        };
        let gsi = |name: &str, pk: &str, sk: &str| -> Result<GlobalSecondaryIndex> {
            GlobalSecondaryIndex::builder()
                .index_name(name)
                .key_schema(key(pk, KeyType::Hash)?)
                .key_schema(key(sk, KeyType::Range)?)
                .projection(
                    Projection::builder()
                        .projection_type(ProjectionType::All)
                        .build(),
                )
                .build()
                .map_err(|e| Error::internal("table definition").with_source(e))
        };
        self.client
            .create_table()
            .table_name(&self.table)
            .billing_mode(BillingMode::PayPerRequest)
            .set_attribute_definitions(Some(
                [PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK]
                    .iter()
                    .map(|n| attr(n))
                    .collect::<Result<Vec<_>>>()?,
            ))
            .key_schema(key(PK, KeyType::Hash)?)
            .key_schema(key(SK, KeyType::Range)?)
            .global_secondary_indexes(gsi(GSI1, GSI1PK, GSI1SK)?)
            .global_secondary_indexes(gsi(GSI2, GSI2PK, GSI2SK)?)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB CreateTable", e))?;
        self.client
            .update_time_to_live()
            .table_name(&self.table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .enabled(true)
                    .attribute_name(TTL)
                    .build()
                    .map_err(|e| Error::internal("ttl definition").with_source(e))?,
            )
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB UpdateTimeToLive", e))?;
        Ok(())
    }

    /// The table's name.
    pub fn table_name(&self) -> &str {
        &self.table
    }

    async fn get_item(&self, pk: String, sk: &str) -> Result<Option<Item>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB GetItem", e))?;
        Ok(out.item)
    }

    /// Puts `item` if the stored `version` equals `expected`; a failed condition
    /// is `Conflict` when the record exists and `NotFound` when it does not.
    /// Items of partition `pk` whose sort key starts with `prefix`, in key
    /// order (`newest_first`: reversed), at most `limit`, across pages.
    async fn query_prefix(
        &self,
        pk: String,
        prefix: String,
        newest_first: bool,
        limit: usize,
    ) -> Result<Vec<Item>> {
        let mut out = Vec::new();
        let mut start = None;
        loop {
            let page = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("#pk = :pk AND begins_with(#sk, :prefix)")
                .expression_attribute_names("#pk", PK)
                .expression_attribute_names("#sk", SK)
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":prefix", s(prefix.clone()))
                .scan_index_forward(!newest_first)
                .limit(limit.clamp(1, 1000) as i32)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB Query", e))?;
            out.extend(page.items().iter().cloned());
            start = page.last_evaluated_key().cloned();
            if start.is_none() || out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    async fn put_versioned(&self, item: Item, expected: u64, what: &str) -> Result<()> {
        let (pk, sk) = (item[PK].clone(), item[SK].clone());
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(expected))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => {
                let exists = self
                    .get_item(
                        pk.as_s().cloned().unwrap_or_default(),
                        sk.as_s().map(String::as_str).unwrap_or_default(),
                    )
                    .await?
                    .is_some();
                Err(if exists {
                    Error::conflict(format!(
                        "the {what} was changed by someone else; reload and try again"
                    ))
                } else {
                    Error::not_found(format!("{what} not found"))
                })
            }
            Err(e) => Err(aws_error("DynamoDB PutItem", e)),
        }
    }

    /// Deletes an expiring record if it has not expired at `now`, and returns
    /// what it held: atomic (delete-if-live with the old image), so of two
    /// concurrent takers exactly one gets it.
    async fn delete_if_live(
        &self,
        pk: String,
        sk: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Item>> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(pk))
            .key(SK, s(sk))
            .condition_expression("attribute_exists(PK) AND #exp > :now")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_millis(now)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(out.attributes),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => Ok(None),
            Err(e) => Err(aws_error("DynamoDB DeleteItem", e)),
        }
    }

    /// Puts `item` unless its key exists (or exists but has expired at `now`, for
    /// expiring records). `false` when the condition failed.
    async fn put_if_absent(&self, item: Item, now: Option<DateTime<Utc>>) -> Result<bool> {
        let mut req = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item));
        req = match now {
            Some(now) => req
                .condition_expression("attribute_not_exists(PK) OR #exp <= :now")
                .expression_attribute_names("#exp", EXPIRES_AT)
                .expression_attribute_values(":now", n(epoch_millis(now))),
            None => req.condition_expression("attribute_not_exists(PK)"),
        };
        match req.send().await {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(aws_error("DynamoDB PutItem", e)),
        }
    }

    /// Writes items in batches of 25, resending what DynamoDB leaves unprocessed.
    async fn batch_put(&self, items: Vec<Item>) -> Result<()> {
        for chunk in items.chunks(WRITE_BATCH) {
            let mut pending: Vec<WriteRequest> = chunk
                .iter()
                .map(|item| {
                    PutRequest::builder()
                        .set_item(Some(item.clone()))
                        .build()
                        .map(|put| WriteRequest::builder().put_request(put).build())
                        .map_err(|e| Error::internal("invalid batch item").with_source(e))
                })
                .collect::<Result<_>>()?;
            let mut attempt = 0u32;
            while !pending.is_empty() {
                if attempt > 0 {
                    if attempt > 8 {
                        return Err(Error::transient(
                            "DynamoDB kept items unprocessed; the table is throttled",
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(25 << attempt.min(6))).await;
                }
                attempt += 1;
                let out = self
                    .client
                    .batch_write_item()
                    .request_items(&self.table, std::mem::take(&mut pending))
                    .send()
                    .await
                    .map_err(|e| aws_error("DynamoDB BatchWriteItem", e))?;
                pending = out
                    .unprocessed_items
                    .and_then(|mut u| u.remove(&self.table))
                    .unwrap_or_default();
            }
        }
        Ok(())
    }
}

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
        self.put_versioned(integration_item(&next)?, integration.version, "integration")
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

/// A page of records from one query's items and its `LastEvaluatedKey`.
fn page_of<T: serde::de::DeserializeOwned>(items: &[Item], last: Option<&Item>) -> Result<Page<T>> {
    Ok(Page {
        items: items.iter().map(body).collect::<Result<_>>()?,
        next: cursor_from_key(last),
    })
}

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
        // The key holds no workspace: make sure the stored job is in this scope.
        self.get_job(scope, job.id).await?;
        let mut next = job.clone();
        next.version = job.version + 1;
        self.put_versioned(job_item(&next)?, job.version, "sync job")
            .await?;
        Ok(next)
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

#[async_trait]
impl KpiStore for DynamoStore {
    async fn upsert_kpis(&self, scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<usize> {
        // One batch may not hold the same key twice: the last point of a key wins,
        // as it would with sequential writes.
        let mut by_key: HashMap<(String, String), Item> = HashMap::new();
        for p in points {
            scope.check(&p.workspace)?;
            let item = kpi_item(p)?;
            let key = (
                get_s(&item, PK).unwrap_or_default().to_owned(),
                get_s(&item, SK).unwrap_or_default().to_owned(),
            );
            by_key.insert(key, item);
        }
        self.batch_put(by_key.into_values().collect()).await?;
        Ok(points.len())
    }

    async fn query_kpis(&self, scope: &WorkspaceScope, query: &KpiQuery) -> Result<Vec<KpiPoint>> {
        let pk = kpi_pk(scope.workspace().as_str(), query.metric.as_str());
        let mut points = Vec::new();
        let mut start = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .key_condition_expression("PK = :pk AND SK BETWEEN :lower AND :upper")
                .expression_attribute_values(":pk", s(pk.clone()))
                .expression_attribute_values(":lower", s(format!("{}#", query.from)))
                .expression_attribute_values(":upper", s(format!("{}#~", query.to)))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| aws_error("DynamoDB Query", e))?;
            for item in out.items() {
                let p: KpiPoint = body(item)?;
                if query.integration.is_none_or(|i| i == p.integration) {
                    points.push(p);
                }
            }
            start = out.last_evaluated_key().cloned();
            if start.is_none() {
                return Ok(points);
            }
        }
    }
}

/// The sort key of an email under its sender, ordered by time.
fn email_by_sk(integration: &IntegrationId, at: DateTime<Utc>, id: &str) -> String {
    format!("EMAILBY#{integration}#{}#{id}", sortable_timestamp(at))
}

fn oauth_pk(key: &str) -> String {
    format!("OAUTH#{key}")
}

#[async_trait]
impl OAuthStateStore for DynamoStore {
    async fn put_oauth_state(&self, scope: &WorkspaceScope, state: &OAuthState) -> Result<()> {
        scope.check(&state.workspace)?;
        let mut item = Item::new();
        item.insert(PK.into(), s(oauth_pk(&state.key)));
        item.insert(SK.into(), s("OAUTH"));
        item.insert(BODY.into(), s(to_json(state)?));
        expiry(&mut item, state.expires_at);
        if self.put_if_absent(item, None).await? {
            Ok(())
        } else {
            Err(Error::conflict("oauth state already exists"))
        }
    }

    async fn consume_oauth_state(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>> {
        // Of two concurrent callbacks with the same state exactly one gets it.
        self.delete_if_live(oauth_pk(key), "OAUTH", now)
            .await?
            .as_ref()
            .map(body)
            .transpose()
    }
}

#[async_trait]
impl DedupeStore for DynamoStore {
    async fn first_seen(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut item = Item::new();
        item.insert(PK.into(), s(format!("DEDUPE#{key}")));
        item.insert(SK.into(), s("DEDUPE"));
        expiry(&mut item, expires_at);
        self.put_if_absent(item, Some(now)).await
    }

    async fn forget(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(format!("DEDUPE#{key}")))
            .key(SK, s("DEDUPE"))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        Ok(())
    }
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

#[async_trait]
impl LeaseStore for DynamoStore {
    async fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool> {
        let mut item = Item::new();
        item.insert(PK.into(), s(format!("LEASE#{name}")));
        item.insert(SK.into(), s("LEASE"));
        item.insert("owner".into(), s(owner));
        expiry(&mut item, expires_at);
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(PK) OR #exp <= :now OR #owner = :owner")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":now", n(epoch_millis(now)))
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(true),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => Ok(false),
            Err(e) => Err(aws_error("DynamoDB PutItem", e)),
        }
    }

    async fn release_lease(&self, name: &str, owner: &str) -> Result<()> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(format!("LEASE#{name}")))
            .key(SK, s("LEASE"))
            .condition_expression("#owner = :owner")
            .expression_attribute_names("#owner", "owner")
            .expression_attribute_values(":owner", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else holds it now (ours expired): nothing of ours to free.
            Err(e) if code(&e) == Some(CONDITION_FAILED) => Ok(()),
            Err(e) => Err(aws_error("DynamoDB DeleteItem", e)),
        }
    }
}

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
        self.put_versioned(item, rule.version, "alert rule").await?;
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
