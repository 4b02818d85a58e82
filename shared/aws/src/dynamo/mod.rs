//! The store on one DynamoDB table (key layout in [`items`]).

mod accounts;
mod alerts;
mod coordination;
mod email;
mod ephemeral;
mod integrations;
pub mod items;
mod jobs;
mod kpis;
mod reports;

use std::time::Duration;

use aws_config::SdkConfig;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, PutRequest, ReturnValue, ScalarAttributeType, TimeToLiveSpecification,
    WriteRequest,
};
use chrono::{DateTime, Utc};
use kpi_core::page::Page;
use kpi_core::{Error, Result};

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

    /// Writes `item` if the stored one is at version `expected` and, with
    /// `owner`, belongs to that workspace (for items whose key names none):
    /// one call, where reading first to check the owner took two. A refusal
    /// is read back once to tell a conflict from a record that is not there
    /// (or not the owner's, which is the same to the caller).
    async fn put_versioned(
        &self,
        item: Item,
        expected: u64,
        owner: Option<&str>,
        what: &str,
    ) -> Result<()> {
        let (pk, sk) = (item[PK].clone(), item[SK].clone());
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .expression_attribute_names("#v", VERSION)
            .expression_attribute_values(":expected", n(expected));
        let put = match owner {
            Some(ws) => put
                .condition_expression("#v = :expected AND #ws = :ws")
                .expression_attribute_names("#ws", WORKSPACE)
                .expression_attribute_values(":ws", s(ws)),
            None => put.condition_expression("#v = :expected"),
        };
        match put.send().await {
            Ok(_) => Ok(()),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => {
                let stored = self
                    .get_item(
                        pk.as_s().cloned().unwrap_or_default(),
                        sk.as_s().map(String::as_str).unwrap_or_default(),
                    )
                    .await?;
                let theirs = stored.is_some_and(|stored| {
                    owner.is_none_or(|ws| {
                        stored
                            .get(WORKSPACE)
                            .and_then(|v| v.as_s().ok())
                            .map(String::as_str)
                            == Some(ws)
                    })
                });
                Err(if theirs {
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

/// A page of records from one query's items and its `LastEvaluatedKey`.
fn page_of<T: serde::de::DeserializeOwned>(items: &[Item], last: Option<&Item>) -> Result<Page<T>> {
    Ok(Page {
        items: items.iter().map(body).collect::<Result<_>>()?,
        next: cursor_from_key(last),
    })
}
