//! The pages' own sessions, made after a person signs in at the dashboard's
//! identity provider (OpenID Connect, in `kpi-ui`).
//!
//! The browser holds only a random session id, in an HttpOnly cookie
//! (`__Host-kpi_session` over https); the store holds the SHA-256 of that id
//! with who the person is and the session's CSRF token, until the session
//! expires. No provider token is kept anywhere: the claims were read from the
//! verified ID token once, at sign-in. Sign-out deletes the record, so a copied
//! cookie stops working with it.

use chrono::{DateTime, Duration, Utc};
use kpi_core::{Error, Principal, Result};
use serde::{Deserialize, Serialize};

use crate::state::AppState;

/// How long a session lasts. Short: when it ends the page sends the browser
/// to the identity provider, which signs it in again without a form while its
/// own session lasts.
pub const SESSION_LIFETIME: Duration = Duration::hours(1);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PageSession {
    pub principal: Principal,
    /// What the pages send back in `X-CSRF-Token` on writes.
    pub csrf: String,
    pub expires_at: DateTime<Utc>,
}

/// Whether a session cookie holds one of our session ids (43 characters of
/// base64url) rather than a token (a JWT has dots).
pub fn is_session_id(value: &str) -> bool {
    value.len() == 43
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The store's key of a session id (or of any browser-held secret).
pub fn store_key(kind: &str, secret: &str) -> String {
    format!("{kind}#{}", kpi_providers::oauth::sha256_b64(secret))
}

/// Starts a session for `principal`: the id to put in the cookie.
pub async fn create(state: &AppState, principal: Principal) -> Result<(String, PageSession)> {
    let id = kpi_providers::oauth::random_token(32)?;
    let session = PageSession {
        principal,
        csrf: kpi_providers::oauth::random_token(32)?,
        expires_at: state.clock.now() + SESSION_LIFETIME,
    };
    let body = serde_json::to_value(&session)
        .map_err(|e| Error::internal("cannot encode a session").with_source(e))?;
    state
        .store
        .put_ephemeral(&store_key("session", &id), &body, session.expires_at)
        .await?;
    Ok((id, session))
}

/// The live session a cookie names, if any.
pub async fn find(state: &AppState, id: &str) -> Result<Option<PageSession>> {
    if !is_session_id(id) {
        return Ok(None);
    }
    let now = state.clock.now();
    let Some(body) = state
        .store
        .get_ephemeral(&store_key("session", id), now)
        .await?
    else {
        return Ok(None);
    };
    let session: PageSession = serde_json::from_value(body)
        .map_err(|e| Error::internal("a stored session is unreadable").with_source(e))?;
    Ok((session.expires_at > now).then_some(session))
}

/// Ends a session (idempotent).
pub async fn end(state: &AppState, id: &str) -> Result<()> {
    if is_session_id(id) {
        state
            .store
            .delete_ephemeral(&store_key("session", id))
            .await?;
    }
    Ok(())
}

/// The `Set-Cookie` value of a session cookie (`max_age` 0 clears it).
pub fn cookie(state: &AppState, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; Path=/; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        state
            .config
            .cookie_name(crate::http::extract::SESSION_COOKIE),
        state.config.cookie_secure_attr()
    )
}
