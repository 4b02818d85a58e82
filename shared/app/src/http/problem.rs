//! Errors as RFC 9457 problem documents (`application/problem+json`), mapped from
//! the one error taxonomy. Internal detail goes to the log, never the body.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::error::{Error, ErrorKind};
use serde::Serialize;

pub const CONTENT_TYPE: &str = "application/problem+json";

#[derive(Debug, Serialize)]
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

/// The error type of every handler.
#[derive(Debug)]
pub struct ApiError(pub Error);

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        Self(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let err = self.0;
        let status =
            StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let detail = if status.is_server_error() {
            // The log has the chain; the caller gets no internals.
            tracing::error!(error = %err.log_chain(), "request failed");
            "something went wrong on our side; try again later".to_owned()
        } else {
            err.message().to_owned()
        };
        let errors = match err.kind() {
            ErrorKind::Validation { fields } => fields.clone(),
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
