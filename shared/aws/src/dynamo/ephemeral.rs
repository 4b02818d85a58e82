//! Short-lived records (sign-in sessions and attempts): one item each, gone
//! for reads at `expires_at` and deleted by the table's TTL later.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;
use chrono::{DateTime, Utc};
use kpi_core::Result;
use kpi_core::ports::store::EphemeralStore;

use super::items::*;
use super::{CONDITION_FAILED, DynamoStore};
use crate::error::{aws_error, code};

fn ephemeral_pk(key: &str) -> String {
    format!("EPHEMERAL#{key}")
}

const EPHEMERAL_SK: &str = "EPHEMERAL";

fn live_body(item: &Item, now: DateTime<Utc>) -> Result<Option<serde_json::Value>> {
    let expires = item
        .get(EXPIRES_AT)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse::<i64>().ok())
        .unwrap_or(0);
    if expires <= epoch_millis(now) {
        return Ok(None);
    }
    body(item).map(Some)
}

#[async_trait]
impl EphemeralStore for DynamoStore {
    async fn put_ephemeral(
        &self,
        key: &str,
        value: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<()> {
        let mut item = Item::new();
        item.insert(PK.into(), s(ephemeral_pk(key)));
        item.insert(SK.into(), s(EPHEMERAL_SK));
        item.insert(BODY.into(), s(to_json(value)?));
        expiry(&mut item, expires_at);
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB PutItem", e))?;
        Ok(())
    }

    async fn get_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(ephemeral_pk(key)))
            .key(SK, s(EPHEMERAL_SK))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB GetItem", e))?;
        match out.item() {
            Some(item) => live_body(item, now),
            None => Ok(None),
        }
    }

    async fn take_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>> {
        // Delete-if-live with the old image returned: atomic, so of two
        // concurrent takers exactly one gets it.
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(ephemeral_pk(key)))
            .key(SK, s(EPHEMERAL_SK))
            .condition_expression("attribute_exists(PK) AND #exp > :now")
            .expression_attribute_names("#exp", EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_millis(now)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => out.attributes.as_ref().map(body).transpose(),
            Err(e) if code(&e) == Some(CONDITION_FAILED) => Ok(None),
            Err(e) => Err(aws_error("DynamoDB DeleteItem", e)),
        }
    }

    async fn delete_ephemeral(&self, key: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key(PK, s(ephemeral_pk(key)))
            .key(SK, s(EPHEMERAL_SK))
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB DeleteItem", e))?;
        Ok(())
    }
}
