//! Short-lived records (sign-in sessions and attempts): one item each, gone
//! for reads at `expires_at` and deleted by the table's TTL later.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::Result;
use kpi_core::ports::store::EphemeralStore;

use super::DynamoStore;
use super::items::*;
use crate::error::aws_error;

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
        self.delete_if_live(ephemeral_pk(key), EPHEMERAL_SK, now)
            .await?
            .as_ref()
            .map(body)
            .transpose()
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
