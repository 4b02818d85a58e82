//! `GET/PUT /v1/workspaces/{ws}/reports`: the workspace's scheduled KPI report.

use axum::Json;
use axum::extract::{Path, State};
use chrono::{DateTime, Utc};
use kpi_notify::reports::ReportSettings;
use serde::Serialize;
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use crate::state::AppState;

/// The report settings as stored, and when the next report goes out.
#[derive(Debug, Serialize, ToSchema)]
pub struct Reports {
    pub enabled: bool,
    /// `daily`, `weekly` or `monthly` (monthly: on the 1st).
    #[schema(value_type = String)]
    pub frequency: kpi_notify::schedule::Frequency,
    /// Weekly: `Mon` … `Sun`.
    #[schema(value_type = Option<String>)]
    pub weekday: Option<chrono::Weekday>,
    /// Local hour, 0–23.
    pub hour: u32,
    /// IANA time zone.
    pub time_zone: String,
    pub recipients: Vec<String>,
    /// Empty: the headline KPIs of the connected providers.
    #[schema(value_type = Vec<String>)]
    pub metrics: Vec<kpi_core::Metric>,
    pub next_run_at: Option<DateTime<Utc>>,
}

/// The body of `PUT`: `enabled`, `frequency` and `recipients` are required.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ReportSettingsBody {
    enabled: bool,
    #[schema(value_type = String)]
    frequency: String,
    #[schema(value_type = Option<String>)]
    weekday: Option<String>,
    hour: Option<u32>,
    time_zone: Option<String>,
    recipients: Vec<String>,
    metrics: Option<Vec<String>>,
}

fn view(s: ReportSettings, next_run_at: Option<DateTime<Utc>>) -> Reports {
    Reports {
        enabled: s.enabled,
        frequency: s.frequency,
        weekday: s.weekday,
        hour: s.hour.unwrap_or(8),
        time_zone: s.time_zone.unwrap_or_else(|| "UTC".into()),
        recipients: s.recipients,
        metrics: s.metrics,
        next_run_at,
    }
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/reports", operation_id = "getReports", tag = "reports",
    params(("ws" = String, Path)),
    responses((status = 200, body = Reports), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<Json<Reports>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = ReportSettings::load(&*state.store, &scope)
        .await?
        .unwrap_or_else(ReportSettings::off);
    let next = settings.next_run(state.clock.now())?;
    Ok(Json(view(settings, next)))
}

#[utoipa::path(put, path = "/v1/workspaces/{ws}/reports", operation_id = "putReports", tag = "reports",
    params(("ws" = String, Path)), request_body = ReportSettingsBody,
    responses((status = 200, body = Reports), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse), (status = 415, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn put(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<ReportSettings>,
) -> Result<Json<Reports>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = body.checked(&state.registry)?;
    let next = settings
        .save(&*state.store, &scope, state.clock.now())
        .await?;
    Ok(Json(view(settings, next)))
}

/// Previews a caller may ask for per workspace and hour.
pub const PREVIEWS_PER_HOUR: u32 = 10;

/// What a preview or test sent.
#[derive(Debug, Serialize, ToSchema)]
pub struct PreviewSent {
    /// The caller's address, from their sign-in.
    pub sent_to: String,
    pub subject: String,
}

/// The caller's own address, from the token's `email` claim.
pub fn caller_email(p: &kpi_core::Principal) -> Result<String, ApiError> {
    p.email.clone().ok_or_else(|| {
        kpi_core::Error::validation(
            "email",
            "your sign-in carries no email address to send the preview to",
        )
        .into()
    })
}

/// The delivery's outcome as an answer: 202, or 409 saying why nothing went out.
pub fn sent(
    delivery: kpi_notify::Delivery,
    to: String,
    subject: String,
) -> Result<(axum::http::StatusCode, Json<PreviewSent>), ApiError> {
    match delivery {
        kpi_notify::Delivery::Sent(_) => Ok((
            axum::http::StatusCode::ACCEPTED,
            Json(PreviewSent {
                sent_to: to,
                subject,
            }),
        )),
        kpi_notify::Delivery::NotSent(why) => Err(kpi_core::Error::conflict(why).into()),
    }
}

#[utoipa::path(post, path = "/v1/workspaces/{ws}/reports/preview", operation_id = "previewReport", tag = "reports",
    params(("ws" = String, Path)),
    responses((status = 202, body = PreviewSent), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse), (status = 422, response = ProblemResponse), (status = 429, response = ProblemResponse)))]
pub async fn preview(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<(axum::http::StatusCode, Json<PreviewSent>), ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let to = caller_email(&p)?;
    let settings = ReportSettings::load(&*state.store, &scope)
        .await?
        .ok_or_else(|| kpi_core::Error::conflict("set up the report first (PUT …/reports)"))?;
    crate::service::take_hourly_slot(
        &state,
        &format!(
            "preview:{}:{}",
            scope.workspace(),
            kpi_providers::oauth::sha256_b64(&p.sub)
        ),
        PREVIEWS_PER_HOUR,
        "previews",
    )
    .await?;
    let (delivery, subject) = crate::mail::report_sender(&state)
        .preview(&scope, &settings, &to, state.clock.now())
        .await?;
    sent(delivery, to, subject)
}
