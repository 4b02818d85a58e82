//! `/v1/workspaces/{ws}/integrations…`: list, create (API-key providers), get,
//! patch, delete (disconnect), options, health, status, manual sync, jobs.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::NaiveDate;
use kpi_core::page::{Cursor, PageRequest};
use kpi_core::ports::provider::ProviderOptions;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiJson, ApiQuery, Auth, integration_id, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use super::views::*;
use crate::service::{self, IntegrationPatch};
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

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations", operation_id = "listIntegrations", tag = "integrations",
    params(("ws" = String, Path, description = "workspace id"), PageParams),
    responses((status = 200, body = IntegrationPage), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
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
        items: result
            .items
            .iter()
            .map(|i| IntegrationView::at(i, state.clock.now()))
            .collect(),
        next_cursor: result.next.map(|c| c.as_token().to_owned()),
    }))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIntegration {
    /// An API-key provider (`resend`; see `/v1/providers`); OAuth providers
    /// connect through `/v1/oauth/{provider}/start`.
    #[schema(example = "resend")]
    pub provider: String,
    /// The provider API key. Validated with the provider, stored encrypted, never shown again.
    #[schema(value_type = String, example = "re_123456789")]
    pub api_key: String,
    pub display_name: Option<String>,
}

#[utoipa::path(post, path = "/v1/workspaces/{ws}/integrations", operation_id = "createIntegration", tag = "integrations",
    params(("ws" = String, Path, description = "workspace id")),
    request_body = CreateIntegration,
    responses((status = 201, body = IntegrationView, headers(("Location" = String))),
        (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 413, response = ProblemResponse), (status = 415, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn create(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<CreateIntegration>,
) -> ApiResult<Response> {
    let scope = workspace_scope(&p, &ws)?;
    let stored = service::create_with_key(
        &state,
        &scope,
        &body.provider,
        &body.api_key,
        body.display_name.as_deref(),
    )
    .await?;
    let mut response = (
        StatusCode::CREATED,
        Json(IntegrationView::at(&stored, state.clock.now())),
    )
        .into_response();
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

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}", operation_id = "getIntegration", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = IntegrationView), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
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
    Ok(Json(IntegrationView::at(&integration, state.clock.now())))
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
    /// The signing secret (`whsec_…`) of a webhook added by hand at the
    /// provider for this integration's endpoint (`webhooks.resource`), when
    /// its key could not register one (a Resend sending-only key). Kept
    /// sealed; never shown again.
    pub webhook_secret: Option<String>,
}

#[utoipa::path(patch, path = "/v1/workspaces/{ws}/integrations/{id}", operation_id = "updateIntegration", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    request_body = PatchIntegration,
    responses((status = 200, body = IntegrationView), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 409, response = ProblemResponse), (status = 413, response = ProblemResponse),
        (status = 415, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn patch(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
    ApiJson(body): ApiJson<PatchIntegration>,
) -> ApiResult<Json<IntegrationView>> {
    let scope = workspace_scope(&p, &ws)?;
    let patch = IntegrationPatch {
        webhook_secret: body.webhook_secret,
        display_name: body.display_name,
        settings: body.settings,
        sync_interval_minutes: body.sync_interval_minutes,
        paused: body.paused,
    };
    let updated = service::update(&state, &scope, integration_id(&id)?, patch).await?;
    Ok(Json(IntegrationView::at(&updated, state.clock.now())))
}

/// The answer to a disconnect.
#[derive(serde::Serialize, ToSchema)]
pub struct Disconnected {
    pub status: kpi_core::IntegrationStatus,
    /// What happened at the provider.
    pub provider_access: service::ProviderAccess,
    /// The same, in words for the person who asked.
    pub detail: String,
}

#[utoipa::path(delete, path = "/v1/workspaces/{ws}/integrations/{id}", operation_id = "disconnectIntegration", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Disconnected, description = "disconnected (also when it already was, or never existed)"), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn delete(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<Disconnected>> {
    let scope = workspace_scope(&p, &ws)?;
    let id = integration_id(&id)?;
    let done = service::disconnect(&state, &scope, id).await?;
    let provider = done
        .provider
        .and_then(|p| state.registry.descriptor(p).ok())
        .map_or("the provider", |d| d.display_name);
    let access = done.access;
    Ok(Json(Disconnected {
        status: kpi_core::IntegrationStatus::Disconnected,
        provider_access: access,
        detail: access.explain(provider),
    }))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/options", operation_id = "getIntegrationOptions", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = ProviderOptions), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse), (status = 429, response = ProblemResponse), (status = 502, response = ProblemResponse), (status = 503, response = ProblemResponse)))]
pub async fn options(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<ProviderOptions>> {
    let scope = workspace_scope(&p, &ws)?;
    Ok(Json(
        service::options(&state, &scope, integration_id(&id)?).await?,
    ))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/health", operation_id = "checkIntegrationHealth", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = HealthView), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse), (status = 409, response = ProblemResponse)))]
pub async fn health(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, id)): Path<(String, String)>,
) -> ApiResult<Json<HealthView>> {
    let scope = workspace_scope(&p, &ws)?;
    let health = service::health(&state, &scope, integration_id(&id)?).await?;
    Ok(Json(HealthView {
        state: health.state().into(),
        message: health.message().map(str::to_owned),
        checked_at: state.clock.now(),
    }))
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/status", operation_id = "getIntegrationStatus", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = StatusView), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
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
        expires_soon: i.expires_soon(state.clock.now()),
        credentials_expire_at: i.credentials_expire_at,
        webhooks: i.webhooks,
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

#[utoipa::path(post, path = "/v1/workspaces/{ws}/integrations/{id}/sync", operation_id = "requestSync", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path)),
    request_body(content = Option<SyncRequestBody>, description = "optional window"),
    responses((status = 202, body = SyncAccepted, headers(("Location" = String))), (status = 400, response = ProblemResponse),
        (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse), (status = 409, response = ProblemResponse),
        (status = 415, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
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
    let request_id = super::request_id::current();
    let (job, existing) = service::request_sync(
        &state,
        &scope,
        id,
        window_body.from,
        window_body.to,
        request_id.as_deref(),
    )
    .await?;
    let mut response = (
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            job_id: job.id.to_string(),
            status: job.status(),
            existing,
        }),
    )
        .into_response();
    location(
        response.headers_mut(),
        format!(
            "/v1/workspaces/{}/integrations/{}/jobs",
            scope.workspace(),
            job.integration
        ),
    );
    Ok(response)
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/integrations/{id}/jobs", operation_id = "listIntegrationJobs", tag = "integrations",
    params(("ws" = String, Path), ("id" = String, Path), PageParams),
    responses((status = 200, body = JobPage), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
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
