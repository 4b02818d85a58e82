//! Key layout of the single table and conversions between records and items.
//!
//! | record        | PK                      | SK                    | GSI1 (PK / SK)                       | GSI2 (PK / SK)                   |
//! |---------------|-------------------------|-----------------------|--------------------------------------|----------------------------------|
//! | integration   | `WS#{ws}`               | `INT#{id}`            | `DUE` / `{next_sync}#{id}` (due only) |                                  |
//! | sync job      | `JOB#{id}`              | `JOB`                 | `INTJOBS#{integration}` / `{id}`     | `JOBSTATUS#{status}` / `{updated}#{id}` |
//! | KPI point     | `KPI#{ws}#{metric}`     | `{date}#{integration}`|                                      |                                  |
//! | OAuth state   | `OAUTH#{key}`           | `OAUTH`               |                                      |                                  |
//! | dedupe key    | `DEDUPE#{key}`          | `DEDUPE`              |                                      |                                  |
//! | email         | `WS#{ws}`               | `EMAIL#{id}`          |                                      |                                  |
//! | suppression   | `WS#{ws}`               | `SUPPRESS#{address}`  |                                      |                                  |
//! | lease         | `LEASE#{name}`          | `LEASE`               |                                      |                                  |
//!
//! GSI1 is sparse for integrations: only connected integrations with a next sync
//! time carry `GSI1PK = DUE`, so the scheduler's query reads due ones only.
//! Expiring records carry `expires_at` (epoch milliseconds, checked on every
//! read and condition) and `ttl` (epoch seconds, for DynamoDB's lazy deletion).

use std::collections::HashMap;

use aws_sdk_dynamodb::types::AttributeValue;
use chrono::{DateTime, Utc};
use kpi_core::page::Cursor;
use kpi_core::time::sortable_timestamp;
use kpi_core::{Error, Integration, KpiPoint, Result, SyncJob};

pub type Item = HashMap<String, AttributeValue>;

pub const PK: &str = "PK";
pub const SK: &str = "SK";
pub const GSI1: &str = "GSI1";
pub const GSI1PK: &str = "GSI1PK";
pub const GSI1SK: &str = "GSI1SK";
pub const GSI2: &str = "GSI2";
pub const GSI2PK: &str = "GSI2PK";
pub const GSI2SK: &str = "GSI2SK";
pub const BODY: &str = "body";
pub const VERSION: &str = "version";
pub const WORKSPACE: &str = "workspace";
pub const EXPIRES_AT: &str = "expires_at";
pub const TTL: &str = "ttl";

pub const DUE_PARTITION: &str = "DUE";

pub fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

pub fn get_s<'a>(item: &'a Item, name: &str) -> Option<&'a str> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| Error::internal("cannot encode record").with_source(e))
}

pub fn body<T: serde::de::DeserializeOwned>(item: &Item) -> Result<T> {
    let text = get_s(item, BODY).ok_or_else(|| Error::internal("stored item has no body"))?;
    serde_json::from_str(text)
        .map_err(|e| Error::internal("stored record is corrupt").with_source(e))
}

pub fn epoch_millis(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

/// `expires_at` and `ttl` attributes of an expiring record.
pub fn expiry(item: &mut Item, expires_at: DateTime<Utc>) {
    item.insert(EXPIRES_AT.into(), n(epoch_millis(expires_at)));
    // DynamoDB TTL deletes lazily (up to days later); reads check expires_at.
    item.insert(TTL.into(), n(expires_at.timestamp() + 1));
}

pub fn workspace_pk(ws: &str) -> String {
    format!("WS#{ws}")
}

pub fn integration_sk(id: &str) -> String {
    format!("INT#{id}")
}

pub fn job_pk(id: &str) -> String {
    format!("JOB#{id}")
}

pub fn integration_item(i: &Integration) -> Result<Item> {
    let mut item = Item::new();
    item.insert(PK.into(), s(workspace_pk(i.workspace.as_str())));
    item.insert(SK.into(), s(integration_sk(&i.id.to_string())));
    item.insert(WORKSPACE.into(), s(i.workspace.as_str()));
    item.insert(VERSION.into(), n(i.version));
    item.insert(BODY.into(), s(to_json(i)?));
    if let Some(next) = i.next_sync_at.filter(|_| i.status().is_syncable()) {
        item.insert(GSI1PK.into(), s(DUE_PARTITION));
        item.insert(
            GSI1SK.into(),
            s(format!("{}#{}", sortable_timestamp(next), i.id)),
        );
    }
    Ok(item)
}

pub fn job_item(j: &SyncJob) -> Result<Item> {
    let id = j.id.to_string();
    let mut item = Item::new();
    item.insert(PK.into(), s(job_pk(&id)));
    item.insert(SK.into(), s("JOB"));
    item.insert(WORKSPACE.into(), s(j.workspace.as_str()));
    item.insert("provider".into(), s(j.provider.as_str()));
    item.insert(VERSION.into(), n(j.version));
    item.insert(BODY.into(), s(to_json(j)?));
    item.insert(GSI1PK.into(), s(format!("INTJOBS#{}", j.integration)));
    item.insert(GSI1SK.into(), s(id.clone()));
    item.insert(GSI2PK.into(), s(format!("JOBSTATUS#{}", j.status())));
    item.insert(
        GSI2SK.into(),
        s(format!("{}#{}", sortable_timestamp(j.updated_at), id)),
    );
    Ok(item)
}

pub fn kpi_pk(ws: &str, metric: &str) -> String {
    format!("KPI#{ws}#{metric}")
}

pub fn kpi_item(p: &KpiPoint) -> Result<Item> {
    let mut item = Item::new();
    item.insert(
        PK.into(),
        s(kpi_pk(p.workspace.as_str(), p.metric.as_str())),
    );
    item.insert(SK.into(), s(format!("{}#{}", p.date, p.integration)));
    item.insert(BODY.into(), s(to_json(p)?));
    Ok(item)
}

/// Turns DynamoDB's `LastEvaluatedKey` into an opaque cursor.
pub fn cursor_from_key(key: Option<&Item>) -> Option<Cursor> {
    let key = key?;
    let flat: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    serde_json::to_string(&flat)
        .ok()
        .map(|j| Cursor::encode(&j))
}

/// Parses a cursor back into an `ExclusiveStartKey`, refusing one whose partition
/// attributes differ from the query's (`expected`): a cursor edited to point into
/// another tenant's partition is rejected, not followed.
pub fn key_from_cursor(cursor: Option<&Cursor>, expected: &[(&str, &str)]) -> Result<Option<Item>> {
    let Some(cursor) = cursor else {
        return Ok(None);
    };
    let invalid = || Error::validation("cursor", "invalid cursor");
    let flat: HashMap<String, String> =
        serde_json::from_str(&cursor.decode()?).map_err(|_| invalid())?;
    for (name, value) in expected {
        if flat.get(*name).map(String::as_str) != Some(*value) {
            return Err(invalid());
        }
    }
    let allowed = [PK, SK, GSI1PK, GSI1SK, GSI2PK, GSI2SK];
    if flat.keys().any(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid());
    }
    Ok(Some(flat.into_iter().map(|(k, v)| (k, s(v))).collect()))
}
