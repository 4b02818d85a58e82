//! What every page shares: who is looking (the session cookie), the CSRF token
//! the page's script echoes on writes, error pages, and the response headers
//! that keep the pages to their own origin (a strict Content-Security-Policy:
//! no inline script, no third-party anything).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kpi_app::AppState;
use kpi_app::http::extract::{CSRF_COOKIE, cookie, session_cookie};
use kpi_core::{Error, Principal, WorkspaceId, WorkspaceScope};
use serde::Serialize;

use crate::templates;

/// Sent with every page and asset. Scripts and styles only from this origin
/// (so an injected `<script>` or `style=` does nothing), no framing, no
/// plugins, forms and fetches only back here.
pub const SECURITY_HEADERS: [(&str, &str); 5] = [
    (
        "content-security-policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),
    ("x-frame-options", "DENY"),
    ("cross-origin-opener-policy", "same-origin"),
];

pub async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    for (name, value) in SECURITY_HEADERS {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

/// The signed-in person looking at a page, and the CSRF token their page
/// sends back on writes (the API compares it with the `kpi_csrf` cookie).
pub struct Viewer {
    pub principal: Principal,
    pub csrf: String,
    /// The request carried no CSRF cookie: the page sets this one.
    csrf_is_new: bool,
}

impl FromRequestParts<AppState> for Viewer {
    type Rejection = PageError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, PageError> {
        let sign_in = || PageError::sign_in(parts, state);
        let token = session_cookie(parts, state)
            .map_err(|_| sign_in())?
            .ok_or_else(sign_in)?;
        if kpi_app::session::is_session_id(token) {
            let session = kpi_app::session::find(state, token)
                .await
                .map_err(PageError::Domain)?
                .ok_or_else(sign_in)?;
            return Ok(Self {
                principal: session.principal,
                csrf: session.csrf,
                csrf_is_new: false,
            });
        }
        let principal = state.auth.verify(token).await.map_err(|_| sign_in())?;
        let existing = cookie(parts, &state.config.cookie_name(CSRF_COOKIE))
            .filter(|c| (16..=128).contains(&c.len()))
            .map(str::to_owned);
        let (csrf, csrf_is_new) = match existing {
            Some(c) => (c, false),
            None => (
                kpi_providers::oauth::random_token(32).map_err(PageError::Domain)?,
                true,
            ),
        };
        Ok(Self {
            principal,
            csrf,
            csrf_is_new,
        })
    }
}

impl Viewer {
    /// The workspace a page is about, when the viewer may manage it; any
    /// other (or a malformed id) is not found, as in the API.
    pub fn scope(&self, ws: &str) -> Result<WorkspaceScope, PageError> {
        let id = WorkspaceId::parse(ws).map_err(|_| PageError::NotFound)?;
        self.principal
            .scope_for(&id)
            .map_err(|_| PageError::NotFound)
    }

    /// A rendered page, with the CSRF cookie when the request had none.
    pub fn respond(
        &self,
        state: &AppState,
        template: &str,
        context: impl Serialize,
    ) -> Result<Response, PageError> {
        let body = templates::render(template, context).map_err(PageError::Domain)?;
        let mut response = Html(body).into_response();
        let headers = response.headers_mut();
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.csrf_is_new {
            let value = format!(
                "{}={}; Path=/; Max-Age=43200; SameSite=Strict{}",
                state.config.cookie_name(CSRF_COOKIE),
                self.csrf,
                state.config.cookie_secure_attr()
            );
            if let Ok(v) = HeaderValue::from_str(&value) {
                headers.append(header::SET_COOKIE, v);
            }
        }
        Ok(response)
    }
}

/// What the navigation and layout of every page need.
#[derive(Serialize)]
pub struct Frame {
    pub title: String,
    /// `integrations`, `alerts`, `reports` or `admin`.
    pub section: &'static str,
    pub workspace: Option<String>,
    /// The workspace the navigation links to: the page's, else the viewer's
    /// first (an operator on the dashboard).
    pub nav_workspace: Option<String>,
    pub workspaces: Vec<String>,
    pub is_admin: bool,
    pub csrf: String,
}

impl Frame {
    pub fn new(viewer: &Viewer, title: &str, section: &'static str, ws: Option<&str>) -> Self {
        Self {
            title: title.to_owned(),
            section,
            workspace: ws.map(str::to_owned),
            nav_workspace: ws
                .map(str::to_owned)
                .or_else(|| viewer.principal.workspaces.first().map(ToString::to_string)),
            workspaces: viewer
                .principal
                .workspaces
                .iter()
                .map(ToString::to_string)
                .collect(),
            is_admin: viewer.principal.platform_admin,
            csrf: viewer.csrf.clone(),
        }
    }
}

/// A page that could not be shown, as an HTML page of its own.
#[derive(Debug)]
pub enum PageError {
    /// No valid session: sign in through the dashboard first.
    SignIn,
    /// No valid session, and sign-in is ours to start: there, then back.
    SignInAt(String),
    /// Not there, or not the viewer's (the two look the same).
    NotFound,
    /// The viewer did not say which workspace.
    PickWorkspace(Vec<String>, &'static str),
    Domain(Error),
}

impl PageError {
    /// What a page answers a browser without a session: the way to sign in
    /// and back when sign-in is configured, else the page that says so.
    pub fn sign_in(parts: &Parts, state: &AppState) -> Self {
        Self::sign_in_with(parts, state.config.oidc.is_some())
    }

    /// [`PageError::sign_in`], where `at_provider` says whether sign-in at
    /// the identity provider is configured.
    pub fn sign_in_with(parts: &Parts, at_provider: bool) -> Self {
        if !at_provider {
            return Self::SignIn;
        }
        let back = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/settings/integrations");
        Self::SignInAt(format!(
            "/auth/login?return_to={}",
            percent_encoding::utf8_percent_encode(back, percent_encoding::NON_ALPHANUMERIC)
        ))
    }
}

impl From<Error> for PageError {
    fn from(e: Error) -> Self {
        if e.is_not_found() {
            Self::NotFound
        } else {
            Self::Domain(e)
        }
    }
}

#[derive(Serialize, Default)]
struct Message<'a> {
    title: &'a str,
    detail: String,
    workspaces: Vec<String>,
    path: &'static str,
    sign_in: bool,
    /// A way on: (path, words).
    link: Option<&'a str>,
    link_text: &'a str,
    /// Where the browser goes next by itself (another site: the identity
    /// provider), with a link for those that do not.
    onward: Option<&'a str>,
}

/// A page that sends the browser on to `url` (another site) by itself. A
/// redirect would not do after a form: the pages' `form-action 'self'`
/// stops a form's redirect to another origin.
pub fn onward_page(title: &str, detail: &str, url: &str) -> Response {
    render_message(
        StatusCode::OK,
        &Message {
            title,
            detail: detail.to_owned(),
            onward: Some(url),
            ..Message::default()
        },
    )
}

/// A page of one message, with an optional link (path, words).
pub fn message_page(
    status: StatusCode,
    title: &str,
    detail: &str,
    link: Option<(&str, &str)>,
) -> Response {
    render_message(
        status,
        &Message {
            title,
            detail: detail.to_owned(),
            link: link.map(|l| l.0),
            link_text: link.map_or("", |l| l.1),
            ..Message::default()
        },
    )
}

fn render_message(status: StatusCode, message: &Message<'_>) -> Response {
    let body = templates::render("message.html", message).unwrap_or_else(|_| {
        "<!doctype html><html lang=\"en\"><title>Error</title><p>Something went wrong.</p></html>".into()
    });
    let mut response = (status, Html(body)).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            Self::SignInAt(location) => {
                let mut response = StatusCode::SEE_OTHER.into_response();
                if let Ok(v) = HeaderValue::from_str(&location) {
                    response.headers_mut().insert(header::LOCATION, v);
                }
                response
                    .headers_mut()
                    .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                return response;
            }
            Self::SignIn => (
                StatusCode::UNAUTHORIZED,
                Message {
                    title: "Sign in first",
                    detail: "This page belongs to your KPI dashboard account. Sign in to the dashboard, then open it again.".into(),
                    workspaces: Vec::new(),
                    path: "",
                    sign_in: true,
                    ..Message::default()
                },
            ),
            Self::NotFound => (
                StatusCode::NOT_FOUND,
                Message {
                    title: "Page not found",
                    detail: "There is no such page, or it is not yours to see.".into(),
                    workspaces: Vec::new(),
                    path: "",
                    sign_in: false,
                    ..Message::default()
                },
            ),
            Self::PickWorkspace(workspaces, path) => (
                StatusCode::OK,
                Message {
                    title: "Choose a workspace",
                    detail: "Which workspace's settings do you want to see?".into(),
                    workspaces,
                    path,
                    sign_in: false,
                    ..Message::default()
                },
            ),
            Self::Domain(e) => {
                let status = StatusCode::from_u16(e.http_status())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                let detail = if status.is_server_error() {
                    tracing::error!(error = %e.log_chain(), "page failed");
                    "Something went wrong on our side. Try again in a minute.".to_owned()
                } else {
                    e.message().to_owned()
                };
                (
                    status,
                    Message {
                        title: "This page could not be shown",
                        detail,
                        workspaces: Vec::new(),
                        path: "",
                        sign_in: false,
                        ..Message::default()
                    },
                )
            }
        };
        render_message(status, &message)
    }
}

/// The workspace of a `?workspace=` page: the one named, or the viewer's only
/// one; with several and none named, a page to pick one.
pub fn workspace_param(
    viewer: &Viewer,
    named: Option<&str>,
    path: &'static str,
) -> Result<(String, WorkspaceScope), PageError> {
    let ws = match named {
        Some(ws) => ws.to_owned(),
        None => match viewer.principal.workspaces.as_slice() {
            [only] => only.to_string(),
            many => {
                return Err(PageError::PickWorkspace(
                    many.iter().map(ToString::to_string).collect(),
                    path,
                ));
            }
        },
    };
    let scope = viewer.scope(&ws)?;
    Ok((ws, scope))
}
