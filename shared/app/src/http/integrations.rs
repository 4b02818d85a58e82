//! `/v1/workspaces/{ws}/integrations…`: list, create (API-key providers), get,
//! patch, delete (disconnect), options, health, status, manual sync, jobs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::job::{JobTrigger, SyncMessage};
use kpi_core::kpi::DateRange;
use kpi_core::page::{Cursor, PageRequest};
use kpi_core::ports::CredentialContext;
use kpi_core::ports::QueueName;
use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::provider::AuthMode;
use kpi_core::{
    Error, Integration, IntegrationId, IntegrationStatus, JobId, Provider, SyncJob, WorkspaceScope,
};
use kpi_providers::resend::KeyAccess;
use secrecy::SecretString;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Auth, integration_id, workspace_scope};
use super::problem::{ApiError, Problem};
use super::views::*;
use crate::connect;
use crate::state::AppState;

type ApiResult<T> = Result<T, ApiError>;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// Page size, 1 to 100 (default 50).
    limit: Option<u32>,
    /// `next_cursor` of the previous page.
    cursor: Option<String>,
}

impl PageParams {
    fn request(&self) -> PageRequest {
        let limit = self.limit.unwrap_or(50);
        match &self.cursor {
            Some(c) => PageRequest::after(limit, Cursor::from_token(c.clone())),
            None => PageRequest::first(limit),
        }
    }
}

fn location(headers: &mut HeaderMap, path: String) {
    if let Ok(v) = HeaderValue::from_str(&path) {
        headers.insert(header::LOCATION, v);
    }
}

