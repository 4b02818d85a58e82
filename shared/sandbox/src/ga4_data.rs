//! GA4 Data API `batchRunReports`: deterministic daily numbers per property
//! (weekly seasonality, a trend, zero days), paging, the quota block, and
//! switchable faults.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::ga4::google_error;
use crate::google::{ANALYTICS_READONLY, GoogleState, bearer_scopes};
use crate::state::Counters;

/// Property id → (time zone, currency, daily sessions at the start of 2026).
pub const PROPERTIES: &[(&str, &str, &str, u32)] = &[
    ("100001", "Europe/Berlin", "EUR", 1200),
    ("100002", "America/New_York", "USD", 400),
    ("200001", "Asia/Tokyo", "JPY", 90),
];

/// The metrics the sandbox serves.
pub const METRICS: &[&str] = &[
    "sessions",
    "totalUsers",
    "newUsers",
    "activeUsers",
    "screenPageViews",
    "engagementRate",
    "bounceRate",
    "averageSessionDuration",
    "keyEvents",
    "totalRevenue",
];

/// Core tokens a property has per hour in the sandbox.
pub const TOKENS_PER_HOUR: i64 = 40_000;
pub const TOKENS_PER_DAY: i64 = 200_000;
/// Tokens one report costs.
pub const TOKENS_PER_REPORT: i64 = 7;

/// Days without any traffic (the property was down, say).
pub fn is_zero_day(date: NaiveDate) -> bool {
    date.ordinal().is_multiple_of(17)
}

