//! HTTP routers. Each route group is its own router so a Lambda serves only its
//! group while the dev server mounts them all in one app.

pub mod problem;
mod providers;
mod system;

use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;

use crate::state::AppState;

/// Largest request body any route accepts; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Health and the provider catalogue: public, read-only.
pub fn system_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", axum::routing::get(system::healthz))
        .route("/v1/providers", axum::routing::get(providers::list))
}

/// Everything, as the dev server serves it.
pub fn app(state: AppState) -> Router {
    with_defaults(system_router()).with_state(state)
}

/// The layers every deployment of a router shares: body limit and a problem
/// document for unknown routes.
pub fn with_defaults(router: Router<AppState>) -> Router<AppState> {
    router
        .fallback(problem::not_found)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
}
