//! OAuth connect flows for GA4 (Google) and Meta Ads, following RFC 9700.
//!
//! `start` (authenticated) stores a single-use state record — only the SHA-256 of
//! the 256-bit `state` value, bound to workspace, user, provider and to this
//! browser through a cookie whose hash is stored too — and redirects to the
//! provider. `callback` consumes the state atomically, checks the provider
//! (mix-up defence) and the browser binding, exchanges the code and stores the
//! credentials encrypted. Nothing is stored when any step fails.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kpi_core::provider::AuthMode;
use kpi_core::{Error, Provider};
use kpi_providers::oauth::sha256_b64;
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, Auth, constant_time_eq, integration_id, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use super::return_to;
use crate::service::{self, STATE_TTL_MINUTES};
use crate::state::AppState;

fn binding_cookie(state: &AppState, provider: Provider) -> String {
    state
        .config
        .scoped_cookie_name(&format!("kpi_oauth_{provider}"))
}

/// A known provider that connects with OAuth; anything else is not found.
fn oauth_provider(state: &AppState, raw: &str) -> Result<Provider, ApiError> {
    let provider = state
        .registry
        .parse("provider", raw)
        .map_err(|_| Error::not_found("unknown provider"))?;
    let descriptor = state.registry.descriptor(provider)?;
    if descriptor.auth != AuthMode::OAuth {
        return Err(Error::not_found(format!(
            "{} does not connect with OAuth",
            descriptor.display_name
        ))
        .into());
    }
    Ok(provider)
}

fn default_return_to(workspace: &str) -> String {
    format!("/settings/integrations?workspace={workspace}")
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct StartParams {
    workspace: String,
    /// Reconnect this integration instead of creating a new one.
    integration: Option<String>,
    /// Where to send the browser afterwards (a path on this site).
    return_to: Option<String>,
}

#[utoipa::path(get, path = "/v1/oauth/{provider}/start", operation_id = "startOAuth", tag = "oauth",
    params(("provider" = String, Path, description = "ga4 or meta_ads"), StartParams),
    responses((status = 303, description = "to the provider's consent page"), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 422, response = ProblemResponse), (status = 502, response = ProblemResponse)))]
pub async fn start(
    State(state): State<AppState>,
    Auth(principal): Auth,
    Path(provider): Path<String>,
    ApiQuery(q): ApiQuery<StartParams>,
) -> Result<Response, ApiError> {
    let provider = oauth_provider(&state, &provider)?;
    let scope = workspace_scope(&principal, &q.workspace)?;
    let public = &state.config.public_url;
    let return_to = q
        .return_to
        .as_deref()
        .map(|r| return_to::checked(public, r))
        .transpose()?;
    let integration = q.integration.as_deref().map(integration_id).transpose()?;
    let started =
        service::start_oauth(&state, &principal, &scope, provider, integration, return_to).await?;
    let binding = started.browser_binding;
    let cookie = format!(
        "{}={binding}; Path=/v1/oauth/{provider}; Max-Age={}; HttpOnly; SameSite=Lax{}",
        binding_cookie(&state, provider),
        STATE_TTL_MINUTES * 60,
        state.config.cookie_secure_attr()
    );
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::LOCATION,
        HeaderValue::from_str(&started.url)
            .map_err(|_| Error::internal("bad authorization URL"))?,
    );
    headers.insert(
        header::SET_COOKIE,
        HeaderValue::from_str(&cookie).map_err(|_| Error::internal("bad cookie"))?,
    );
    no_store(&mut response);
    Ok(response)
}

