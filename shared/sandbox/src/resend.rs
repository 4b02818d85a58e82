//! Resend `GET /domains` (API-key checks with Resend's error bodies) and the
//! webhooks API (`POST /webhooks`, `GET /webhooks`, `DELETE /webhooks/{id}`):
//! a full-access key registers an endpoint and gets its signing secret; a
//! sending-only key may not. And the Resend simulator ([`ResendSim`]), which
//! also sends emails (`resend_send.rs`) and their events (`resend_events.rs`).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use base64::Engine as _;
use serde_json::json;

use crate::state::Counters;
use crate::{Sandbox, SandboxConfig, Simulator, resend_events, resend_send};

/// Resend's domains, webhooks and emails APIs and the outbox pages (provider
/// `resend`), with the control route that sends delivery events. Its state is
/// [`ResendState`].
pub struct ResendSim;

impl Simulator for ResendSim {
    fn provider(&self) -> &'static str {
        "resend"
    }

    fn routes(&self) -> Router<Sandbox> {
        Router::new()
            .route("/resend/domains", get(domains))
            .route("/resend/webhooks", post(create_webhook).get(list_webhooks))
            .route("/resend/webhooks/{id}", delete(delete_webhook))
            .route("/resend/emails", post(resend_send::send))
            .route("/resend/emails/batch", post(resend_send::send_batch))
            .route("/resend/emails/{id}", get(resend_send::get_email))
            .route("/resend/outbox", get(resend_send::outbox))
            .route("/resend/outbox/{id}", get(resend_send::outbox_email))
            .route(
                "/resend/outbox/{id}/event",
                post(resend_events::send_from_page),
            )
    }

    fn control_routes(&self) -> Router<Sandbox> {
        Router::new().route("/_control/resend/events", post(resend_events::send))
    }

    fn app_credentials(&self, config: &SandboxConfig) -> Vec<(&'static str, String)> {
        vec![(
            "RESEND_WEBHOOK_SECRET",
            config.resend_webhook_secret.clone(),
        )]
    }
}

/// The state of the Resend simulator.
#[derive(Default)]
pub(crate) struct ResendState {
    /// Emails accepted by the Resend endpoints, oldest first.
    pub outbox: Vec<resend_send::OutboxEmail>,
    /// (API key, Idempotency-Key) → the first answer.
    pub idempotency: HashMap<(String, String), resend_send::Remembered>,
    pub window: resend_send::RateWindow,
    /// Sends still to be accepted without their answer reaching the caller
    /// (set from `Faults::resend_lose_answers`).
    pub lose_answers: u32,
    /// Endpoints registered through `POST /webhooks`, oldest first.
    pub webhooks: Vec<Webhook>,
}

pub fn resend_error(status: StatusCode, name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({"statusCode": status.as_u16(), "message": message, "name": name})),
    )
        .into_response()
}

/// Keys the sandbox accepts: `re_` and at least 8 more letters, digits or `_`.
/// `re_send_…` keys are sending-only (restricted), like Resend's restricted keys.
pub fn key_kind(key: &str) -> Option<&'static str> {
    let rest = key.strip_prefix("re_")?;
    if rest.len() < 8 || !rest.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        return None;
    }
    Some(if rest.starts_with("send_") {
        "sending"
    } else {
        "full"
    })
}

pub async fn domains(State(sandbox): State<Sandbox>, headers: HeaderMap) -> Response {
    sandbox.with(|c: &mut Counters| c.resend_calls += 1);
    if headers.get("user-agent").is_none() {
        return resend_error(
            StatusCode::FORBIDDEN,
            "validation_error",
            "Requests without a User-Agent header are rejected (error code 1010).",
        );
    }
    if let Some(status) = sandbox.faults().resend {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return resend_error(status, "application_error", "An unexpected error occurred.");
    }
    if let Err(refused) = full_access_key(&headers) {
        return *refused;
    }
    (
        StatusCode::OK,
        axum::Json(json!({
            "object": "list",
            "has_more": false,
            "data": [
                {"id": "d91cd9bd-1176-453e-8fc1-35364d380206", "name": "sandbox.example.com", "status": "verified",
                 "created_at": "2026-04-26 20:21:26.347412+00", "region": "us-east-1", "open_tracking": false, "click_tracking": false},
                {"id": "0b7e4d0c-5a3e-4f43-9d7c-6f8c2b1a9e21", "name": "news.sandbox.example.com", "status": "not_started",
                 "created_at": "2026-05-02 08:00:00.000000+00", "region": "eu-west-1", "open_tracking": false, "click_tracking": false}
            ]
        })),
    )
        .into_response()
}

