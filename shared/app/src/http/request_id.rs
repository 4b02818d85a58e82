//! A request id on every API request: API Gateway's on Lambda (put in the
//! request's extensions as [`RequestId`] by the Lambda wiring), a fresh one in
//! the dev server. It is answered in the `x-request-id` header, written into
//! problem documents, carried by the sync messages a request queues, and set
//! on the request's span so every log line of the request has it.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use tracing::Instrument as _;

pub const HEADER: &str = "x-request-id";

/// The id a deployment assigned to a request before the router saw it.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled on this task, if any.
pub fn current() -> Option<String> {
    CURRENT.try_with(Clone::clone).ok()
}

fn well_formed(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic())
}

/// The path as logged: an email link's token names its reader's address, so
/// it is left out.
fn loggable_path(path: &str) -> &str {
    for (prefix, shown) in [
        ("/v1/unsubscribe/", "/v1/unsubscribe/{token}"),
        ("/v1/confirm/", "/v1/confirm/{token}"),
    ] {
        if path.starts_with(prefix) {
            return shown;
        }
    }
    path
}

pub async fn middleware(request: Request, next: Next) -> Response {
    let id = request
        .extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .filter(|id| well_formed(id))
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // The path only: query strings can hold OAuth codes and states.
    let span = tracing::info_span!(
        "request",
        request_id = %id,
        method = %request.method(),
        path = %loggable_path(request.uri().path()),
    );
    let mut response = CURRENT
        .scope(id.clone(), next.run(request).instrument(span.clone()))
        .await;
    // A request one of the early routers declined is answered, and logged,
    // by the configured routes.
    if !super::early::is_declined(&response) {
        span.in_scope(|| tracing::info!(status = response.status().as_u16(), "request answered"));
    }
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(HEADER, v);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_tokens_stay_out_of_the_log() {
        assert_eq!(
            loggable_path("/v1/unsubscribe/u1.eyJhIjoiYUBiLmNvIn0.sig"),
            "/v1/unsubscribe/{token}"
        );
        assert_eq!(loggable_path("/v1/confirm/c1.x.y"), "/v1/confirm/{token}");
        assert_eq!(loggable_path("/v1/workspaces/demo"), "/v1/workspaces/demo");
    }
}
