//! Development-only sign-in: `GET /dev/login?workspace=demo` sets a session
//! cookie holding an HS256 token for a normal user of that workspace
//! (`&operator=true` for an operator session instead). Mounted only by the dev
//! server, which refuses to run outside development, and answering only in
//! development; production refuses the dev secret at start-up.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::{Error, WorkspaceId};
use kpi_providers::oauth::random_token;
use serde::Deserialize;

use super::extract::{ApiQuery, CSRF_COOKIE, SESSION_COOKIE};
use super::problem::ApiError;
use super::return_to;
use crate::Environment;
use crate::state::AppState;

pub const DEV_USER: &str = "dev-user";
pub const DEV_EMAIL: &str = "dev@example.com";
pub const SESSION_HOURS: u64 = 12;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    workspace: String,
    return_to: Option<String>,
    /// `true`: an operator (`platform_admin`) session, for the admin API.
    operator: Option<bool>,
    /// The user's address (default `dev@example.com`): where previews go.
    email: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LoginParams>,
) -> Result<Response, ApiError> {
    if state.config.environment != Environment::Development {
        return Err(Error::not_found("no such route").into());
    }
    let ws = WorkspaceId::parse(&q.workspace)?;
    let token = state.auth.issue_dev_token(
        DEV_USER,
        std::slice::from_ref(&ws),
        q.operator.unwrap_or(false),
        Some(q.email.as_deref().unwrap_or(DEV_EMAIL)),
        Duration::from_secs(SESSION_HOURS * 3600),
    )?;
    let public = &state.config.public_url;
    let target = return_to::resolve(
        public,
        q.return_to
            .as_deref()
            .unwrap_or(&format!("/settings/integrations?workspace={ws}")),
    )?
    .to_string();
    let csrf = random_token(32)?;
    let max_age = SESSION_HOURS * 3600;
    let secure = state.config.cookie_secure_attr();
    let mut response = StatusCode::SEE_OTHER.into_response();
    let h = response.headers_mut();
    let bad = |_| ApiError::Domain(Error::internal("bad header"));
    h.insert(
        header::LOCATION,
        HeaderValue::from_str(&target).map_err(bad)?,
    );
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}",
            state.config.cookie_name(SESSION_COOKIE)
        ))
        .map_err(bad)?,
    );
    // Readable by the page's script, which echoes it in X-CSRF-Token.
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{}={csrf}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}",
            state.config.cookie_name(CSRF_COOKIE)
        ))
        .map_err(bad)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
