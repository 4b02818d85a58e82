//! Errors as RFC 9457 problem documents (`application/problem+json`), mapped from
//! the one error taxonomy. Internal detail goes to the log, never the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::error::{Error, ErrorKind};
use serde::Serialize;

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
}

/// The error type of every handler: the taxonomy's errors, plus the few
/// statuses that only HTTP has (400 for unparseable input, 413, 415).
#[derive(Debug)]
pub struct ApiError(pub Error);

impl ApiError {
    /// 400: the input could not even be parsed.
    pub fn bad_request(message: &str) -> Self {
        Self(Error::validation("body", message).with_source(HttpStatus(400)))
    }
    pub fn payload_too_large() -> Self {
        Self(
            Error::validation("body", "the request body is too large").with_source(HttpStatus(413)),
        )
    }
    pub fn unsupported_media_type() -> Self {
        Self(
            Error::validation("body", "send the body as application/json")
                .with_source(HttpStatus(415)),
        )
    }

    fn status_override(&self) -> Option<StatusCode> {
        use std::error::Error as _;
        self.0
            .source()
            .and_then(|s| s.downcast_ref::<HttpStatus>())
            .and_then(|s| StatusCode::from_u16(s.0).ok())
    }
}

/// Marks an error whose HTTP status differs from its kind's (parse failures).
#[derive(Debug)]
struct HttpStatus(u16);

impl std::fmt::Display for HttpStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HTTP {}", self.0)
    }
}

impl std::error::Error for HttpStatus {}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status_override().unwrap_or_else(|| {
            StatusCode::from_u16(self.0.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
        });
        let err = self.0;
        let detail = if status.is_server_error() {
            // The log has the chain; the caller gets no internals.
            tracing::error!(error = %err.log_chain(), "request failed");
            "something went wrong on our side; try again later".to_owned()
        } else {
            err.message().to_owned()
        };
        let errors = match err.kind() {
            ErrorKind::Validation { fields } if status.as_u16() == 422 => fields.clone(),
            _ => Vec::new(),
        };
        let problem = Problem {
            type_uri: format!("https://kpi-integrations.dev/problems/{}", err.code()),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: err.code(),
            errors,
        };
        let mut response = (status, axum::Json(problem)).into_response();
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        if let ErrorKind::RateLimited {
            retry_after: Some(wait),
        } = err.kind()
            && let Ok(v) = HeaderValue::from_str(&wait.as_secs().max(1).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
        response
    }
}

pub async fn not_found() -> ApiError {
    ApiError(Error::not_found("no such route"))
}

/// The body-limit layer answers 413 with an empty body; give it a problem document.
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
        return ApiError::payload_too_large().into_response();
    }
    if status == StatusCode::METHOD_NOT_ALLOWED && !is_problem {
        let mut r = ApiError(Error::not_found("method not allowed here")).into_response();
        *r.status_mut() = StatusCode::METHOD_NOT_ALLOWED;
        if let Some(allow) = response.headers().get(header::ALLOW) {
            r.headers_mut().insert(header::ALLOW, allow.clone());
        }
        return r;
    }
    response
}
