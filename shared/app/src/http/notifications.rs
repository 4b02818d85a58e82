//! `GET/PUT /v1/workspaces/{ws}/notifications`: who gets the workspace's
//! failure notices, recovery notices and reconnect reminders. Removing one's
//! own address is how a user opts out.

use axum::Json;
use axum::extract::{Path, State};
use kpi_notify::NotificationSettings;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::extract::{ApiJson, Auth, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use crate::state::AppState;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Notifications {
    /// Email addresses (at most 50), lower-cased, each once.
    pub recipients: Vec<String>,
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/notifications", operation_id = "getNotifications", tag = "notifications",
    params(("ws" = String, Path)),
    responses((status = 200, body = Notifications), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn get(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<Json<Notifications>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = NotificationSettings::load(&*state.store, &scope).await?;
    Ok(Json(Notifications {
        recipients: settings.recipients,
    }))
}

#[utoipa::path(put, path = "/v1/workspaces/{ws}/notifications", operation_id = "putNotifications", tag = "notifications",
    params(("ws" = String, Path)),
    request_body = Notifications,
    responses((status = 200, body = Notifications), (status = 400, response = ProblemResponse), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 413, response = ProblemResponse), (status = 415, response = ProblemResponse),
        (status = 422, response = ProblemResponse)))]
pub async fn put(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiJson(body): ApiJson<Notifications>,
) -> Result<Json<Notifications>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let settings = NotificationSettings {
        recipients: body.recipients,
    }
    .checked()?;
    settings.save(&*state.store, &scope).await?;
    // The platform's account sends only to addresses that agreed: the
    // caller's own verified address agrees by being saved; any other is
    // asked once by email (when the platform's account would send).
    let outbox = crate::mail::outbox(&state);
    let now = state.clock.now();
    let from_platform = outbox.sends_from_platform(&scope).await?;
    for address in &settings.recipients {
        let own = p.email_verified
            && p.email
                .as_deref()
                .is_some_and(|e| kpi_core::ports::store::normalize_address(e) == *address);
        if own {
            kpi_notify::consent::record(
                &*state.store,
                &scope,
                address,
                kpi_notify::consent::Agreed::Member,
                now,
            )
            .await?;
        } else if from_platform && let Err(e) = outbox.ask_to_confirm(&scope, address).await {
            // The list is saved; an address not asked now is asked when the
            // list is saved again.
            tracing::warn!(error = %e.log_chain(), "a confirmation email was not sent");
        }
    }
    Ok(Json(Notifications {
        recipients: settings.recipients,
    }))
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SuppressionView {
    pub address: String,
    /// `bounced (…)`, `complained (marked as spam)` or `unsubscribed from …`.
    pub reason: String,
    pub at: chrono::DateTime<chrono::Utc>,
    /// The kind of email it stops (`reports`, `alerts`, `notices`): set when
    /// the address unsubscribed from that kind alone; absent, every email.
    pub stream: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Suppressions {
    /// Addresses no email goes to, by address.
    pub items: Vec<SuppressionView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Lifted {
    pub address: String,
    /// Set when the address had complained: mailing it again may hurt the
    /// sender's reputation.
    pub warning: Option<String>,
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/suppressions", operation_id = "listSuppressions", tag = "notifications",
    params(("ws" = String, Path)),
    responses((status = 200, body = Suppressions), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse)))]
pub async fn suppressions(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
) -> Result<Json<Suppressions>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let items = state
        .store
        .list_suppressions(&scope)
        .await?
        .into_iter()
        .map(|s| {
            let (address, stream) = kpi_core::email::split_suppression_key(&s.address);
            SuppressionView {
                address: address.to_owned(),
                reason: s.reason,
                at: s.at,
                stream: stream.map(|k| k.as_str().to_owned()),
            }
        })
        .collect();
    Ok(Json(Suppressions { items }))
}

#[utoipa::path(delete, path = "/v1/workspaces/{ws}/suppressions/{email}", operation_id = "liftSuppression", tag = "notifications",
    params(("ws" = String, Path), ("email" = String, Path)),
    responses((status = 200, body = Lifted), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse),
        (status = 409, response = ProblemResponse)))]
pub async fn lift(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path((ws, email)): Path<(String, String)>,
) -> Result<Json<Lifted>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let address = kpi_core::ports::store::normalize_address(&email);
    let listed = state.store.list_suppressions(&scope).await?;
    let reason = listed
        .iter()
        .find(|s| s.address == address)
        .map(|s| s.reason.clone());
    // An address that unsubscribed itself is not put back by someone else.
    let unsubscribed = listed.iter().any(|s| {
        let (a, stream) = kpi_core::email::split_suppression_key(&s.address);
        a == address && stream.is_some()
    });
    if reason.is_none() && unsubscribed {
        // Only the owner's confirmation lifts it: ask (at most once a month).
        if let Err(e) = crate::mail::outbox(&state)
            .ask_to_resubscribe(&scope, &address)
            .await
        {
            tracing::warn!(error = %e.log_chain(), "a confirmation email was not sent");
        }
        return Err(kpi_core::Error::conflict(
            "this address unsubscribed itself; it was asked by email to confirm, \
             and its own confirmation puts it back",
        )
        .into());
    }
    if reason.is_none() || !state.store.unsuppress(&scope, &address).await? {
        return Err(kpi_core::Error::not_found("that address is not suppressed").into());
    }
    let warning = reason.filter(|r| r.starts_with("complained")).map(|_| {
        "this address marked an earlier email as spam; sending to it again can hurt the sender's reputation".to_owned()
    });
    Ok(Json(Lifted { address, warning }))
}
