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

/// What the `ui` function answers before its configuration (the application
/// secret) is ready (`kpi_app::http::early`): the assets, which are part of
/// the build, and a page asked for without a session cookie when sign-in at
/// the identity provider is on by the environment alone (`env`: the
/// configuration from the environment, without the secret's values; its
/// `KPI_OIDC_ISSUER` and `KPI_OIDC_CLIENT_ID`, which the secret cannot
/// override): the way to sign in, as the pages give it. Without sign-in in
/// the environment the secret may still turn it on, so such a page waits.
pub fn early(env: Option<kpi_app::Config>) -> Router {
    let session_cookie = env
        .filter(|c| c.oidc.is_some())
        .map(|c| c.cookie_name(kpi_app::http::extract::SESSION_COOKIE));
    let mut router = Router::new()
        .route("/assets/{name}", get(assets::serve))
        .route("/favicon.ico", get(assets::favicon));
    if let Some(cookie) = session_cookie {
        let sign_in = move |parts: axum::http::request::Parts| {
            let cookie = cookie.clone();
            async move {
                if kpi_app::http::extract::cookies(&parts, &cookie).is_empty() {
                    axum::response::IntoResponse::into_response(page::PageError::sign_in_with(
                        &parts, true,
                    ))
                } else {
                    kpi_app::http::early::declined_now()
                }
            }
        };
        for (_, path) in ROUTES.iter().filter(|(_, p)| is_page(p)) {
            router = router.route(
                path,
                get(sign_in.clone()).fallback(kpi_app::http::early::declined),
            );
        }
    }
    kpi_app::http::early::layers(router.layer(axum::middleware::from_fn(page::security_headers)))
}

/// The routes whose handlers need a signed-in viewer before anything else.
fn is_page(path: &str) -> bool {
    path.starts_with("/settings/") || path.starts_with("/admin/")
}

/// What the `ui` function serves: the pages, with the shared defaults.
pub fn ui_function() -> Router<AppState> {
    kpi_app::http::with_defaults(router())
}
