//! Meta Ads Insights (`GET /act_{id}/insights`): deterministic daily numbers
//! per ad account with Meta's habits — no row for a day without delivery,
//! `cpc` and `actions` omitted when there is nothing to report, the same
//! purchases under several action types, cursor paging with the access token
//! in `next`, 25 rows a page by default.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{Datelike, NaiveDate};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::meta::{MetaState, authorize_call, graph_error};
use crate::state::Counters;

/// Ad account id → (currency, its minor-unit digits, daily spend in minor
/// units at the start of 2026). Yen have no minor unit.
pub const ACCOUNTS: &[(&str, &str, u32, i64)] = &[
    ("1000000001", "EUR", 2, 12_345),
    ("1000000002", "USD", 2, 4_560),
    ("1000000004", "JPY", 0, 15_300),
];

/// One day of an account as the sandbox serves it (strings, as Meta sends them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Day {
    pub spend: String,
    pub impressions: u64,
    pub clicks: u64,
    pub reach: u64,
    /// The purchases (one number, whatever types carry it).
    pub purchases: u64,
    pub purchase_value: String,
    /// The action types the purchases are reported under that day.
    pub purchase_types: Vec<&'static str>,
}

/// Days without delivery (paused campaigns).
pub fn is_dark_day(date: NaiveDate) -> bool {
    date.ordinal().is_multiple_of(11)
}

/// An amount in minor units written as Meta writes it in that currency.
fn money(minor: i64, digits: u32) -> String {
    if digits == 0 {
        return minor.to_string();
    }
    let unit = 10_i64.pow(digits);
    format!(
        "{}.{:0width$}",
        minor / unit,
        minor % unit,
        width = digits as usize
    )
}

/// The sandbox's numbers for `account` (`1000000001` or `act_1000000001`) on
/// `date`; `None` for a day without delivery or an unknown account.
pub fn day(account: &str, date: NaiveDate) -> Option<Day> {
    let id = account.strip_prefix("act_").unwrap_or(account);
    let &(_, _, digits, base) = ACCOUNTS.iter().find(|a| a.0 == id)?;
    if is_dark_day(date) {
        return None;
    }
    let n = i64::from(date.ordinal());
    let weekday = i64::from(date.weekday().num_days_from_monday());
    let spend = base + (n * 37 + weekday * 113) % 2_000;
    let impressions = (spend * 7 / 10) as u64 + 50;
    // Some days get no clicks at all: `cpc` and `actions` are then left out.
    let clicks = if n % 13 == 0 {
        0
    } else {
        impressions / 40 + (n % 7) as u64
    };
    let reach = impressions * 4 / 5;
    let purchases = if clicks == 0 {
        0
    } else {
        clicks / 25 + (n % 3) as u64
    };
    let purchase_value = money(purchases as i64 * (2_999 + (n % 5) * 1_000), digits);
    let purchase_types = match (purchases, n % 3) {
        (0, _) => vec![],
        (_, 0) => vec![
            "omni_purchase",
            "purchase",
            "offsite_conversion.fb_pixel_purchase",
        ],
        (_, 1) => vec!["purchase", "offsite_conversion.fb_pixel_purchase"],
        _ => vec!["offsite_conversion.fb_pixel_purchase"],
    };
    Some(Day {
        spend: money(spend, digits),
        impressions,
        clicks,
        reach,
        purchases,
        purchase_value,
        purchase_types,
    })
}

