//! One-click unsubscribe (RFC 8058) and the double-opt-in confirmation, with
//! no sign-in: the signed token in the link names the address, the workspace
//! and (to unsubscribe) the kind of email. A confirmation works the same way:
//! `GET` asks, `POST` records the address's consent and lifts its
//! unsubscribes in that workspace.
//!
//! `POST` (the mailbox provider's one-click request, or the page's button)
//! stops that kind of email from that workspace to that address, and says so;
//! doing it again changes nothing. `GET` (a person opening the link, or a
//! link scanner) only shows the question with its button. A token that does
//! not verify gets 400 and changes nothing.

use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use kpi_core::WorkspaceScope;
use kpi_core::email::stream_suppression_key;
use kpi_notify::unsubscribe::{Confirmation, PageState, Unsubscribe, confirmation_page, page};

use crate::state::AppState;

/// Longest token a link of ours carries (an address of 254 characters
/// and the rest, base64).
const MAX_TOKEN: usize = 1_024;

#[utoipa::path(get, path = "/v1/unsubscribe/{token}", operation_id = "showUnsubscribe", tag = "notifications", security(()),
    params(("token" = String, Path, description = "the signed token of an email's unsubscribe link")),
    responses((status = 200, description = "the question, with a button that posts to the same URL (HTML page); nothing changes", content_type = "text/html", body = String),
        (status = 400, description = "the token is not valid (HTML page)", content_type = "text/html", body = String)))]
pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match verified(&state, &token) {
        Some(u) => answer(StatusCode::OK, PageState::Confirm, Some(&u), &token),
        None => answer(StatusCode::BAD_REQUEST, PageState::Invalid, None, &token),
    }
}

#[utoipa::path(post, path = "/v1/unsubscribe/{token}", operation_id = "unsubscribe", tag = "notifications", security(()),
    params(("token" = String, Path, description = "the signed token of an email's unsubscribe link")),
    request_body(content = String, content_type = "application/x-www-form-urlencoded", description = "`List-Unsubscribe=One-Click` (RFC 8058); any body is accepted"),
    responses((status = 200, description = "unsubscribed, now or before (HTML page)", content_type = "text/html", body = String),
        (status = 400, description = "the token is not valid; nothing changed (HTML page)", content_type = "text/html", body = String),
        (status = 503, description = "the unsubscribe could not be recorded; try again (HTML page)", content_type = "text/html", body = String)))]
pub async fn unsubscribe(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(u) = verified(&state, &token) else {
        return answer(StatusCode::BAD_REQUEST, PageState::Invalid, None, &token);
    };
    let scope = WorkspaceScope::for_system(u.workspace.clone(), "a reader's one-click unsubscribe");
    let reason = format!(
        "unsubscribed from {} (one-click link)",
        u.stream.described()
    );
    let now = state.clock.now();
    let recorded = async {
        state
            .store
            .suppress(
                &scope,
                &stream_suppression_key(&u.address, u.stream),
                &reason,
                now,
            )
            .await?;
        if u.platform {
            kpi_notify::consent::suppress_for_platform(
                &*state.store,
                &u.address,
                Some(u.stream),
                &reason,
                now,
            )
            .await?;
        }
        Ok::<_, kpi_core::Error>(())
    };
    match recorded.await {
        Ok(()) => {
            tracing::info!(workspace = %u.workspace, stream = u.stream.as_str(), "an address unsubscribed");
            answer(StatusCode::OK, PageState::Done, Some(&u), &token)
        }
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "an unsubscribe could not be recorded");
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, "Try again in a minute.").into_response();
            secure(&mut r);
            r
        }
    }
}

#[utoipa::path(get, path = "/v1/confirm/{token}", operation_id = "showConfirmation", tag = "notifications", security(()),
    params(("token" = String, Path, description = "the signed token of a confirmation (double opt-in) link")),
    responses((status = 200, description = "the question, with a button that posts to the same URL (HTML page); nothing changes", content_type = "text/html", body = String),
        (status = 400, description = "the token is not valid (HTML page)", content_type = "text/html", body = String)))]
