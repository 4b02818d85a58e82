//! `/v1/workspaces/{ws}/alerts…`: KPI alert rules and their history. Rules
//! are evaluated after each sync of an integration of their metric's provider.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kpi_core::alert::{AlertRule, AlertState, Condition, Window};
use kpi_core::ids::AlertId;
use kpi_core::ports::store::AlertEvent;
use kpi_core::{Error, IntegrationId, IntegrationStatus, Metric, WorkspaceScope};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

/// Most rules one workspace may have.
pub const MAX_RULES: usize = 100;

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertView {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub name: String,
    pub metric: Metric,
    #[schema(value_type = Option<String>, format = Uuid)]
    pub integration: Option<String>,
    pub condition: Condition,
    pub window: Window,
    pub recipients: Vec<String>,
    pub cooldown_hours: u32,
    pub notify_recovery: bool,
    pub enabled: bool,
    pub state: AlertState,
    /// Why the rule cannot fire now (its integration is disconnected or missing).
    pub warning: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertList {
    pub items: Vec<AlertView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAlert {
    /// 1 to 100 characters.
    pub name: String,
    /// A KPI metric name such as `meta.roas`.
    pub metric: Metric,
    /// Only this integration's numbers (default: any integration of the metric's provider).
    pub integration: Option<String>,
    pub condition: Condition,
    /// `day` (default) or `7d`; ratios over 7 days come from their parts.
    pub window: Option<Window>,
    /// 1 to 50 addresses.
    pub recipients: Vec<String>,
    /// Hours without a repeat while the condition stays true (default 24, at most 720).
    pub cooldown_hours: Option<u32>,
    /// Email when the condition clears (default false).
    pub notify_recovery: Option<bool>,
    /// Default true.
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlertPatch {
    pub name: Option<String>,
    pub condition: Option<Condition>,
    pub window: Option<Window>,
    pub recipients: Option<Vec<String>>,
    pub cooldown_hours: Option<u32>,
    pub notify_recovery: Option<bool>,
    pub enabled: Option<bool>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AlertEvents {
    /// Newest first.
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<AlertEvent>,
}

fn alert_id(raw: &str) -> Result<AlertId, ApiError> {
    AlertId::parse(raw).map_err(|_| Error::not_found("alert rule not found").into())
}

async fn view(state: &AppState, scope: &WorkspaceScope, r: AlertRule) -> ApiResult<AlertView> {
    let warning = match r.integration {
        Some(id) => match state.store.get_integration(scope, id).await {
            Ok(i) if i.status() == IntegrationStatus::Disconnected => {
                Some("its integration is disconnected: the rule cannot fire".to_owned())
            }
            Ok(_) => None,
            Err(e) if e.is_not_found() => Some("its integration no longer exists".to_owned()),
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    Ok(AlertView {
        id: r.id.to_string(),
        name: r.name,
        metric: r.metric,
        integration: r.integration.map(|i| i.to_string()),
        condition: r.condition,
        window: r.window,
        recipients: r.recipients,
        cooldown_hours: r.cooldown_hours,
        notify_recovery: r.notify_recovery,
        enabled: r.enabled,
        state: r.state,
        warning,
        created_at: r.created_at,
        updated_at: r.updated_at,
    })
}

/// The metric must exist; a named integration must be the workspace's and
/// of the metric's provider.
async fn check_target(
    state: &AppState,
    scope: &WorkspaceScope,
    metric: Metric,
    integration: Option<IntegrationId>,
) -> ApiResult<()> {
    let provider = state
        .registry
        .entries()
        .find(|e| e.descriptor.metrics.iter().any(|m| m.metric == metric))
        .map(|e| e.descriptor.id)
        .ok_or_else(|| Error::validation("metric", "unknown metric"))?;
    if let Some(id) = integration {
        let i = state.store.get_integration(scope, id).await.map_err(|e| {
            if e.is_not_found() {
                Error::validation("integration", "no such integration in this workspace")
            } else {
                e
            }
        })?;
        if i.provider != provider {
            return Err(Error::validation(
                "integration",
                format!("{metric} is not a metric of that integration's provider"),
            )
            .into());
        }
    }
    Ok(())
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/alerts", operation_id = "listAlerts", tag = "alerts",
    params(("ws" = String, Path)),
    responses((status = 200, body = AlertList), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> ApiResult<Json<AlertList>> {
    let scope = workspace_scope(&p, &ws)?;
    let mut items = Vec::new();
    for r in state.store.list_alerts(&scope).await? {
        items.push(view(&state, &scope, r).await?);
    }
    Ok(Json(AlertList { items }))
}

#[utoipa::path(post, path = "/v1/workspaces/{ws}/alerts", operation_id = "createAlert", tag = "alerts",
    params(("ws" = String, Path)), request_body = NewAlert,
    responses((status = 201, body = AlertView), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse), (status = 415, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<NewAlert>,
) -> ApiResult<(StatusCode, Json<AlertView>)> {
    let scope = workspace_scope(&p, &ws)?;
    let integration = body
        .integration
        .as_deref()
        .map(|raw| {
            IntegrationId::parse(raw)
                .map_err(|_| Error::validation("integration", "an integration id"))
        })
        .transpose()?;
    check_target(&state, &scope, body.metric, integration).await?;
    if state.store.list_alerts(&scope).await?.len() >= MAX_RULES {
        return Err(Error::validation(
            "name",
            format!("a workspace has at most {MAX_RULES} alert rules"),
        )
        .into());
    }
    let now = state.clock.now();
    let mut rule = AlertRule {
        id: AlertId::new_time_ordered(),
        workspace: scope.workspace().clone(),
        name: body.name,
        metric: body.metric,
        integration,
        condition: body.condition,
        window: body.window.unwrap_or(Window::Day),
        recipients: body.recipients,
        cooldown_hours: body.cooldown_hours.unwrap_or(24),
        notify_recovery: body.notify_recovery.unwrap_or(false),
        enabled: body.enabled.unwrap_or(true),
        state: AlertState::default(),
        version: 0,
        created_at: now,
        updated_at: now,
    };
    rule.check()?;
    let stored = state.store.create_alert(&scope, &rule).await?;
    Ok((
        StatusCode::CREATED,
        Json(view(&state, &scope, stored).await?),
    ))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/alerts/{id}", operation_id = "getAlert", tag = "alerts",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AlertView), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<AlertView>> {
    let scope = workspace_scope(&p, &ws)?;
    let rule = state.store.get_alert(&scope, alert_id(&id)?).await?;
    Ok(Json(view(&state, &scope, rule).await?))
}

#[utoipa::path(patch, path = "/v1/workspaces/{ws}/alerts/{id}", operation_id = "updateAlert", tag = "alerts",
    params(("ws" = String, Path), ("id" = String, Path)), request_body = AlertPatch,
    responses((status = 200, body = AlertView), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 409, response = ProblemResponse), (status = 413, response = ProblemResponse),
        (status = 415, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<AlertPatch>,
) -> ApiResult<Json<AlertView>> {
    let scope = workspace_scope(&p, &ws)?;
    let id = alert_id(&id)?;
    let condition_changed = body.condition.is_some() || body.window.is_some();
    let stored = kpi_sync::cas::modify_alert(&*state.store, &*state.clock, &scope, id, |rule| {
        if let Some(v) = &body.name {
            rule.name = v.clone();
        }
        if let Some(v) = &body.condition {
            rule.condition = v.clone();
        }
        if let Some(v) = body.window {
            rule.window = v;
        }
        if let Some(v) = &body.recipients {
            rule.recipients = v.clone();
        }
        if let Some(v) = body.cooldown_hours {
            rule.cooldown_hours = v;
        }
        if let Some(v) = body.notify_recovery {
            rule.notify_recovery = v;
        }
        if let Some(v) = body.enabled {
            rule.enabled = v;
        }
        if condition_changed {
            // Another condition starts from scratch.
            rule.state = AlertState::default();
        }
        rule.check()
    })
    .await?;
    Ok(Json(view(&state, &scope, stored).await?))
}

#[utoipa::path(delete, path = "/v1/workspaces/{ws}/alerts/{id}", operation_id = "deleteAlert", tag = "alerts",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "deleted with its history"), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let scope = workspace_scope(&p, &ws)?;
    if state.store.delete_alert(&scope, alert_id(&id)?).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(Error::not_found("alert rule not found").into())
    }
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/alerts/{id}/events", operation_id = "listAlertEvents", tag = "alerts",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = AlertEvents), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn events(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<AlertEvents>> {
    let scope = workspace_scope(&p, &ws)?;
    let id = alert_id(&id)?;
    state.store.get_alert(&scope, id).await?;
    let items = state.store.list_alert_events(&scope, id, 100).await?;
    Ok(Json(AlertEvents { items }))
}

#[utoipa::path(post, path = "/v1/workspaces/{ws}/alerts/{id}/test", operation_id = "testAlert", tag = "alerts",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 202, body = super::reports::PreviewSent), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse), (status = 422, response = ProblemResponse), (status = 429, response = ProblemResponse)))]
pub async fn test(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<super::reports::PreviewSent>)> {
    let scope = workspace_scope(&p, &ws)?;
    let to = super::reports::caller_email(&p)?;
    let rule = state.store.get_alert(&scope, alert_id(&id)?).await?;
    // The rule's integration, else the first connected one of its metric's provider.
    let provider = state
        .registry
        .entries()
        .find(|e| e.descriptor.metrics.iter().any(|m| m.metric == rule.metric))
        .map(|e| e.descriptor.id)
        .ok_or_else(|| Error::conflict("the rule's metric is no longer offered"))?;
    let integration = match rule.integration {
        Some(id) => state.store.get_integration(&scope, id).await?,
        None => {
            let page = state
                .store
                .list_integrations(&scope, &kpi_core::page::PageRequest::first(100))
                .await?;
            page.items
                .into_iter()
                .find(|i| i.provider == provider && i.status() == IntegrationStatus::Connected)
                .ok_or_else(|| Error::conflict("no connected integration has this metric"))?
        }
    };
    crate::service::take_hourly_slot(
        &state,
        &format!(
            "preview:{}:{}",
            scope.workspace(),
            kpi_providers::oauth::sha256_b64(&p.sub)
        ),
        super::reports::PREVIEWS_PER_HOUR,
        "previews",
    )
    .await?;
    let (delivery, subject) = crate::mail::alert_evaluator(&state)
        .test(&scope, &integration, &rule, &to)
        .await?;
    super::reports::sent(delivery, to, subject)
}
