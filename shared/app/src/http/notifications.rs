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