pub async fn show_confirmation(
    State(state): State<AppState>,
    Path(token): Path<String>,
) -> Response {
    match confirmation(&state, &token) {
        Some(c) => confirmation_answer(StatusCode::OK, PageState::ConfirmAsk, Some(&c), &token),
        None => confirmation_answer(StatusCode::BAD_REQUEST, PageState::Invalid, None, &token),
    }
}

#[utoipa::path(post, path = "/v1/confirm/{token}", operation_id = "confirmAddress", tag = "notifications", security(()),
    params(("token" = String, Path, description = "the signed token of a confirmation (double opt-in) link")),
    responses((status = 200, description = "confirmed, now or before: the workspace's emails reach the address, and its unsubscribes there are lifted (HTML page)", content_type = "text/html", body = String),
        (status = 400, description = "the token is not valid; nothing changed (HTML page)", content_type = "text/html", body = String),
        (status = 503, description = "the confirmation could not be recorded; try again (HTML page)", content_type = "text/html", body = String)))]
pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let Some(c) = confirmation(&state, &token) else {
        return confirmation_answer(StatusCode::BAD_REQUEST, PageState::Invalid, None, &token);
    };
    let scope =
        WorkspaceScope::for_system(c.workspace.clone(), "an address confirmed by its owner");
    let recorded = async {
        kpi_notify::consent::record(
            &*state.store,
            &scope,
            &c.address,
            kpi_notify::consent::Agreed::Confirmed,
            state.clock.now(),
        )
        .await?;
        // Only the owner's confirmation undoes the owner's unsubscribes.
        for stream in kpi_core::email::MailStream::ALL {
            state
                .store
                .unsuppress(&scope, &stream_suppression_key(&c.address, stream))
                .await?;
        }
        Ok::<_, kpi_core::Error>(())
    };
    match recorded.await {
        Ok(()) => {
            tracing::info!(workspace = %c.workspace, "an address confirmed");
            confirmation_answer(StatusCode::OK, PageState::Confirmed, Some(&c), &token)
        }
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "a confirmation could not be recorded");
            let mut r = (StatusCode::SERVICE_UNAVAILABLE, "Try again in a minute.").into_response();
            secure(&mut r);
            r
        }
    }
}

fn confirmation(state: &AppState, token: &str) -> Option<Confirmation> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let links = crate::mail::links(state)?;
    Confirmation::verify(token, &links.key).ok()
}

fn confirmation_answer(
    status: StatusCode,
    s: PageState,
    c: Option<&Confirmation>,
    token: &str,
) -> Response {
    let action = match s {
        PageState::Invalid => String::new(),
        _ => token.to_owned(),
    };
    let mut r = match confirmation_page(s, c, &action) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "the confirmation page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    secure(&mut r);
    r
}

fn verified(state: &AppState, token: &str) -> Option<Unsubscribe> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    let links = crate::mail::links(state)?;
    Unsubscribe::verify(token, &links.key).ok()
}

fn answer(status: StatusCode, s: PageState, u: Option<&Unsubscribe>, token: &str) -> Response {
    // The button posts back to this very link (relative, so any host serving
    // it works); an invalid token is not echoed.
    let action = match s {
        PageState::Invalid => String::new(),
        _ => token.to_owned(),
    };
    let mut r = match page(s, u, &action) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "the unsubscribe page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    secure(&mut r);
    r
}

/// A page that loads nothing, posts only here, is never framed or cached, and
/// never sends its URL (which holds the token) to another site.
fn secure(r: &mut Response) {
    let h = r.headers_mut();
    for (name, value) in [
        (
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
        (header::CACHE_CONTROL, "no-store"),
        (header::REFERRER_POLICY, "no-referrer"),
        (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    ] {
        h.insert(name, HeaderValue::from_static(value));
    }
}
