//! HTTP routers. Each route group is its own router so a Lambda serves only its
//! group, while the dev server mounts them all in one app.

pub mod admin;
pub mod alerts;
pub mod cors;
pub mod dev;
pub mod early;
pub mod extract;
pub mod integrations;
pub mod kpis;
pub mod notifications;
pub mod oauth;
pub mod openapi;
pub mod problem;
mod providers;
pub mod reports;
pub mod request_id;
pub mod return_to;
mod system;
pub mod unsubscribe;
pub mod views;
pub mod webhooks;

use axum::Router;
use axum::routing::get;
use tower_http::limit::RequestBodyLimitLayer;

use crate::state::AppState;

/// Largest request body any route accepts; larger ones get 413.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Health, the provider catalogue and the API document: public, read-only.
pub fn system_router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(system::healthz))
        .route("/openapi.json", get(openapi::document))
        .merge(
            Router::new()
                .route("/v1/providers", get(providers::list))
                .layer(axum::middleware::from_fn(cors::middleware)),
        )
}

/// The workspace API: integrations, jobs, KPIs.
pub fn api_router() -> Router<AppState> {
    use integrations as i;
    Router::new()
        .route(
            "/v1/workspaces/{ws}/integrations",
            get(i::list).post(i::create),
        )
        .route(
            "/v1/workspaces/{ws}/integrations/{id}",
            get(i::get).patch(i::patch).delete(i::delete),
        )
        .route(
            "/v1/workspaces/{ws}/integrations/{id}/options",
            get(i::options),
        )
        .route(
            "/v1/workspaces/{ws}/integrations/{id}/health",
            get(i::health),
        )
        .route(
            "/v1/workspaces/{ws}/integrations/{id}/status",
            get(i::status),
        )
        .route(
            "/v1/workspaces/{ws}/integrations/{id}/sync",
            axum::routing::post(i::sync),
        )
        .route("/v1/workspaces/{ws}/integrations/{id}/jobs", get(i::jobs))
        .route("/v1/workspaces/{ws}/kpis", get(kpis::query))
        .route(
            "/v1/workspaces/{ws}/notifications",
            get(notifications::get).put(notifications::put),
        )
        .route(
            "/v1/workspaces/{ws}/alerts",
            get(alerts::list).post(alerts::create),
        )
        .route(
            "/v1/workspaces/{ws}/reports",
            get(reports::get).put(reports::put),
        )
        .route(
            "/v1/workspaces/{ws}/alerts/{id}",
            get(alerts::get).patch(alerts::patch).delete(alerts::delete),
        )
        .route(
            "/v1/workspaces/{ws}/alerts/{id}/events",
            get(alerts::events),
        )
        .route(
            "/v1/workspaces/{ws}/alerts/{id}/test",
            axum::routing::post(alerts::test),
        )
        .route(
            "/v1/workspaces/{ws}/reports/preview",
            axum::routing::post(reports::preview),
        )
        .route(
            "/v1/workspaces/{ws}/suppressions",
            get(notifications::suppressions),
        )
        .route(
            "/v1/workspaces/{ws}/suppressions/{email}",
            axum::routing::delete(notifications::lift),
        )
        .layer(axum::middleware::from_fn(cors::middleware))
}

/// OAuth start and callback.
pub fn oauth_router() -> Router<AppState> {
    Router::new()
        .route("/v1/oauth/{provider}/start", get(oauth::start))
        .route("/v1/oauth/{provider}/callback", get(oauth::callback))
}

/// Operators: sync jobs, queues, retry, redrive.
pub fn admin_router() -> Router<AppState> {
    Router::new()
        .route("/v1/admin/sync-jobs", get(admin::jobs))
        .route("/v1/admin/sync-jobs/{job}", get(admin::job))
        .route(
            "/v1/admin/sync-jobs/{job}/retry",
            axum::routing::post(admin::retry),
        )
        .route("/v1/admin/queues", get(admin::queues))
        .route(
            "/v1/admin/dlq/{provider}/redrive",
            axum::routing::post(admin::redrive),
        )
        .layer(axum::middleware::from_fn(cors::middleware))
}

/// One-click unsubscribe and address confirmation (signed links, no session).
pub fn unsubscribe_router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/unsubscribe/{token}",
            get(unsubscribe::show).post(unsubscribe::unsubscribe),
        )
        .route(
            "/v1/confirm/{token}",
            get(unsubscribe::show_confirmation).post(unsubscribe::confirm),
        )
}

/// Provider webhooks (signed by the provider, no session), one route for
/// every provider that sends them: the registry finds the provider by its
/// descriptor's webhook path.
pub fn webhook_router() -> Router<AppState> {
    Router::new()
        .route(
            "/v1/webhooks/{provider}",
            get(webhooks::check).post(webhooks::delivery),
        )
        .route(
            "/v1/webhooks/{provider}/{integration}",
            axum::routing::post(webhooks::integration_delivery),
        )
}

/// Development sign-in (dev server only).
pub fn dev_router() -> Router<AppState> {
    Router::new().route("/dev/login", get(dev::login))
}

/// Every route group of every function, as one app (the dev server adds the
/// dev and sandbox routes around it).
pub fn all_routes() -> Router<AppState> {
    system_router()
        .merge(api_router())
        .merge(oauth_router())
        .merge(admin_router())
        .merge(unsubscribe_router())
        .merge(webhook_router())
}

/// The layers every deployment of a router shares: body limit, problem
/// documents for unknown routes and bare errors, the request id and its span.
pub fn with_defaults(router: Router<AppState>) -> Router<AppState> {
    router
        .fallback(problem::not_found)
        .layer(RequestBodyLimitLayer::new(MAX_BODY_BYTES))
        .layer(axum::middleware::from_fn(problem::problem_for_bare_errors))
        .layer(axum::middleware::from_fn(request_id::middleware))
}

/// What the `api` function serves: health, providers, the API document, the
/// workspace API and (until the admin dashboard has its own function) the
/// operators' API.
pub fn api_function() -> Router<AppState> {
    with_defaults(
        system_router()
            .merge(api_router())
            .merge(admin_router())
            .merge(unsubscribe_router()),
    )
}

/// What the `webhook` function serves.
pub fn webhook_function() -> Router<AppState> {
    with_defaults(webhook_router())
}

/// What the `oauth` function serves.
pub fn oauth_function() -> Router<AppState> {
    with_defaults(oauth_router())
}
