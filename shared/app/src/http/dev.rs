//! Development-only sign-in: `GET /dev/login?workspace=demo` sets a session
//! cookie holding an HS256 token for a demo user. Mounted only by the dev server
//! and only with a dev secret; production refuses that secret at start-up.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use kpi_core::{Error, WorkspaceId};
use kpi_providers::oauth::random_token;
use serde::Deserialize;

use super::extract::{ApiQuery, CSRF_COOKIE, SESSION_COOKIE};
use super::oauth::safe_return_to;
use super::problem::ApiError;
use crate::state::AppState;

pub const DEV_USER: &str = "dev-user";
pub const SESSION_HOURS: u64 = 12;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginParams {
    workspace: String,
    return_to: Option<String>,
}

pub async fn login(
    State(state): State<AppState>,
    ApiQuery(q): ApiQuery<LoginParams>,
) -> Result<Response, ApiError> {
    let ws = WorkspaceId::parse(&q.workspace)?;
    let token = state.auth.issue_dev_token(
        DEV_USER,
        std::slice::from_ref(&ws),
        true,
        Duration::from_secs(SESSION_HOURS * 3600),
    )?;
    let target = match q.return_to.as_deref() {
        Some(r) => safe_return_to(r)?,
        None => format!("/settings/integrations?workspace={ws}"),
    };
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
            "{SESSION_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"
        ))
        .map_err(bad)?,
    );
    // Readable by the page's script, which echoes it in X-CSRF-Token.
    h.append(
        header::SET_COOKIE,
        HeaderValue::from_str(&format!(
            "{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}"
        ))
        .map_err(bad)?,
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}