fn no_store(response: &mut Response) {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The provider's code and state must not leak through a Referer header.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A page for failures that cannot go back to the UI (no trusted return path).
fn error_page(status: StatusCode, message: &str) -> Response {
    let mut response = (
        status,
        Html(format!(
            "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Connection failed</title></head>\
             <body style=\"font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto\">\
             <h1>The connection could not be completed</h1><p id=\"message\">{}</p>\
             <p><a href=\"/settings/integrations\">Back to integrations</a></p></body></html>",
            message.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
        )),
    )
        .into_response();
    no_store(&mut response);
    response
}

/// Redirects to the UI path with the outcome in the query string, and expires
/// the binding cookie.
fn back_to_ui(
    state: &AppState,
    provider: Provider,
    return_to: &str,
    outcome: &[(&str, &str)],
) -> Response {
    // Checked again here, whatever the stored value: the answer is always an
    // absolute URL on this site.
    let public = &state.config.public_url;
    let mut url = return_to::resolve(public, return_to)
        .or_else(|_| return_to::resolve(public, "/settings/integrations"))
        .unwrap_or_else(|_| public.clone());
    {
        let mut pairs = url.query_pairs_mut();
        for (k, v) in outcome {
            pairs.append_pair(k, v);
        }
    }
    let target = url.to_string();
    let mut response = StatusCode::SEE_OTHER.into_response();
    if let Ok(v) = HeaderValue::from_str(&target) {
        response.headers_mut().insert(header::LOCATION, v);
    }
    let expired = format!(
        "{}=; Path=/v1/oauth/{provider}; Max-Age=0; HttpOnly; SameSite=Lax{}",
        binding_cookie(state, provider),
        state.config.cookie_secure_attr()
    );
    if let Ok(v) = HeaderValue::from_str(&expired) {
        response.headers_mut().insert(header::SET_COOKIE, v);
    }
    no_store(&mut response);
    response
}

/// What a callback whose state the store does not hold (expired, used, or
/// never issued) is told.
const STATE_UNKNOWN: &str = "This sign-in link has expired or was already used. Start connecting again from the integrations page.";

/// The callback's query parameters. Providers may add parameters of their
/// own: read permissively.
fn callback_params(parts: &axum::http::request::Parts) -> HashMap<String, String> {
    parts
        .uri
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default()
}

/// The callback's `state`, if it has a usable one.
fn callback_state(params: &HashMap<String, String>) -> Option<&str> {
    params
        .get("state")
        .map(String::as_str)
        .filter(|s| !s.is_empty() && s.len() <= 512)
}

/// The page refusing a callback without a state.
fn no_state_page() -> Response {
    error_page(
        StatusCode::BAD_REQUEST,
        "The provider's answer had no state. Start connecting again.",
    )
}

/// Before the configuration: a callback of a provider that connects with
/// OAuth (the static catalogue) with no state, or one the store does not
/// hold, is refused as [`callback`] refuses it; a held state is left for
/// [`callback`] to consume (declined).
pub async fn callback_refused_early(
    State(early): State<std::sync::Arc<dyn super::early::StoreBeforeConfiguration>>,
    Path(provider): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    let declined = super::early::declined_now;
    let connects_with_oauth = crate::providers::descriptors()
        .iter()
        .any(|d| d.id.as_str() == provider && d.auth == AuthMode::OAuth);
    if !connects_with_oauth {
        return declined();
    }
    let params = callback_params(&parts);
    let Some(state_value) = callback_state(&params) else {
        return no_state_page();
    };
    let Some(store) = early.store().await else {
        return declined();
    };
    match store
        .oauth_state_held(&sha256_b64(state_value), chrono::Utc::now())
        .await
    {
        Ok(false) => error_page(StatusCode::BAD_REQUEST, STATE_UNKNOWN),
        // The callback's own lookup decides (and reports a store error).
        Ok(true) | Err(_) => declined(),
    }
}

#[utoipa::path(get, path = "/v1/oauth/{provider}/callback", operation_id = "finishOAuth", tag = "oauth",
    params(("provider" = String, Path), ("state" = Option<String>, Query), ("code" = Option<String>, Query), ("error" = Option<String>, Query)),
    responses((status = 303, description = "back to the UI with the outcome"), (status = 400, description = "invalid, expired or replayed state (HTML page)"), (status = 404, description = "unknown provider (HTML page)")))]
pub async fn callback(
    State(state): State<AppState>,
    Path(provider): Path<String>,
    parts: axum::http::request::Parts,
) -> Response {
    let Ok(provider) = oauth_provider(&state, &provider) else {
        return error_page(StatusCode::NOT_FOUND, "Unknown provider.");
    };
    let params = callback_params(&parts);
    let Some(state_value) = callback_state(&params) else {
        return no_state_page();
    };
    let now = state.clock.now();
    let record = match state
        .store
        .consume_oauth_state(&sha256_b64(state_value), now)
        .await
    {
        Ok(Some(r)) => r,
        Ok(None) => return error_page(StatusCode::BAD_REQUEST, STATE_UNKNOWN),
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "oauth state lookup failed");
            return error_page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Something went wrong on our side; try again.",
            );
        }
    };
    if record.provider != provider {
        // Mix-up defence: a state issued for one provider came back from another.
        return error_page(
            StatusCode::BAD_REQUEST,
            "This answer came from a different provider than the one you started with. Start connecting again.",
        );
    }
    let bound = super::extract::cookie(&parts, &binding_cookie(&state, provider))
        .is_some_and(|value| constant_time_eq(&sha256_b64(value), &record.browser_binding));
    if !bound {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in was started in another browser or its cookie is missing. Start connecting again here.",
        );
    }
    // A browser signed in as someone else than who started the flow (a shared
    // machine, or a session planted by another page) does not finish it.
    let other_user = match super::extract::session_cookie(&parts, &state) {
        Ok(Some(token)) => match state.auth.verify(token).await {
            Ok(principal) => principal.sub != record.user,
            Err(_) => false,
        },
        Ok(None) => false,
        Err(_) => true,
    };
    if other_user {
        return error_page(
            StatusCode::BAD_REQUEST,
            "This sign-in was started by another user of this browser. Start connecting again while signed in as yourself.",
        );
    }
    let return_to = record
        .return_to
        .clone()
        .unwrap_or_else(|| default_return_to(record.workspace.as_str()));
    let name = provider.as_str();
    if let Some(error) = params.get("error") {
        let outcome = if error == "access_denied" {
            "access_denied"
        } else {
            "provider_error"
        };
        return back_to_ui(
            &state,
            provider,
            &return_to,
            &[("oauth_error", outcome), ("provider", name)],
        );
    }
    let Some(code) = params
        .get("code")
        .filter(|c| !c.is_empty() && c.len() <= 2048)
    else {
        return back_to_ui(
            &state,
            provider,
            &return_to,
            &[("oauth_error", "invalid_response"), ("provider", name)],
        );
    };
    match service::finish_oauth(&state, &record, code).await {
        Ok(id) => back_to_ui(
            &state,
            provider,
            &return_to,
            &[("connected", name), ("integration", &id.to_string())],
        ),
        Err(e) => {
            tracing::warn!(provider = name, workspace = %record.workspace, error = %e.log_chain(), "oauth connect failed");
            let outcome = if e.is_validation() {
                "scope_missing"
            } else {
                "exchange_failed"
            };
            back_to_ui(
                &state,
                provider,
                &return_to,
                &[("oauth_error", outcome), ("provider", name)],
            )
        }
    }
}