fn row(account: &str, currency: &str, date: NaiveDate, d: &Day) -> Value {
    let spend: f64 = d.spend.parse().unwrap_or(0.0);
    let mut row = json!({
        "account_id": account,
        "spend": d.spend,
        "impressions": d.impressions.to_string(),
        "clicks": d.clicks.to_string(),
        "reach": d.reach.to_string(),
        "cpm": format!("{:.6}", spend * 1000.0 / d.impressions as f64),
        "ctr": format!("{:.6}", d.clicks as f64 * 100.0 / d.impressions as f64),
        "account_currency": currency,
        "date_start": date.to_string(),
        "date_stop": date.to_string(),
    });
    if d.clicks > 0 {
        row["cpc"] = json!(format!("{:.6}", spend / d.clicks as f64));
        let mut actions = vec![json!({"action_type": "link_click", "value": d.clicks.to_string()})];
        let mut values = Vec::new();
        for t in &d.purchase_types {
            actions.push(json!({"action_type": t, "value": d.purchases.to_string(), "7d_click": d.purchases.to_string(), "1d_view": "0"}));
            values.push(json!({"action_type": t, "value": d.purchase_value}));
        }
        row["actions"] = json!(actions);
        if !values.is_empty() {
            row["action_values"] = json!(values);
        }
    }
    row
}

#[derive(Debug, Clone, Copy, Deserialize)]
pub struct TimeRange {
    pub since: NaiveDate,
    pub until: NaiveDate,
}

/// The `X-Business-Use-Case-Usage` header the faults ask for, and the
/// throttle error when they ask for one.
fn usage(sandbox: &Sandbox, account: &str) -> (String, Option<Response>) {
    let faults = sandbox.faults();
    let regain = faults.meta_throttle_minutes.unwrap_or(0);
    let pct = if regain > 0 {
        100
    } else {
        faults.meta_usage.unwrap_or(12)
    };
    let header = json!({ account: [{"type": "ads_insights", "call_count": pct,
        "total_cputime": 10, "total_time": 10, "estimated_time_to_regain_access": regain}] })
    .to_string();
    let throttled = (regain > 0).then(|| {
        graph_error(
            StatusCode::BAD_REQUEST,
            80000,
            Some(2446079),
            "(#80000) There have been too many calls from this ad-account. Wait a bit and try again.",
        )
    });
    (header, throttled)
}

fn with_usage(header: &str, mut response: Response) -> Response {
    if let Ok(v) = axum::http::HeaderValue::from_str(header) {
        response
            .headers_mut()
            .insert("x-business-use-case-usage", v);
    }
    response
}

fn unknown_object() -> Response {
    graph_error(
        StatusCode::BAD_REQUEST,
        100,
        Some(33),
        "Unsupported get request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
    )
}

/// The account and days an insights request (or report run) asks for.
fn requested(
    object: &str,
    q: &HashMap<String, String>,
) -> Result<(String, TimeRange), Box<Response>> {
    let id = object.strip_prefix("act_").unwrap_or("");
    if !ACCOUNTS.iter().any(|a| a.0 == id) {
        return Err(Box::new(unknown_object()));
    }
    let Some(range) = q
        .get("time_range")
        .and_then(|r| serde_json::from_str::<TimeRange>(r).ok())
        .filter(|r| r.since <= r.until)
    else {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) time_range is invalid",
        )));
    };
    if q.get("time_increment").map(String::as_str) != Some("1") {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            100,
            None,
            "(#100) the sandbox serves daily rows only (time_increment=1)",
        )));
    }
    Ok((id.to_owned(), range))
}

