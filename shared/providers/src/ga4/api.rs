//! Google Analytics 4 Admin API: the property picker.

use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{Reply, read, send_error};

const NAME: &str = "Google Analytics";

/// One property a user can pick, with its account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyOption {
    /// `properties/123456789`
    pub property: String,
    pub display_name: String,
    pub account: String,
    pub account_name: String,
    pub property_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountSummaries {
    #[serde(default)]
    account_summaries: Vec<AccountSummary>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountSummary {
    #[serde(default)]
    account: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    property_summaries: Vec<PropertySummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertySummary {
    property: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    property_type: Option<String>,
}

/// Google API error body: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// Maps a Google API error reply into the taxonomy.
pub fn api_error(reply: &Reply) -> Error {
    let parsed: Option<GoogleErrorBody> = serde_json::from_slice(&reply.body).ok();
    let (status, message) = parsed
        .map(|b| (b.error.status, b.error.message))
        .unwrap_or_default();
    let message: String = message.chars().take(300).collect();
    match reply.status {
        401 => Error::reauth("Google no longer accepts this connection; reconnect the integration"),
        403 => Error::config(format!("Google Analytics refused access: {message}")),
        404 => Error::config(format!("Google Analytics could not find it: {message}")),
        429 => Error::rate_limited(
            reply.retry_after,
            format!("Google Analytics quota: {message}"),
        ),
        s if s >= 500 => Error::transient(format!("Google Analytics failed ({status}); try again")),
        _ => Error::config(format!(
            "Google Analytics rejected the request ({status}): {message}"
        )),
    }
}

pub struct AdminApi {
    pub http: reqwest::Client,
    /// `https://analyticsadmin.googleapis.com/v1beta`
    pub base: Url,
}

impl AdminApi {
    /// Every property the token can read, across all pages of `accountSummaries`.
    pub async fn properties(
        &self,
        access_token: &SecretString,
    ) -> Result<(Vec<PropertyOption>, u32)> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        let mut calls = 0u32;
        loop {
            let mut url = self.base.clone();
            url.path_segments_mut()
                .map_err(|_| Error::config("GA4_ADMIN_API_URL cannot be a base URL"))?
                .pop_if_empty()
                .push("accountSummaries");
            url.query_pairs_mut().append_pair("pageSize", "200");
            if let Some(t) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", t);
            }
            calls += 1;
            let resp = self
                .http
                .get(url)
                .bearer_auth(access_token.expose_secret())
                .send()
                .await
                .map_err(|e| send_error(NAME, e))?;
            let reply = read(NAME, resp).await?;
            if !reply.is_success() {
                return Err(api_error(&reply));
            }
            let page: AccountSummaries = reply.json(NAME)?;
            for account in page.account_summaries {
                for p in account.property_summaries {
                    out.push(PropertyOption {
                        property: p.property,
                        display_name: p.display_name,
                        account: account.account.clone(),
                        account_name: account.display_name.clone(),
                        property_type: p.property_type,
                    });
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) if calls < 100 => page_token = Some(t),
                _ => return Ok((out, calls)),
            }
        }
    }
}

/// Data API: `batchRunReports` (at most 5 reports, at most 10 metrics each).
pub struct DataApi {
    pub http: reqwest::Client,
    /// `https://analyticsdata.googleapis.com/v1beta`
    pub base: Url,
}

