//! Provider webhook endpoints. No session or token: a delivery is trusted
//! only through its signature, which the provider's adapter checks on the raw
//! bytes before anything is parsed. The work itself goes to the queue, so an
//! answer takes a few store writes.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::Provider;
use kpi_core::ports::provider::{WebhookDelivery, WebhookSpec};
use serde::Serialize;

use super::problem::{ApiError, ProblemResponse};
use super::request_id;
use crate::state::AppState;
use crate::webhooks;

/// What a delivery led to.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// The same delivery arrived before; nothing was done this time.
    pub duplicate: bool,
    /// Sync jobs queued for the integrations it concerns.
    pub jobs: usize,
}

fn params(query: Option<&str>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(query.unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

/// The provider that sends webhooks to `/v1/webhooks/{path}`, if it takes
/// this kind of request (`wanted`); otherwise "not found".
fn provider_at(
    state: &AppState,
    path: &str,
    wanted: impl Fn(&WebhookSpec) -> bool,
) -> Result<(Provider, WebhookSpec), ApiError> {
    let (provider, spec) = state.registry.by_webhook_path(path)?;
    if !wanted(&spec) {
        return Err(kpi_core::Error::not_found(format!(
            "no provider sends this kind of webhook request to {path}"
        ))
        .into());
    }
    Ok((provider, spec))
}

/// The provider's screen of a delivery (see [`WebhookSpec::screen`]), the
/// first check after the provider is known: before the configuration is
/// ready, the early router's answer is this one.
fn screen(
    provider: Provider,
    spec: &WebhookSpec,
    delivery: &WebhookDelivery<'_>,
) -> Result<(), ApiError> {
    (spec.screen)(delivery).map_err(|e| {
        signature_refused(provider, &e, delivery.now);
        e.into()
    })
}

/// Counts a refused signature (the alarm's metric).
fn signature_refused(provider: Provider, e: &kpi_core::Error, now: chrono::DateTime<chrono::Utc>) {
    if e.code() == "unauthenticated" {
        kpi_sync::metrics::record_webhook_signature_failure(
            provider.as_str(),
            now.timestamp_millis(),
        );
    }
}

/// Before the configuration: a delivery to the deployment's endpoint that
/// the provider's screen refuses (the static catalogue knows the provider).
/// Anything else is declined.
pub async fn screened(Path(path): Path<String>, headers: HeaderMap, body: Bytes) -> Response {
    screened_early(&path, |_| true, &headers, &body)
}

/// [`screened`], for a connection's own endpoint.
pub async fn screened_for(
    Path((path, _)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    screened_early(&path, |w| w.per_connection, &headers, &body)
}

fn screened_early(
    path: &str,
    wanted: impl Fn(&WebhookSpec) -> bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let Some((provider, spec)) = crate::providers::descriptors().iter().find_map(|d| {
        d.webhook
            .filter(|w| w.path == path && wanted(w))
            .map(|w| (d.id, w))
    }) else {
        return super::early::declined_now();
    };
    let headers = delivery_headers(headers);
    let delivery = WebhookDelivery {
        headers: &headers,
        body,
        now: chrono::Utc::now(),
    };
    match screen(provider, &spec, &delivery) {
        Err(refused) => refused.into_response(),
        Ok(()) => super::early::declined_now(),
    }
}

/// A provider's endpoint check, where it makes one (Meta: echoes
/// `hub.challenge` when `hub.mode` is `subscribe` and `hub.verify_token` is
/// `META_WEBHOOK_VERIFY_TOKEN`).
#[utoipa::path(get, path = "/v1/webhooks/{provider}", operation_id = "checkWebhookEndpoint", tag = "webhooks", security(()),
    params(("provider" = String, Path, description = "the provider's webhook path (`webhook_path` in /v1/providers): meta"),
        ("hub.mode" = Option<String>, Query, description = "Meta: subscribe"),
        ("hub.verify_token" = Option<String>, Query, description = "Meta: META_WEBHOOK_VERIFY_TOKEN"),
        ("hub.challenge" = Option<String>, Query, description = "Meta: echoed back")),
    responses((status = 200, description = "the challenge, as text/plain", content_type = "text/plain", body = String),
        (status = 403, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn check(
    State(state): State<AppState>,
    Path(path): Path<String>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    let (provider, _) = provider_at(&state, &path, |w| w.challenge)?;
    match webhooks::challenge(&state, provider, &params(query.as_deref())) {
        Ok(challenge) => Ok((
            StatusCode::OK,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            challenge,
        )
            .into_response()),
        Err(e) if e.code() == "unauthenticated" => Err(ApiError::Forbidden(e.message().to_owned())),
        Err(e) => Err(e.into()),
    }
}

/// A webhook delivery to the deployment's own endpoint of a provider,
/// verified on the raw bytes with the deployment's secret before anything is
/// read. Meta (`meta`): `X-Hub-Signature-256` (HMAC-SHA256 with
/// `META_APP_SECRET`); each ad account named gets one sync of its recent days
/// per integration using it. Resend (`resend`, the platform's account):
/// `svix-id`, `svix-timestamp` (within 5 minutes) and `svix-signature` with
/// `RESEND_WEBHOOK_SECRET`; email events update the send records, hard
/// bounces and complaints suppress the address. A redelivery changes nothing.
#[utoipa::path(post, path = "/v1/webhooks/{provider}", operation_id = "receiveWebhook", tag = "webhooks", security(()),
    params(("provider" = String, Path, description = "the provider's webhook path (`webhook_path` in /v1/providers): meta or resend"),
        ("X-Hub-Signature-256" = Option<String>, Header, description = "Meta: sha256=<hex HMAC-SHA256 of the raw body with the app secret>"),
        ("svix-id" = Option<String>, Header, description = "Resend"),
        ("svix-timestamp" = Option<String>, Header, description = "Resend: Unix seconds, within 5 minutes of now"),
        ("svix-signature" = Option<String>, Header, description = "Resend: space-separated v1,<base64 HMAC-SHA256>")),
    request_body(content = Object, content_type = "application/json", description = "the provider's delivery: Meta {object, entry: [{id, time, changes: [{field, value}]}]}, Resend {type, created_at, data}"),
    responses((status = 200, body = WebhookReceipt), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn delivery(
    State(state): State<AppState>,
    Path(path): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let (provider, spec) = provider_at(&state, &path, |_| true)?;
    receive(&state, provider, &spec, headers, body).await
}

/// A webhook delivery to one integration's own endpoint, which it
/// registered when it connected (Resend: signed with that endpoint's secret,
/// `svix-*` headers as above), applied only to what that integration did.
#[utoipa::path(post, path = "/v1/webhooks/{provider}/{integration}", operation_id = "receiveIntegrationWebhook", tag = "webhooks", security(()),
    params(("provider" = String, Path, description = "the provider's webhook path (`webhook_path` in /v1/providers): resend"),
        ("integration" = String, Path, description = "the integration whose endpoint this is"),
        ("svix-id" = Option<String>, Header, description = "Resend"),
        ("svix-timestamp" = Option<String>, Header, description = "Resend: Unix seconds, within 5 minutes of now"),
        ("svix-signature" = Option<String>, Header, description = "Resend: space-separated v1,<base64 HMAC-SHA256> with the endpoint's signing secret")),
    request_body(content = Object, content_type = "application/json", description = "the provider's delivery (Resend: {type, created_at, data})"),
    responses((status = 200, body = WebhookReceipt), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn integration_delivery(
    State(state): State<AppState>,
    Path((path, integration)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let (provider, spec) = provider_at(&state, &path, |w| w.per_connection)?;
    let headers = delivery_headers(&headers);
    let delivery = WebhookDelivery {
        headers: &headers,
        body: &body,
        now: state.clock.now(),
    };
    screen(provider, &spec, &delivery)?;
    // An id that is no integration's gets the answer a wrong signature gets.
    let id = kpi_core::IntegrationId::parse(&integration)
        .map_err(|_| kpi_core::Error::unauthenticated("the webhook signature does not verify"))?;
    let received = webhooks::receive_for(&state, provider, id, &delivery).await;
    answer(&state, provider, received)
}

async fn receive(
    state: &AppState,
    provider: Provider,
    spec: &WebhookSpec,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let headers = delivery_headers(&headers);
    let delivery = WebhookDelivery {
        headers: &headers,
        body: &body,
        now: state.clock.now(),
    };
    screen(provider, spec, &delivery)?;
    let request_id = request_id::current();
    let received = webhooks::receive(state, provider, &delivery, request_id.as_deref()).await;
    answer(state, provider, received)
}

/// The headers as the adapters read them (names lower-case, values text).
fn delivery_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .filter_map(|(k, v)| Some((k.as_str().to_owned(), v.to_str().ok()?.to_owned())))
        .collect()
}

/// The answer to a delivery; a refused signature is counted (the alarm's
/// metric).
fn answer(
    state: &AppState,
    provider: Provider,
    received: kpi_core::Result<webhooks::Receipt>,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let receipt = received.inspect_err(|e| signature_refused(provider, e, state.clock.now()))?;
    Ok(Json(WebhookReceipt {
        received: true,
        duplicate: receipt.duplicate,
        jobs: receipt.jobs.len(),
    }))
}
