//! Errors as RFC 9457 problem documents (`application/problem+json`), mapped from
//! the one error taxonomy. Internal detail goes to the log, never the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::error::{Error, ErrorKind};
use serde::Serialize;

use super::request_id;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    #[serde(rename = "type")]
    pub type_uri: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    pub code: &'static str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<kpi_core::error::FieldError>,
    /// The request's id, as in the `x-request-id` header: quote it when asking
    /// an operator about this error.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// The one declaration of an error answer in the API document.
#[derive(utoipa::ToResponse)]
#[response(
    description = "A problem document (RFC 9457): `code` is stable, `detail` is for people",
    content_type = "application/problem+json"
)]
pub struct ProblemResponse(#[allow(dead_code)] Problem);

/// The error type of every handler: the taxonomy's errors, plus the few
/// statuses that only HTTP has.
#[derive(Debug)]
pub enum ApiError {
    /// An error of the taxonomy; its kind decides the status.
    Domain(Error),
    /// 400: the input could not even be parsed.
    BadRequest(String),
    /// 413
    PayloadTooLarge,
    /// 415
    UnsupportedMediaType,
    /// 405, with the `Allow` header of the route.
    MethodNotAllowed(Option<HeaderValue>),
    /// 403: a check that is not about the caller's identity failed (a
    /// webhook endpoint check with the wrong verify token).
    Forbidden(String),
}

impl ApiError {
    pub fn bad_request(message: &str) -> Self {
        Self::BadRequest(message.to_owned())
    }

    fn parts(self) -> (StatusCode, Error) {
        match self {
            Self::Domain(e) => (
                StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e,
            ),
            Self::BadRequest(m) => (StatusCode::BAD_REQUEST, Error::validation("body", m)),
            Self::PayloadTooLarge => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Error::validation("body", "the request body is too large"),
            ),
            Self::UnsupportedMediaType => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                Error::validation("body", "send the body as application/json"),
            ),
            Self::Forbidden(m) => (StatusCode::FORBIDDEN, Error::unauthenticated(m)),
            Self::MethodNotAllowed(_) => (
                StatusCode::METHOD_NOT_ALLOWED,
                Error::not_found("method not allowed here"),
            ),
        }
    }
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self::Domain(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let allow = match &self {
            Self::MethodNotAllowed(allow) => allow.clone(),
            _ => None,
        };
        let (status, err) = self.parts();
        let detail = if status.is_server_error() {
            // The log has the chain; the caller gets no internals.
            tracing::error!(error = %err.log_chain(), "request failed");
            "something went wrong on our side; try again later".to_owned()
        } else {
            err.message().to_owned()
        };
        let errors = match err.kind() {
            ErrorKind::Validation { fields } if status == StatusCode::UNPROCESSABLE_ENTITY => {
                fields.clone()
            }
            _ => Vec::new(),
        };
        let problem = Problem {
            type_uri: format!("https://kpi-integrations.dev/problems/{}", err.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: err.code(),
            errors,
            request_id: request_id::current(),
        };
        let mut response = (status, axum::Json(problem)).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let Some(allow) = allow {
            headers.insert(header::ALLOW, allow);
        }
        if let ErrorKind::RateLimited {
            retry_after: Some(wait),
        } = err.kind()
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            headers.insert(header::RETRY_AFTER, v);
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError::Domain(Error::not_found("no such route"))
}

/// The body-limit layer answers 413, and the router 405, with empty bodies;
/// give them problem documents.
pub async fn problem_for_bare_errors(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let response = next.run(request).await;
    let status = response.status();
    let is_problem = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/problem+json"));
    if status == StatusCode::PAYLOAD_TOO_LARGE && !is_problem {
        return ApiError::PayloadTooLarge.into_response();
    }
    if status == StatusCode::METHOD_NOT_ALLOWED && !is_problem {
        let allow = response.headers().get(header::ALLOW).cloned();
        return ApiError::MethodNotAllowed(allow).into_response();
    }
    response
}