/// The sandbox's value of `metric` for `property` on `date`, as the Data API
/// string. Public so tests can compare what was synced with what was served.
pub fn value(property: &str, date: NaiveDate, metric: &str) -> Option<String> {
    let &(_, _, _, base) = PROPERTIES.iter().find(|p| p.0 == property)?;
    if is_zero_day(date) {
        return Some("0".into());
    }
    // Weekends are quieter; traffic grows slowly through the year.
    let weekly = match date.weekday().num_days_from_monday() {
        5 => 60,
        6 => 55,
        d => 100 + d * 4,
    };
    let day = i64::from(date.ordinal()) + 366 * i64::from(date.year() - 2026);
    let sessions = (i64::from(base) * i64::from(weekly) / 100) + day.max(0) / 3;
    let users = sessions * 80 / 100;
    Some(match metric {
        "sessions" => sessions.to_string(),
        "totalUsers" => users.to_string(),
        "newUsers" => (users * 35 / 100).to_string(),
        "activeUsers" => (users * 90 / 100).to_string(),
        "screenPageViews" => (sessions * 3 + day % 7).to_string(),
        // Fractions with many decimals, as GA4 sends them.
        "engagementRate" => format!(
            "0.{:017}",
            61_234_567_890_123_457u64 + day as u64 * 1_000_003
        ),
        "bounceRate" => {
            if day.rem_euclid(11) == 0 {
                // Tiny values arrive in exponent notation.
                "1.5E-4".into()
            } else {
                format!("0.{:017}", 38_765_432_109_876_543u64 - day as u64 * 999_983)
            }
        }
        "averageSessionDuration" => format!("{}.{:014}", 150 + day % 40, 76_313_766_428_572u64),
        "keyEvents" => (sessions / 25).to_string(),
        "totalRevenue" => format!("{}.{:02}", sessions * 3, day % 100),
        _ => return None,
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DateRangeReq {
    start_date: String,
    end_date: String,
}

#[derive(Deserialize)]
struct NamedReq {
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReportReq {
    #[serde(default)]
    date_ranges: Vec<DateRangeReq>,
    #[serde(default)]
    dimensions: Vec<NamedReq>,
    #[serde(default)]
    metrics: Vec<NamedReq>,
    #[serde(default)]
    keep_empty_rows: bool,
    #[serde(default)]
    return_property_quota: bool,
    #[serde(default)]
    limit: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

#[derive(Deserialize)]
struct BatchReq {
    requests: Vec<ReportReq>,
}

fn invalid(message: &str) -> Response {
    google_error(StatusCode::BAD_REQUEST, "INVALID_ARGUMENT", message)
}

fn metric_type(name: &str) -> &'static str {
    match name {
        "engagementRate" | "bounceRate" => "TYPE_FLOAT",
        "averageSessionDuration" => "TYPE_SECONDS",
        "totalRevenue" => "TYPE_CURRENCY",
        _ => "TYPE_INTEGER",
    }
}

pub async fn batch_run_reports(
    State(sandbox): State<Sandbox>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    sandbox.with(|c: &mut Counters| c.ga4_data_calls += 1);
    let Some(property) = target.strip_suffix(":batchRunReports") else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "Method not found.");
    };
    if let Some(fault) = sandbox.faults().ga4_data {
        // One-shot faults: answered once, then the API works again.
        if fault != "slow" {
            let mut f = sandbox.faults();
            f.ga4_data = None;
            sandbox.set_faults(f);
        }
        match fault.as_str() {
            "429_concurrent" => {
                return google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Exhausted concurrent requests quota.",
                );
            }
            "429_hourly" => {
                return google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Exhausted property tokens per hour.",
                );
            }
            "429_daily" => {
                return google_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "RESOURCE_EXHAUSTED",
                    "Exhausted property tokens per day. These quota tokens will return tomorrow.",
                );
            }
            "401" => {
                return google_error(
                    StatusCode::UNAUTHORIZED,
                    "UNAUTHENTICATED",
                    "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
                );
            }
            "403" => {
                return google_error(
                    StatusCode::FORBIDDEN,
                    "PERMISSION_DENIED",
                    "User does not have sufficient permissions for this property.",
                );
            }
            "500" => {
                return google_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "INTERNAL",
                    "Internal error encountered.",
                );
            }
            "slow" => tokio::time::sleep(std::time::Duration::from_secs(5)).await,
            _ => {}
        }
    }
    let Some(scopes) = bearer_scopes(&sandbox, &headers) else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    if !scopes.iter().any(|s| s == ANALYTICS_READONLY) {
        return (
            StatusCode::FORBIDDEN,
            axum::Json(json!({"error": {"code": 403, "message": "Request had insufficient authentication scopes.", "status": "PERMISSION_DENIED",
                "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT", "domain": "googleapis.com"}]}})),
        )
            .into_response();
    }
    let Some(&(_, time_zone, currency, _)) = PROPERTIES.iter().find(|p| p.0 == property) else {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "User does not have sufficient permissions for this property.",
        );
    };
    let Ok(batch) = serde_json::from_slice::<BatchReq>(&body) else {
        return invalid("Invalid JSON payload received.");
    };
    if batch.requests.is_empty() || batch.requests.len() > 5 {
        return invalid("Batch requests must contain between 1 and 5 requests.");
    }
    let mut reports = Vec::new();
    for req in &batch.requests {
        if req.metrics.is_empty() || req.metrics.len() > 10 {
            return invalid("Requests can have up to 10 metrics.");
        }
        if req.dimensions.len() > 9 || req.date_ranges.is_empty() || req.date_ranges.len() > 4 {
            return invalid("Requests can have up to 9 dimensions and 1 to 4 date ranges.");
        }
        if req.dimensions.iter().any(|d| d.name != "date") {
            return invalid("The sandbox knows the date dimension only.");
        }
        if let Some(bad) = req
            .metrics
            .iter()
            .find(|m| !METRICS.contains(&m.name.as_str()))
        {
            return invalid(&if bad.name == "conversions" {
                "Field conversions is not a valid metric. Did you mean keyEvents?".to_owned()
            } else {
                format!("Field {} is not a valid metric.", bad.name)
            });
        }
        let range = &req.date_ranges[0];
        let (Ok(from), Ok(to)) = (
            NaiveDate::parse_from_str(&range.start_date, "%Y-%m-%d"),
            NaiveDate::parse_from_str(&range.end_date, "%Y-%m-%d"),
        ) else {
            return invalid("Invalid date range.");
        };
        if from > to {
            return invalid("The start date must not be after the end date.");
        }
        let mut all_rows: Vec<Value> = Vec::new();
        let mut day = from;
        while day <= to {
            let values: Vec<String> = req
                .metrics
                .iter()
                .map(|m| value(property, day, &m.name).unwrap_or_else(|| "0".into()))
                .collect();
            let empty = values.iter().all(|v| v == "0");
            if req.keep_empty_rows || !empty {
                all_rows.push(json!({
                    "dimensionValues": [{"value": day.format("%Y%m%d").to_string()}],
                    "metricValues": values.iter().map(|v| json!({"value": v})).collect::<Vec<_>>(),
                }));
            }
            day = day.succ_opt().unwrap_or(day);
            if day == NaiveDate::MAX {
                break;
            }
        }
        let limit = req.limit.unwrap_or(10_000).clamp(1, 250_000) as usize;
        let offset = req.offset.unwrap_or(0).max(0) as usize;
        let page: Vec<Value> = all_rows.iter().skip(offset).take(limit).cloned().collect();
        let mut report = json!({
            "dimensionHeaders": [{"name": "date"}],
            "metricHeaders": req.metrics.iter().map(|m| json!({"name": m.name, "type": metric_type(&m.name)})).collect::<Vec<_>>(),
            "metadata": {"currencyCode": currency, "timeZone": time_zone},
            "kind": "analyticsData#runReport",
        });
        // proto3 JSON leaves out empty and zero fields.
        if !page.is_empty() {
            report["rows"] = json!(page);
        }
        if !all_rows.is_empty() {
            report["rowCount"] = json!(all_rows.len());
        }
        let consumed = sandbox.with(|s: &mut GoogleState| {
            let used = s.ga4_tokens.entry(property.to_owned()).or_insert(0);
            *used += TOKENS_PER_REPORT;
            *used
        });
        if req.return_property_quota {
            report["propertyQuota"] = json!({
                "tokensPerDay": {"consumed": consumed, "remaining": (TOKENS_PER_DAY - consumed).max(0)},
                "tokensPerHour": {"consumed": consumed, "remaining": (TOKENS_PER_HOUR - consumed).max(0)},
                "concurrentRequests": {"consumed": 0, "remaining": 10},
                "serverErrorsPerProjectPerHour": {"consumed": 0, "remaining": 10},
                "potentiallyThresholdedRequestsPerHour": {"consumed": 0, "remaining": 120},
                "tokensPerProjectPerHour": {"consumed": consumed, "remaining": (TOKENS_PER_HOUR * 35 / 100 - consumed).max(0)},
            });
        }
        reports.push(report);
    }
    (
        StatusCode::OK,
        axum::Json(json!({"reports": reports, "kind": "analyticsData#batchRunReports"})),
    )
        .into_response()
}

/// Tokens used per property so far (tests of quota handling).
pub fn tokens_used(sandbox: &Sandbox) -> HashMap<String, i64> {
    sandbox.with(|s: &mut GoogleState| s.ga4_tokens.clone())
}

/// Pretends `tokens` of `property`'s quota were already used (quota tests).
pub fn use_tokens(sandbox: &Sandbox, property: &str, tokens: i64) {
    sandbox.with(|s: &mut GoogleState| {
        *s.ga4_tokens.entry(property.to_owned()).or_insert(0) += tokens
    });
}
