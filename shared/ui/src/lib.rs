//! The pages people see, rendered on the server: a workspace's integrations
//! (cards, connect, settings), its alert rules and report schedule, and the
//! operators' dashboard of sync jobs. Every page reads without JavaScript; the
//! embedded script (no third-party code) adds the modal dialogs, toasts,
//! polling and the writes, which go to the JSON API with the CSRF token.
//!
//! Sign-in is this service's own session, made after the person signs in at
//! the dashboard's identity provider (`signin`, OpenID Connect).
//!
//! The dev server mounts [`router`] beside the API; on AWS the `ui` function
//! serves [`ui_function`].

mod admin;
mod assets;
mod chart;
mod describe;
mod integrations;
mod page;
mod settings;
mod signin;
mod templates;

use axum::Router;
use axum::routing::get;
use kpi_app::AppState;

pub use page::SECURITY_HEADERS;

/// Every route of [`router`], as `template.yaml` must route them to the `ui`
/// function (checked by the template test).
pub const ROUTES: [(&str, &str); 11] = [
    ("GET", "/settings/integrations"),
    ("GET", "/settings/alerts"),
    ("GET", "/settings/reports"),
    ("GET", "/admin/sync-jobs"),
    ("GET", "/admin/sync-jobs/{job}"),
    ("GET", "/assets/{name}"),
    ("GET", "/favicon.ico"),
    ("GET", "/auth/login"),
    ("GET", "/auth/callback"),
    ("POST", "/auth/logout"),
    ("GET", "/auth/signed-out"),
];

/// The page routes and their assets.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/settings/integrations", get(integrations::page))
        .route("/settings/alerts", get(settings::alerts_page))
        .route("/settings/reports", get(settings::reports_page))
        .route("/admin/sync-jobs", get(admin::jobs_page))
        .route("/admin/sync-jobs/{job}", get(admin::job_page))
        .route("/assets/{name}", get(assets::serve))
        // Browsers ask for it on every page, ours or not (the sandbox's).
        .route("/favicon.ico", get(assets::favicon))
        // Sign-in at the dashboard's identity provider (OpenID Connect).
        .route("/auth/login", get(signin::login))
        .route("/auth/callback", get(signin::callback))
        .route("/auth/logout", axum::routing::post(signin::logout))
        .route("/auth/signed-out", get(signin::signed_out))
        .layer(axum::middleware::from_fn(page::security_headers))
}

/// What the `ui` function serves: the pages, with the shared defaults.
pub fn ui_function() -> Router<AppState> {
    kpi_app::http::with_defaults(router())
}
