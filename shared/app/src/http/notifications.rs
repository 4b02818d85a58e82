//! `GET/PUT /v1/workspaces/{ws}/notifications`: who gets the workspace's
//! failure notices, recovery notices and reconnect reminders. Removing one's
//! own address is how a user opts out.

use axum::Json;
use axum::extract::{Path, State};
use kpi_notify::NotificationSettings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Email addresses (at most 50), lower-cased, each once.
    pub recipients: Vec<String>,
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/notifications", operation_id = "getNotifications", tag = "notifications",
    params(("ws" = String, Path)),
    responses((status = 200, body = Notifications), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<Json<Notifications>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = NotificationSettings::load(&*state.store, &scope).await?;
    Ok(Json(Notifications {
        recipients: settings.recipients,
    }))
}

#[utoipa::path(put, path = "/v1/workspaces/{ws}/notifications", operation_id = "putNotifications", tag = "notifications",
    params(("ws" = String, Path)),
    request_body = Notifications,
    responses((status = 200, body = Notifications), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse), (status = 415, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn put(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<Notifications>,
) -> Result<Json<Notifications>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = NotificationSettings {
        recipients: body.recipients,
    }
    .checked()?;
    settings.save(&*state.store, &scope).await?;
    Ok(Json(Notifications {
        recipients: settings.recipients,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    pub address: String,
    /// `bounced (…)` or `complained (marked as spam)`.
    pub reason: String,
    pub at: chrono::DateTime<chrono::Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suppressions {
    /// Addresses no email goes to, by address.
    pub items: Vec<SuppressionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Lifted {
    pub address: String,
    /// Set when the address had complained: mailing it again may hurt the
    /// sender's reputation.
    pub warning: Option<String>,
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/suppressions", operation_id = "listSuppressions", tag = "notifications",
    params(("ws" = String, Path)),
    responses((status = 200, body = Suppressions), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn suppressions(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<Json<Suppressions>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let items = state
        .store
        .list_suppressions(&scope)
        .await?
        .into_iter()
        .map(|s| SuppressionView {
            address: s.address,
            reason: s.reason,
            at: s.at,
        })
        .collect();
    Ok(Json(Suppressions { items }))
}

#[utoipa::path(delete, path = "/v1/workspaces/{ws}/suppressions/{email}", operation_id = "liftSuppression", tag = "notifications",
    params(("ws" = String, Path), ("email" = String, Path)),
    responses((status = 200, body = Lifted), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn lift(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, email)): Path<(String, String)>,
) -> Result<Json<Lifted>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let address = kpi_core::ports::store::normalize_address(&email);
    let reason = state
        .store
        .list_suppressions(&scope)
        .await?
        .into_iter()
        .find(|s| s.address == address)
        .map(|s| s.reason);
    if reason.is_none() || !state.store.unsuppress(&scope, &address).await? {
        return Err(kpi_core::Error::not_found("that address is not suppressed").into());
    }
    let warning = reason.filter(|r| r.starts_with("complained")).map(|_| {
        "this address marked an earlier email as spam; sending to it again can hurt the sender's reputation".to_owned()
    });
    Ok(Json(Lifted { address, warning }))
}
