//! Request extractors that turn every kind of bad input into a problem document:
//! identity (bearer or cookie, with a CSRF check for cookie-authenticated writes),
//! strict JSON bodies and typed query strings.

use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::{Method, header};
use kpi_core::error::FieldError;
use kpi_core::{Error, IntegrationId, Principal, WorkspaceId, WorkspaceScope};
use serde::de::DeserializeOwned;
use subtle::ConstantTimeEq as _;

use super::problem::ApiError;
use crate::state::AppState;

pub const SESSION_COOKIE: &str = "kpi_session";
pub const CSRF_COOKIE: &str = "kpi_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

/// Every value of cookie `name` in a request's `Cookie` headers.
pub fn cookies<'a>(parts: &'a Parts, name: &str) -> Vec<&'a str> {
    parts
        .headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .collect()
}

/// The value of cookie `name`, when the request carries exactly one.
pub fn cookie<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    match cookies(parts, name).as_slice() {
        [one] => Some(one),
        _ => None,
    }
}

/// The session token of a cookie-authenticated request. Two session cookies
/// mean one was planted (by a sibling host or a plain-http page): refused.
pub fn session_cookie<'a>(parts: &'a Parts, state: &AppState) -> Result<Option<&'a str>, ApiError> {
    match cookies(parts, &state.config.cookie_name(SESSION_COOKIE)).as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => Err(Error::unauthenticated(
            "the request carries two session cookies; clear this site's cookies and sign in again",
        )
        .into()),
    }
}

pub fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// The authenticated caller.
pub struct Auth(pub Principal);

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let bearer = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let (token, from_cookie) = match bearer {
            Some(t) => (t, false),
            None => match session_cookie(parts, state)? {
                Some(t) => (t, true),
                None => {
                    return Err(Error::unauthenticated(
                        "sign in: send Authorization: Bearer <token>",
                    )
                    .into());
                }
            },
        };
        let safe = matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS);
        let header = parts.headers.get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        if from_cookie && crate::session::is_session_id(token) {
            // A page session: the CSRF token is the session's own.
            let session = crate::session::find(state, token)
                .await?
                .ok_or_else(|| Error::unauthenticated("the session has ended; sign in again"))?;
            if !safe && !header.is_some_and(|h| constant_time_eq(h, &session.csrf)) {
                return Err(Error::unauthenticated(
                    "missing or wrong CSRF token for a cookie-authenticated request",
                )
                .into());
            }
            return Ok(Auth(session.principal));
        }
        let principal = state.auth.verify(token).await?;
        // A browser sends cookies on cross-site requests too: a state-changing
        // request authenticated by cookie must prove it comes from our pages
        // (double-submit token: header equal to the CSRF cookie).
        if from_cookie && !safe {
            let expected = cookie(parts, &state.config.cookie_name(CSRF_COOKIE));
            let ok = matches!((header, expected), (Some(h), Some(c)) if !c.is_empty() && constant_time_eq(h, c));
            if !ok {
                return Err(Error::unauthenticated(
                    "missing or wrong CSRF token for a cookie-authenticated request",
                )
                .into());
            }
        }
        Ok(Auth(principal))
    }
}

/// A workspace named in a URL, authorised for the caller. Malformed and foreign
/// workspaces both answer 404.
pub fn workspace_scope(principal: &Principal, ws: &str) -> Result<WorkspaceScope, ApiError> {
    let id = WorkspaceId::parse(ws).map_err(|_| Error::not_found("workspace not found"))?;
    Ok(principal.scope_for(&id)?)
}

/// An integration id from a URL; a malformed one is simply not found.
pub fn integration_id(raw: &str) -> Result<IntegrationId, ApiError> {
    IntegrationId::parse(raw).map_err(|_| Error::not_found("integration not found").into())
}

/// A JSON body: 415 without a JSON content type, 400 when it is not JSON, 422
/// with the failing field when it does not fit the expected shape (unknown
/// fields included, where the type denies them). Size is limited by the router.
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|m| {
                let m = m.trim();
                m.eq_ignore_ascii_case("application/json") || m.ends_with("+json")
            });
        if !is_json {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                    ApiError::PayloadTooLarge
                } else {
                    ApiError::Domain(Error::validation(
                        "body",
                        "the request body could not be read",
                    ))
                }
            })?;
        // Two steps, because serde_json reports some type mismatches (a number
        // where an enum goes) as syntax errors: first "is it JSON" (400), then
        // "does it fit" (422 naming the field).
        let value: serde_json::Value = serde_json::from_slice(&bytes)
            .map_err(|_| ApiError::bad_request("the body is not valid JSON"))?;
        match serde_path_to_error::deserialize::<_, T>(value) {
            Ok(parsed) => Ok(ApiJson(parsed)),
            Err(err) => {
                let path = err.path().to_string();
                let field = if path == "." { "body".to_owned() } else { path };
                let message = field_message(&err.into_inner().to_string());
                Err(Error::validation_fields(
                    format!("invalid field {field}: {message}"),
                    vec![FieldError { field, message }],
                )
                .into())
            }
        }
    }
}

/// serde's message without its " at line X column Y" suffix.
fn field_message(raw: &str) -> String {
    let cut = raw.find(" at line ").unwrap_or(raw.len());
    raw[..cut].chars().take(200).collect()
}

/// A typed query string; a value of the wrong type or an unknown parameter is a
/// 422 naming the parameter.
pub struct ApiQuery<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match Query::<T>::from_request_parts(parts, state).await {
            Ok(Query(v)) => Ok(ApiQuery(v)),
            Err(rejection) => {
                let text = rejection.body_text();
                let message = text
                    .strip_prefix("Failed to deserialize query string: ")
                    .unwrap_or(&text)
                    .chars()
                    .take(200)
                    .collect::<String>();
                Err(Error::validation_fields(
                    format!("invalid query: {message}"),
                    vec![FieldError {
                        field: "query".into(),
                        message,
                    }],
                )
                .into())
            }
        }
    }
}