/// An endpoint registered through the webhooks API.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: String,
    pub endpoint: String,
    pub events: Vec<String>,
    /// `whsec_` and base64, as Resend shows it.
    pub signing_secret: String,
    /// The key that registered it: its account's emails' events go to it.
    pub key: String,
}

/// The key of a webhooks API call, or Resend's answer refusing it (a
/// sending-only key is refused like Resend refuses it).
fn full_access_key(headers: &HeaderMap) -> Result<String, Box<Response>> {
    let Some(key) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(Box::new(resend_error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header. Include the following header in the request: Authorization: Bearer YOUR_API_KEY",
        )));
    };
    match key_kind(key) {
        None => Err(Box::new(resend_error(
            StatusCode::BAD_REQUEST,
            "validation_error",
            "API key is invalid",
        ))),
        Some("sending") => Err(Box::new(resend_error(
            StatusCode::UNAUTHORIZED,
            "restricted_api_key",
            "This API key is restricted to only send emails.",
        ))),
        Some(_) => Ok(key.to_owned()),
    }
}

#[derive(serde::Deserialize)]
pub struct NewWebhook {
    #[serde(default)]
    endpoint: String,
    #[serde(default)]
    events: Vec<String>,
}

/// `POST /webhooks`.
pub async fn create_webhook(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    sandbox.with(|c: &mut Counters| c.resend_calls += 1);
    let key = match full_access_key(&headers) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let Ok(new) = serde_json::from_slice::<NewWebhook>(&body) else {
        return resend_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "Invalid body.",
        );
    };
    if !(new.endpoint.starts_with("https://") || new.endpoint.starts_with("http://")) {
        return resend_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "The `endpoint` must be a URL.",
        );
    }
    if new.events.is_empty() || new.events.iter().any(|e| !e.starts_with("email.")) {
        return resend_error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error",
            "The `events` must list email events.",
        );
    }
    let raw = crate::state::random("");
    let secret = format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(&raw.as_bytes()[..24.min(raw.len())])
    );
    let hook = Webhook {
        id: crate::resend_send::email_id(),
        endpoint: new.endpoint,
        events: new.events,
        signing_secret: secret.clone(),
        key,
    };
    let id = hook.id.clone();
    sandbox.with(|s: &mut ResendState| s.webhooks.push(hook));
    (
        StatusCode::CREATED,
        axum::Json(json!({"object": "webhook", "id": id, "signing_secret": secret})),
    )
        .into_response()
}

/// `GET /webhooks`: the key's endpoints.
pub async fn list_webhooks(State(sandbox): State<Sandbox>, headers: HeaderMap) -> Response {
    sandbox.with(|c: &mut Counters| c.resend_calls += 1);
    let key = match full_access_key(&headers) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let data: Vec<_> = sandbox.with(|s: &mut ResendState| {
        s.webhooks
            .iter()
            .filter(|w| w.key == key)
            .map(|w| json!({"id": w.id, "endpoint": w.endpoint, "events": w.events, "status": "enabled"}))
            .collect()
    });
    axum::Json(json!({"object": "list", "has_more": false, "data": data})).into_response()
}

/// `DELETE /webhooks/{id}`.
pub async fn delete_webhook(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    sandbox.with(|c: &mut Counters| c.resend_calls += 1);
    let key = match full_access_key(&headers) {
        Ok(k) => k,
        Err(r) => return *r,
    };
    let removed = sandbox.with(|s: &mut ResendState| {
        let before = s.webhooks.len();
        s.webhooks.retain(|w| !(w.id == id && w.key == key));
        before != s.webhooks.len()
    });
    if !removed {
        return resend_error(StatusCode::NOT_FOUND, "not_found", "Webhook not found");
    }
    axum::Json(json!({"object": "webhook", "id": id, "deleted": true})).into_response()
}

impl Sandbox {
    /// Sets an outbox email's last event without sending a webhook (as when
    /// Resend's webhook never arrives).
    pub fn set_resend_last_event(&self, id: &str, event: &str) {
        self.with(|s: &mut ResendState| {
            if let Some(e) = s.outbox.iter_mut().find(|e| e.id == id) {
                e.last_event = event.to_owned();
            }
        });
    }

    /// The endpoints registered through Resend's webhooks API.
    pub fn resend_webhooks(&self) -> Vec<Webhook> {
        self.with(|s: &mut ResendState| s.webhooks.clone())
    }

    /// Every email the Resend endpoints accepted, oldest first.
    pub fn resend_outbox(&self) -> Vec<resend_send::OutboxEmail> {
        self.with(|s: &mut ResendState| s.outbox.clone())
    }
}
