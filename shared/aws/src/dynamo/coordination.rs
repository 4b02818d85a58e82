//! The DynamoDB `OAuthStateStore`, `DedupeStore` and `LeaseStore`: single conditional items.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kpi_core::ports::store::{DedupeStore, LeaseStore, OAuthState, OAuthStateStore};
use kpi_core::{Error, Result, WorkspaceScope};

use super::items::*;
use super::{CONDITION_FAILED, DynamoStore};
use crate::error::{aws_error, code};

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

    async fn oauth_state_held(&self, key: &str, now: DateTime<Utc>) -> Result<bool> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(PK, s(oauth_pk(key)))
            .key(SK, s("OAUTH"))
            .projection_expression("#exp")
            .expression_attribute_names("#exp", EXPIRES_AT)
            // A state put moments ago (the start of the flow) is seen.
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| aws_error("DynamoDB GetItem", e))?;
        let expires = out
            .item()
            .and_then(|item| item.get(EXPIRES_AT))
            .and_then(|v| v.as_n().ok())
            .and_then(|v| v.parse::<i64>().ok());
        Ok(expires.is_some_and(|at| at > epoch_millis(now)))
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