/// Read-modify-write with optimistic versioning, retried on a lost race.
pub async fn modify_integration(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
    mut change: impl FnMut(&mut Integration) -> Result<(), Error>,
) -> Result<Integration, Error> {
    let mut attempt = 0;
    loop {
        let mut integration = state.store.get_integration(scope, id).await?;
        change(&mut integration)?;
        integration.updated_at = state.clock.now();
        match state.store.update_integration(scope, &integration).await {
            Err(e) if e.code() == "conflict" && attempt < 3 => attempt += 1,
            other => return other,
        }
    }
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations", tag = "integrations",
    params(("ws" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = IntegrationPage), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn list(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<IntegrationPage>> {
    let scope = workspace_scope(&p, &ws)?;
    let result = state
        .store
        .list_integrations(&scope, &page.request())
        .await?;
    Ok(Json(IntegrationPage {
        items: result.items.iter().map(IntegrationView::from).collect(),
        next_cursor: result.next.map(|c| c.as_token().to_owned()),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// Only API-key providers (`resend`); OAuth providers connect through
    /// `/v1/oauth/{provider}/start`.
    pub provider: Provider,
    /// The provider API key. Validated with the provider, stored encrypted, never shown again.
    #[schema(value_type = String, example = "re_123456789")]
    pub api_key: String,
    pub display_name: Option<String>,
}

fn check_display_name(name: &str) -> Result<String, Error> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::validation(
            "display_name",
            "must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

#[utoipa::path(post, path = "/v1/workspaces/{ws}/integrations", tag = "integrations",
    params(("ws" = String, Path, description = "workspace id")),
    request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView, headers(("Location" = String))),
        (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 413, body = Problem, content_type = "application/problem+json"), (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<CreateIntegration>,
) -> ApiResult<Response> {
    let scope = workspace_scope(&p, &ws)?;
    if body.provider.auth_mode() != AuthMode::ApiKey {
        return Err(Error::validation(
            "provider",
            format!(
                "{} connects with OAuth: open /v1/oauth/{}/start",
                body.provider.display_name(),
                body.provider
            ),
        )
        .into());
    }
    let key = body.api_key.trim();
    if key.is_empty() || key.len() > 256 || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::validation("api_key", "must be the API key as Resend shows it").into());
    }
    let display_name = body
        .display_name
        .as_deref()
        .map(check_display_name)
        .transpose()?
        .unwrap_or_else(|| body.provider.display_name().to_owned());
    let secret = SecretString::from(key.to_owned());
    let access = state.providers.resend.check_key(&secret).await?;

    let now = state.clock.now();
    let mut integration = Integration::new(
        IntegrationId::new_random(),
        scope.workspace().clone(),
        body.provider,
        display_name,
        now,
    );
    integration.settings.insert(
        "key_access".into(),
        match access {
            KeyAccess::Full { .. } => "full",
            KeyAccess::SendingOnly => "sending_only",
        }
        .into(),
    );
    integration.credentials = Some(
        state
            .vault
            .seal(
                &CredentialContext::of(&integration),
                &ConnectionCredentials::ApiKey { key: secret },
            )
            .await?,
    );
    integration.transition(IntegrationStatus::Connected, now)?;
    let stored = state.store.create_integration(&scope, &integration).await?;
    let mut response = (StatusCode::CREATED, Json(IntegrationView::from(&stored))).into_response();
    location(
        response.headers_mut(),
        format!(
            "/v1/workspaces/{}/integrations/{}",
            scope.workspace(),
            stored.id
        ),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<IntegrationView>> {
    let scope = workspace_scope(&p, &ws)?;
    let integration = state
        .store
        .get_integration(&scope, integration_id(&id)?)
        .await?;
    Ok(Json(IntegrationView::from(&integration)))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchIntegration {
    pub display_name: Option<String>,
    /// Provider settings, merged into the current ones (`property` for GA4,
    /// `ad_account` for Meta Ads, `domain` for Resend).
    #[schema(value_type = Option<Object>)]
    pub settings: Option<serde_json::Map<String, serde_json::Value>>,
    /// Minutes between scheduled syncs (15 to 10080).
    pub sync_interval_minutes: Option<u32>,
    /// `true` pauses scheduled syncs, `false` resumes them.
    pub paused: Option<bool>,
}

#[utoipa::path(patch, path = "/v1/workspaces/{ws}/integrations/{id}", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    request_body = PatchIntegration,
    responses((status = 200, body = IntegrationView), (status = 400, body = Problem, content_type = "application/problem+json"), (status = 401, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"), (status = 413, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PatchIntegration>,
) -> ApiResult<Json<IntegrationView>> {
    let scope = workspace_scope(&p, &ws)?;
    let id = integration_id(&id)?;
    let display_name = body
        .display_name
        .as_deref()
        .map(check_display_name)
        .transpose()?;
    let current = state.store.get_integration(&scope, id).await?;
    if current.status() == IntegrationStatus::Disconnected {
        return Err(Error::conflict("the integration is disconnected; connect it again").into());
    }
    if let Some(settings) = &body.settings {
        connect::validate_settings(current.provider, settings)?;
        // A property or ad account must be one the connected user can read.
        for (key, value) in settings {
            if let Some(v) = value.as_str() {
                connect::check_choice(&state, &current, key, v).await?;
            }
        }
    }
    let now = state.clock.now();
    let updated = modify_integration(&state, &scope, id, |i| {
        if let Some(name) = &display_name {
            i.display_name = name.clone();
        }
        if let Some(minutes) = body.sync_interval_minutes {
            i.set_sync_interval(minutes)?;
        }
        if let Some(settings) = &body.settings {
            i.settings.extend(settings.clone());
            if i.status() == IntegrationStatus::NeedsConfiguration && connect::settings_complete(i)
            {
                i.transition(IntegrationStatus::Connected, now)?;
            }
        }
        match body.paused {
            Some(true) if i.status() != IntegrationStatus::Paused => {
                i.transition(IntegrationStatus::Paused, now)?
            }
            Some(false) if i.status() == IntegrationStatus::Paused => {
                let to = if connect::settings_complete(i) {
                    IntegrationStatus::Connected
                } else {
                    IntegrationStatus::NeedsReauth
                };
                i.transition(to, now)?;
                i.next_sync_at = Some(now);
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    Ok(Json(IntegrationView::from(&updated)))
}

#[utoipa::path(delete, path = "/v1/workspaces/{ws}/integrations/{id}", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 204, description = "disconnected (also when it already was)"), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let scope = workspace_scope(&p, &ws)?;
    let id = integration_id(&id)?;
    let integration = match state.store.get_integration(&scope, id).await {
        Ok(i) => i,
        Err(e) if e.code() == "not_found" => return Ok(StatusCode::NO_CONTENT),
        Err(e) => return Err(e.into()),
    };
    if integration.credentials.is_some() {
        // Revoke where the provider allows; erase ours whatever it answers.
        if let Err(e) = connect::revoke(&state, &integration).await {
            tracing::warn!(
                integration = %integration.id,
                provider = %integration.provider,
                error = %e.log_chain(),
                "revocation at the provider failed; erasing the credentials anyway"
            );
        }
    }
    let now = state.clock.now();
    modify_integration(&state, &scope, id, |i| {
        i.transition(IntegrationStatus::Disconnected, now)
    })
    .await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn connected_integration(
    state: &AppState,
    p: &kpi_core::Principal,
    ws: &str,
    id: &str,
) -> ApiResult<Integration> {
    let scope = workspace_scope(p, ws)?;
    let integration = state
        .store
        .get_integration(&scope, integration_id(id)?)
        .await?;
    if integration.credentials.is_none() {
        return Err(Error::conflict("the integration is not connected").into());
    }
    Ok(integration)
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/options", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = OptionsView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, body = Problem, content_type = "application/problem+json"), (status = 429, body = Problem, content_type = "application/problem+json"), (status = 502, body = Problem, content_type = "application/problem+json"), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn options(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<OptionsView>> {
    let integration = connected_integration(&state, &p, &ws, &id).await?;
    Ok(Json(connect::options(&state, &integration).await?))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/health", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = HealthView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json")))]
pub async fn health(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<HealthView>> {
    let integration = connected_integration(&state, &p, &ws, &id).await?;
    Ok(Json(connect::health(&state, &integration).await))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/status", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = StatusView), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn status(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<StatusView>> {
    let scope = workspace_scope(&p, &ws)?;
    let i = state
        .store
        .get_integration(&scope, integration_id(&id)?)
        .await?;
    Ok(Json(StatusView {
        status: i.status(),
        last_sync_at: i.last_sync_at,
        next_sync_at: i.next_sync_at,
        last_success_at: i.last_success_at,
        last_error: i.last_error,
    }))
}

#[derive(Deserialize, ToSchema, Default)]
#[serde(deny_unknown_fields)]
pub struct SyncRequestBody {
    /// First reporting day of a backfill; without it the engine syncs
    /// incrementally.
    pub from: Option<NaiveDate>,
    /// Last reporting day (default: today in the provider's time zone).
    pub to: Option<NaiveDate>,
}

/// Longest window one manual sync may ask for.
pub const MAX_SYNC_DAYS: i64 = 400;

#[utoipa::path(post, path = "/v1/workspaces/{ws}/integrations/{id}/sync", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    request_body(content = Option<SyncRequestBody>, description = "optional window"),
    responses((status = 202, body = SyncAccepted, headers(("Location" = String))), (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 409, body = Problem, content_type = "application/problem+json"),
        (status = 415, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn sync(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let scope = workspace_scope(&p, &ws)?;
    let id = integration_id(&id)?;
    // The body is optional: an empty one means "sync now".
    let window_body: SyncRequestBody = if body.is_empty() {
        SyncRequestBody::default()
    } else {
        let request = axum::http::Request::builder()
            .header(
                header::CONTENT_TYPE,
                headers
                    .get(header::CONTENT_TYPE)
                    .cloned()
                    .unwrap_or(HeaderValue::from_static("")),
            )
            .body(axum::body::Body::from(body))
            .map_err(|_| ApiError::bad_request("unreadable request"))?;
        let ApiJson(parsed) =
            <ApiJson<SyncRequestBody> as axum::extract::FromRequest<()>>::from_request(
                request,
                &(),
            )
            .await?;
        parsed
    };
    let integration = state.store.get_integration(&scope, id).await?;
    if integration.status() != IntegrationStatus::Connected {
        return Err(Error::conflict(format!(
            "the integration is {}; only connected integrations sync",
            integration.status()
        ))
        .into());
    }
    let now = state.clock.now();
    let window = match (window_body.from, window_body.to) {
        (None, None) => None,
        (from, to) => {
            let to = to.unwrap_or_else(|| now.date_naive());
            let from = from.unwrap_or(to);
            let range = DateRange::new(from, to)?;
            if range.days() > MAX_SYNC_DAYS {
                return Err(Error::validation(
                    "from",
                    format!("at most {MAX_SYNC_DAYS} days per sync"),
                )
                .into());
            }
            if from > now.date_naive() + chrono::Duration::days(1) {
                return Err(Error::validation("from", "cannot sync days in the future").into());
            }
            Some(range)
        }
    };
    let trigger = if window.is_some() {
        JobTrigger::Backfill
    } else {
        JobTrigger::Manual
    };
    let job = SyncJob::new(
        JobId::new_time_ordered(),
        scope.workspace().clone(),
        integration.id,
        integration.provider,
        trigger,
        window,
        now,
    );
    state.store.create_job(&scope, &job).await?;
    let body = serde_json::to_string(&SyncMessage::for_job(&job))
        .map_err(|e| Error::internal("cannot encode the sync message").with_source(e))?;
    state
        .queue
        .send_batch(
            QueueName::Work(integration.provider),
            vec![OutgoingMessage::new(body)],
        )
        .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            job_id: job.id.to_string(),
            status: job.status(),
        }),
    )
        .into_response();
    location(
        response.headers_mut(),
        format!(
            "/v1/workspaces/{}/integrations/{}/jobs",
            scope.workspace(),
            integration.id
        ),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/jobs", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path), PageParams),
    responses((status = 200, body = JobPage), (status = 401, body = Problem, content_type = "application/problem+json"), (status = 404, body = Problem, content_type = "application/problem+json"), (status = 422, body = Problem, content_type = "application/problem+json")))]
pub async fn jobs(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
    ApiQuery(page): ApiQuery<PageParams>,
) -> ApiResult<Json<JobPage>> {
    let scope = workspace_scope(&p, &ws)?;
    let id = integration_id(&id)?;
    // 404 for an integration that is not in this workspace.
    state.store.get_integration(&scope, id).await?;
    let result = state.store.list_jobs(&scope, id, &page.request()).await?;
    Ok(Json(JobPage {
        items: result.items.iter().map(JobView::from).collect(),
        next_cursor: result.next.map(|c| c.as_token().to_owned()),
    }))
}
