//! What a function answers before its configuration is ready.
//!
//! A Lambda's configuration waits for the application secret, a round trip
//! to Secrets Manager on every cold start. Some requests need nothing the
//! secret holds: a health probe; a webhook delivery whose signature header
//! is missing or malformed, or whose timestamp is outside the replay window;
//! an OAuth callback without a state, or whose state the store does not
//! hold. These routers answer them with what the environment gives (the
//! static provider catalogue, the store), exactly as the configured routes
//! would: those apply the same checks, in the same order. Anything else is
//! [`Declined`] and goes on to the configured routes.

use std::sync::Arc;

use axum::Router;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kpi_core::ports::Store;
use tower_http::limit::RequestBodyLimitLayer;

use super::{MAX_BODY_BYTES, oauth, problem, request_id, system, webhooks};

/// Marks a response of these routers that is no answer: the request needs
/// the configuration.
#[derive(Clone, Copy, Debug)]
pub struct Declined;

/// The request goes on to the configured routes.
pub async fn declined() -> Response {
    declined_now()
}

/// [`declined`], for a handler that has looked at the request.
pub fn declined_now() -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.extensions_mut().insert(Declined);
    response
}

/// Whether `response` is [`declined`]'s.
pub fn is_declined(response: &Response) -> bool {
    response.extensions().get::<Declined>().is_some()
}

/// The store a function builds from the environment alone, for answers that
/// need it before the configuration: `None` once the configuration is ready
/// (the configured routes answer then), or when the environment names none.
#[async_trait::async_trait]
pub trait StoreBeforeConfiguration: Send + Sync {
    async fn store(&self) -> Option<Arc<dyn Store>>;
}

/// The layers of [`super::with_defaults`], with every other request declined.
pub fn layers(router: Router) -> Router {
    router
        .fallback(declined)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
        .layer(axum::middleware::from_fn(request_id::middleware))
}

/// A function's that answers nothing early.
pub fn nothing() -> Router {
    Router::new().fallback(declined)
}

/// The `api` function's: its health probe.
pub fn api() -> Router {
    layers(Router::new().route("/healthz", get(system::healthz)))
}

/// The `webhook` function's: deliveries the provider's screen refuses.
pub fn webhook() -> Router {
    layers(
        Router::new()
            .route(
                "/v1/webhooks/{provider}",
                post(webhooks::screened).fallback(declined),
            )
            .route(
                "/v1/webhooks/{provider}/{integration}",
                post(webhooks::screened_for).fallback(declined),
            ),
    )
}

/// The `oauth` function's: callbacks with no state, or one the store does
/// not hold.
pub fn oauth(store: Arc<dyn StoreBeforeConfiguration>) -> Router {
    layers(
        Router::new()
            .route(
                "/v1/oauth/{provider}/callback",
                get(oauth::callback_refused_early).fallback(declined),
            )
            .with_state(store),
    )
}
