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
use kpi_core::ports::provider::WebhookDelivery;
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

/// Meta's subscription check: echoes `hub.challenge` when `hub.mode` is
/// `subscribe` and `hub.verify_token` is the configured one.
#[utoipa::path(get, path = "/v1/webhooks/meta", operation_id = "verifyMetaWebhook", tag = "webhooks", security(()),
    params(("hub.mode" = Option<String>, Query, description = "subscribe"),
        ("hub.verify_token" = Option<String>, Query, description = "META_WEBHOOK_VERIFY_TOKEN"),
        ("hub.challenge" = Option<String>, Query, description = "echoed back")),
    responses((status = 200, description = "the challenge, as text/plain", content_type = "text/plain", body = String),
        (status = 403, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn meta_challenge(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Response, ApiError> {
    match webhooks::challenge(&state, Provider::META_ADS, &params(query.as_deref())) {
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

/// A Meta webhook delivery (`object=ad_account`), signed with
/// `X-Hub-Signature-256`. Each ad account it names gets one sync of its
/// recent days per integration using it; redeliveries change nothing.
#[utoipa::path(post, path = "/v1/webhooks/meta", operation_id = "receiveMetaWebhook", tag = "webhooks", security(()),
    params(("X-Hub-Signature-256" = String, Header, description = "sha256=<hex HMAC-SHA256 of the raw body with the app secret>")),
    request_body(content = Object, content_type = "application/json", description = "Meta's delivery: {object, entry: [{id, time, changes: [{field, value}]}]}"),
    responses((status = 200, body = WebhookReceipt), (status = 401, response = ProblemResponse),
        (status = 413, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn meta_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    receive(&state, Provider::META_ADS, headers, body).await
}

/// A Resend webhook delivery (through Svix): `svix-id`, `svix-timestamp` and
/// `svix-signature` over the raw body with `RESEND_WEBHOOK_SECRET`. Email
/// events update the send records; hard bounces and complaints suppress the
/// address; a redelivery (same `svix-id`) changes nothing.
#[utoipa::path(post, path = "/v1/webhooks/resend", operation_id = "receiveResendWebhook", tag = "webhooks", security(()),
    params(("svix-id" = String, Header), ("svix-timestamp" = String, Header, description = "Unix seconds, within 5 minutes of now"),
        ("svix-signature" = String, Header, description = "space-separated v1,<base64 HMAC-SHA256>")),
    request_body(content = Object, content_type = "application/json", description = "Resend's event: {type, created_at, data}"),
    responses((status = 200, body = WebhookReceipt), (status = 401, response = ProblemResponse),
        (status = 413, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn resend_delivery(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    receive(&state, Provider::RESEND, headers, body).await
}

/// A Resend webhook delivery to one integration's own endpoint, which the
/// integration registered when it connected: signed with that endpoint's
/// secret, and applied only to the emails that integration sent.
#[utoipa::path(post, path = "/v1/webhooks/resend/{integration}", operation_id = "receiveResendIntegrationWebhook", tag = "webhooks", security(()),
    params(("integration" = String, Path, description = "the Resend integration whose endpoint this is"),
        ("svix-id" = String, Header), ("svix-timestamp" = String, Header, description = "Unix seconds, within 5 minutes of now"),
        ("svix-signature" = String, Header, description = "space-separated v1,<base64 HMAC-SHA256> with the endpoint's signing secret")),
    request_body(content = Object, content_type = "application/json", description = "Resend's event: {type, created_at, data}"),
    responses((status = 200, body = WebhookReceipt), (status = 401, response = ProblemResponse),
        (status = 413, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn resend_integration_delivery(
    State(state): State<AppState>,
    Path(integration): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    // An id that is no integration's gets the answer a wrong signature gets.
    let id = kpi_core::IntegrationId::parse(&integration)
        .map_err(|_| kpi_core::Error::unauthenticated("the webhook signature does not verify"))?;
    let headers = delivery_headers(&headers);
    let delivery = WebhookDelivery {
        headers: &headers,
        body: &body,
        now: state.clock.now(),
    };
    let received = webhooks::receive_for(&state, Provider::RESEND, id, &delivery).await;
    answer(&state, Provider::RESEND, received)
}

async fn receive(
    state: &AppState,
    provider: Provider,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<WebhookReceipt>, ApiError> {
    let headers = delivery_headers(&headers);
    let delivery = WebhookDelivery {
        headers: &headers,
        body: &body,
        now: state.clock.now(),
    };
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
    let receipt = received.inspect_err(|e| {
        if e.code() == "unauthenticated" {
            kpi_sync::metrics::record_webhook_signature_failure(
                provider.as_str(),
                state.clock.now().timestamp_millis(),
            );
        }
    })?;
    Ok(Json(WebhookReceipt {
        received: true,
        duplicate: receipt.duplicate,
        jobs: receipt.jobs.len(),
    }))
}