/// `GET /act_{id}/insights` (a plain read) or `GET /{report_run_id}/insights`
/// (the result of a completed run): daily rows, 25 a page unless `limit` says.
pub async fn insights(
    State(sandbox): State<Sandbox>,
    Path((version, object)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    let run = sandbox.with(|s: &mut MetaState| s.runs.get(&object).cloned());
    let (id, range) = match run {
        Some(run) if run.percent < 100 || run.failed => {
            return graph_error(
                StatusCode::BAD_REQUEST,
                100,
                None,
                "(#100) The report run has not completed",
            );
        }
        Some(run) => (run.account, run.range),
        None => match requested(&object, &q) {
            Ok(found) => found,
            Err(response) => return *response,
        },
    };
    let (usage_header, throttled) = usage(&sandbox, &id);
    if let Some(response) = throttled {
        return with_usage(&usage_header, response);
    }
    let days = (range.until - range.since).num_days() + 1;
    let plain_read = !sandbox.with(|s: &mut MetaState| s.runs.contains_key(&object));
    if plain_read
        && sandbox
            .faults()
            .meta_timeout_above_days
            .is_some_and(|max| days > i64::from(max))
    {
        return with_usage(
            &usage_header,
            graph_error(
                StatusCode::BAD_REQUEST,
                100,
                Some(1504018),
                "Your request timed out. Try a smaller date range, fetch less data, or use async jobs.",
            ),
        );
    }
    let Some(&(_, currency, _, _)) = ACCOUNTS.iter().find(|a| a.0 == id) else {
        return unknown_object();
    };
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, 500);
    let start: usize = q
        .get("after")
        .and_then(|a| a.strip_prefix("row-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let rows: Vec<Value> = range
        .since
        .iter_days()
        .take_while(|d| *d <= range.until)
        .filter_map(|date| day(&id, date).map(|d| row(&id, currency, date, &d)))
        .collect();
    let page: Vec<Value> = rows.iter().skip(start).take(limit).cloned().collect();
    let end = start + page.len();
    let mut paging =
        json!({"cursors": {"before": format!("row-{start}"), "after": format!("row-{end}")}});
    if end < rows.len() {
        let token = q
            .get("access_token")
            .cloned()
            .unwrap_or_else(|| "TOKEN".into());
        paging["next"] = json!(format!(
            "https://graph.facebook.com/{version}/{object}/insights?access_token={token}&limit={limit}&after=row-{end}"
        ));
    }
    with_usage(
        &usage_header,
        (
            StatusCode::OK,
            axum::Json(json!({"data": page, "paging": paging})),
        )
            .into_response(),
    )
}

/// An async report run: its request, and how far it has got.
#[derive(Debug, Clone)]
pub struct ReportRun {
    pub account: String,
    pub range: TimeRange,
    pub percent: u32,
    pub failed: bool,
}

/// `POST /act_{id}/insights`: starts an async report run.
pub async fn create_report_run(
    State(sandbox): State<Sandbox>,
    Path((_version, object)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    let (id, range) = match requested(&object, &q) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let (usage_header, throttled) = usage(&sandbox, &id);
    if let Some(response) = throttled {
        return with_usage(&usage_header, response);
    }
    let days = (range.until - range.since).num_days() + 1;
    let failed = sandbox
        .faults()
        .meta_report_fail_above_days
        .is_some_and(|max| days > i64::from(max));
    let run_number = sandbox.with(|c: &mut Counters| {
        c.meta_report_runs += 1;
        c.meta_report_runs
    });
    let run_id = sandbox.with(|s: &mut MetaState| {
        let run_id = format!("60239{run_number:08}");
        s.runs.insert(
            run_id.clone(),
            ReportRun {
                account: id,
                range,
                percent: 0,
                failed,
            },
        );
        run_id
    });
    with_usage(
        &usage_header,
        (
            StatusCode::OK,
            axum::Json(json!({ "report_run_id": run_id })),
        )
            .into_response(),
    )
}

/// `GET /{report_run_id}`: each poll moves a run on by half.
pub async fn report_run_status(
    State(sandbox): State<Sandbox>,
    Path((_version, object)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    let stalled = sandbox.faults().meta_report_stall == Some(true);
    let Some(run) = sandbox.with(|s: &mut MetaState| {
        let run = s.runs.get_mut(&object)?;
        if !run.failed && !stalled {
            run.percent = (run.percent + 50).min(100);
        }
        Some(run.clone())
    }) else {
        return unknown_object();
    };
    let status = match (run.failed, run.percent) {
        (true, _) => "Job Failed",
        (false, 100) => "Job Completed",
        (false, 0) => "Job Not Started",
        _ => "Job Running",
    };
    let mut body = json!({
        "id": object,
        "account_id": run.account,
        "async_status": status,
        "async_percent_completion": run.percent,
        "date_start": run.range.since.to_string(),
        "date_stop": run.range.until.to_string(),
    });
    if run.failed {
        body["error_code"] = json!(-2);
        body["error_subcode"] = json!(2490547);
        body["error_message"] = json!("Report Failed");
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}
