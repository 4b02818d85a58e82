//! Resend `GET /domains`: API-key checks with Resend's error bodies.

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::Sandbox;

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
    sandbox.with_state(|s| s.counters.resend_calls += 1);
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
    let Some(key) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return resend_error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header. Include the following header in the request: Authorization: Bearer YOUR_API_KEY",
        );
    };
    match key_kind(key) {
        None => resend_error(StatusCode::BAD_REQUEST, "validation_error", "API key is invalid"),
        Some("sending") => resend_error(StatusCode::UNAUTHORIZED, "restricted_api_key", "This API key is restricted to only send emails."),
        Some(_) => (
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
            .into_response(),
    }
}