pub const MAX_REPORTS_PER_BATCH: usize = 5;
pub const MAX_METRICS_PER_REPORT: usize = 10;
/// Rows per page asked for; a 90-day daily report fits in one page.
pub const PAGE_LIMIT: i64 = 10_000;

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ReportRequest {
    pub date_ranges: Vec<DateRangeJson>,
    pub dimensions: Vec<Named>,
    pub metrics: Vec<Named>,
    pub keep_empty_rows: bool,
    pub return_property_quota: bool,
    pub limit: i64,
    pub offset: i64,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DateRangeJson {
    pub start_date: String,
    pub end_date: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Named {
    pub name: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricHeader {
    pub name: String,
    #[serde(default, rename = "type")]
    pub metric_type: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Value {
    #[serde(default)]
    pub value: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    #[serde(default)]
    pub dimension_values: Vec<Value>,
    #[serde(default)]
    pub metric_values: Vec<Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Metadata {
    #[serde(default)]
    pub currency_code: Option<String>,
    #[serde(default)]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
pub struct QuotaStatus {
    #[serde(default)]
    pub consumed: i64,
    #[serde(default)]
    pub remaining: i64,
}

#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct PropertyQuota {
    #[serde(default)]
    pub tokens_per_day: Option<QuotaStatus>,
    #[serde(default)]
    pub tokens_per_hour: Option<QuotaStatus>,
    #[serde(default)]
    pub concurrent_requests: Option<QuotaStatus>,
    #[serde(default)]
    pub server_errors_per_project_per_hour: Option<QuotaStatus>,
    #[serde(default)]
    pub potentially_thresholded_requests_per_hour: Option<QuotaStatus>,
    #[serde(default)]
    pub tokens_per_project_per_hour: Option<QuotaStatus>,
}

impl PropertyQuota {
    /// The smallest share left of any quota, in `[0, 1]`.
    pub fn min_share_left(&self) -> Option<rust_decimal::Decimal> {
        [
            self.tokens_per_day,
            self.tokens_per_hour,
            self.concurrent_requests,
            self.server_errors_per_project_per_hour,
            self.potentially_thresholded_requests_per_hour,
            self.tokens_per_project_per_hour,
        ]
        .into_iter()
        .flatten()
        .filter(|q| q.consumed + q.remaining > 0)
        .map(|q| {
            rust_decimal::Decimal::from(q.remaining.max(0))
                / rust_decimal::Decimal::from(q.consumed.max(0) + q.remaining.max(0))
        })
        .min()
    }
}

/// One report of a `batchRunReports` answer. proto3 JSON leaves out empty
/// fields: no `rows` for an empty report, no `rowCount` when it is zero.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Report {
    #[serde(default)]
    pub metric_headers: Vec<MetricHeader>,
    #[serde(default)]
    pub rows: Vec<Row>,
    #[serde(default)]
    pub row_count: i64,
    #[serde(default)]
    pub metadata: Metadata,
    #[serde(default)]
    pub property_quota: Option<PropertyQuota>,
}

#[derive(Deserialize)]
struct BatchResponse {
    #[serde(default)]
    reports: Vec<Report>,
}

/// How long to wait after a 429, by which quota ran out: the concurrent-request
/// quota frees within seconds, hourly ones at the top of the hour, daily ones
/// at midnight Pacific time (when Google resets them).
pub fn quota_wait(message: &str, now: chrono::DateTime<chrono::Utc>) -> std::time::Duration {
    use chrono::Timelike as _;
    let m = message.to_ascii_lowercase();
    let secs = if m.contains("concurrent") {
        30
    } else if m.contains("per day") || m.contains("tomorrow") {
        // Pacific midnight: UTC-8 (standard time; at most an hour early in summer).
        let pacific = now - chrono::Duration::hours(8);
        let into_day = i64::from(pacific.num_seconds_from_midnight());
        (86_400 - into_day).max(60)
    } else if m.contains("hour") || m.contains("thresholded") {
        let into_hour = i64::from(now.minute() * 60 + now.second());
        (3_600 - into_hour).max(60)
    } else {
        60
    };
    std::time::Duration::from_secs(secs as u64)
}

/// Data API errors: like the Admin API's, plus the quota kinds of 429.
pub fn data_error(reply: &Reply, now: chrono::DateTime<chrono::Utc>) -> Error {
    if reply.status == 429 {
        let parsed: Option<GoogleErrorBody> = serde_json::from_slice(&reply.body).ok();
        let message = parsed.map(|b| b.error.message).unwrap_or_default();
        let wait = reply
            .retry_after
            .unwrap_or_else(|| quota_wait(&message, now));
        return Error::rate_limited(
            Some(wait),
            format!(
                "Google Analytics quota exhausted: {}",
                message.chars().take(200).collect::<String>()
            ),
        );
    }
    if reply.status == 403
        && String::from_utf8_lossy(&reply.body).contains("ACCESS_TOKEN_SCOPE_INSUFFICIENT")
    {
        return Error::reauth(
            "the connection lacks read access to Google Analytics; reconnect and allow it",
        );
    }
    api_error(reply)
}

impl DataApi {
    /// One `batchRunReports` call for `property` (`properties/123`).
    pub async fn batch_run_reports(
        &self,
        access_token: &SecretString,
        property: &str,
        requests: &[ReportRequest],
    ) -> Result<Vec<Report>> {
        if requests.is_empty() || requests.len() > MAX_REPORTS_PER_BATCH {
            return Err(Error::internal("batchRunReports takes 1 to 5 reports"));
        }
        let id = property
            .strip_prefix("properties/")
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| Error::config("the GA4 property setting is not properties/<number>"))?;
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::config("GA4_DATA_API_URL cannot be a base URL"))?
            .pop_if_empty()
            .push("properties")
            .push(&format!("{id}:batchRunReports"));
        let resp = self
            .http
            .post(url)
            .bearer_auth(access_token.expose_secret())
            .json(&serde_json::json!({ "requests": requests }))
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if !reply.is_success() {
            return Err(data_error(&reply, chrono::Utc::now()));
        }
        let batch: BatchResponse = reply.json(NAME)?;
        if batch.reports.len() != requests.len() {
            return Err(Error::transient(
                "Google Analytics answered with the wrong number of reports",
            ));
        }
        Ok(batch.reports)
    }
}

/// A metric value as GA4 sends it (always a string; integers, decimals or
/// exponent notation such as `1.5E-4`), exactly.
pub fn parse_value(raw: &str) -> Result<rust_decimal::Decimal> {
    use std::str::FromStr as _;
    let raw = raw.trim();
    let parsed = if raw.contains(['e', 'E']) {
        rust_decimal::Decimal::from_scientific(raw)
    } else {
        rust_decimal::Decimal::from_str(raw)
    };
    parsed.map(|d| d.normalize()).map_err(|_| {
        Error::transient(format!(
            "Google Analytics sent a value we cannot read: {raw:.40}"
        ))
    })
}

/// A `date` dimension value (`YYYYMMDD`).
pub fn parse_date(raw: &str) -> Result<chrono::NaiveDate> {
    chrono::NaiveDate::parse_from_str(raw, "%Y%m%d").map_err(|_| {
        Error::transient(format!(
            "Google Analytics sent a date we cannot read: {raw:.20}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_in_every_notation_stay_exact() {
        assert_eq!(parse_value("344").unwrap().to_string(), "344");
        assert_eq!(
            parse_value("194.76313766428572").unwrap().to_string(),
            "194.76313766428572"
        );
        assert_eq!(
            parse_value("0.47857142857142859").unwrap().to_string(),
            "0.47857142857142859"
        );
        assert_eq!(parse_value("1.5E-4").unwrap().to_string(), "0.00015");
        assert_eq!(parse_value("2.5e3").unwrap().to_string(), "2500");
        assert_eq!(parse_value("0").unwrap().to_string(), "0");
        assert!(parse_value("NaN").is_err());
        assert_eq!(parse_date("20220731").unwrap().to_string(), "2022-07-31");
        assert!(parse_date("2022-07-31").is_err());
    }

    #[test]
    fn empty_reports_have_no_rows_key() {
        let r: Report = serde_json::from_str(
            r#"{"dimensionHeaders":[{"name":"date"}],"metricHeaders":[{"name":"sessions","type":"TYPE_INTEGER"}],"metadata":{"currencyCode":"EUR","timeZone":"Europe/Berlin"},"kind":"analyticsData#runReport"}"#,
        )
        .unwrap();
        assert!(r.rows.is_empty());
        assert_eq!(r.row_count, 0);
        assert_eq!(r.metadata.time_zone.as_deref(), Some("Europe/Berlin"));
    }

    #[test]
    fn quota_waits_follow_the_exhausted_quota() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-11-25T18:40:00Z")
            .unwrap()
            .to_utc();
        assert_eq!(
            quota_wait("Exhausted concurrent requests quota.", now).as_secs(),
            30
        );
        assert_eq!(
            quota_wait("Exhausted property tokens per hour.", now).as_secs(),
            20 * 60
        );
        let daily = quota_wait(
            "Exhausted property tokens per day. These quota tokens will return tomorrow.",
            now,
        );
        // 18:40 UTC is 10:40 at UTC-8: 13 h 20 min to Pacific midnight.
        assert_eq!(daily.as_secs(), 13 * 3600 + 20 * 60);
        let q = PropertyQuota {
            tokens_per_hour: Some(QuotaStatus {
                consumed: 36_500,
                remaining: 3_500,
            }),
            tokens_per_day: Some(QuotaStatus {
                consumed: 100,
                remaining: 199_900,
            }),
            ..Default::default()
        };
        assert_eq!(q.min_share_left().unwrap().to_string(), "0.0875");
    }
}
