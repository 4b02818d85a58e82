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
        Err(e) => try_again_later(&e),
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
        Err(e) => try_again_later(&e),
    }
}

fn confirmation(state: &AppState, token: &str) -> Option<Confirmation> {
    Confirmation::verify(token, &link_key(state, token)?).ok()
}

fn verified(state: &AppState, token: &str) -> Option<Unsubscribe> {
    Unsubscribe::verify(token, &link_key(state, token)?).ok()
}

/// The key to open `token` with; `None` for a token longer than any of ours,
/// or a deployment without `KPI_LINK_KEY`.
fn link_key(state: &AppState, token: &str) -> Option<kpi_notify::unsubscribe::LinkKey> {
    if token.len() > MAX_TOKEN {
        return None;
    }
    crate::mail::links(state).map(|l| l.key)
}

fn confirmation_answer(
    status: StatusCode,
    s: PageState,
    c: Option<&Confirmation>,
    token: &str,
) -> Response {
    respond(status, confirmation_page(s, c, action(s, token)))
}

fn answer(status: StatusCode, s: PageState, u: Option<&Unsubscribe>, token: &str) -> Response {
    respond(status, page(s, u, action(s, token)))
}

/// Where the page's button posts: back to this very link (relative, so any
/// host serving it works); an invalid token is not echoed.
fn action(s: PageState, token: &str) -> &str {
    match s {
        PageState::Invalid => "",
        _ => token,
    }
}

fn respond(status: StatusCode, html: kpi_core::Result<String>) -> Response {
    let mut r = match html {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "a link page failed");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    };
    secure(&mut r);
    r
}

/// The answer when the store could not record the reader's choice.
fn try_again_later(e: &kpi_core::Error) -> Response {
    tracing::error!(error = %e.log_chain(), "a link's choice could not be recorded");
    let mut r = (StatusCode::SERVICE_UNAVAILABLE, "Try again in a minute.").into_response();
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
