//! Who agreed to email from the platform's own Resend account.
//!
//! A workspace's own Resend account sends to whom the workspace lists. The
//! platform's account (`KPI_SYSTEM_RESEND_API_KEY`) is shared by every
//! workspace, so a workspace could otherwise turn it against strangers: it
//! sends only to addresses that agreed — a member of the workspace (the
//! signed-in user's own verified address, when they save the list) or an
//! address that confirmed a double-opt-in email — and at most
//! [`PLATFORM_DAILY_CAP`] emails a day per workspace.

use chrono::{DateTime, Duration, Utc};
use kpi_core::ports::Store;
use kpi_core::ports::store::normalize_address;
use kpi_core::{Result, WorkspaceScope};
use serde::{Deserialize, Serialize};

/// How long the platform account's own suppressions last: for good, in
/// practice (the store keeps them as expiring records).
const PLATFORM_SUPPRESSION_DAYS: i64 = 3_650;

fn platform_key(address: &str, stream: Option<kpi_core::email::MailStream>) -> String {
    match stream {
        None => format!("platform-suppression#{}", normalize_address(address)),
        Some(s) => format!(
            "platform-suppression#{}",
            kpi_core::email::stream_suppression_key(address, s)
        ),
    }
}

/// Adds `address` to the platform account's own suppression list, across
/// workspaces: a bounce or complaint of an email the platform's account sent
/// (`stream` `None`: everything), or an unsubscribe from one kind of it.
pub async fn suppress_for_platform(
    store: &dyn Store,
    address: &str,
    stream: Option<kpi_core::email::MailStream>,
    reason: &str,
    at: DateTime<Utc>,
) -> Result<()> {
    store
        .put_ephemeral(
            &platform_key(address, stream),
            &serde_json::json!({ "reason": reason, "at": at }),
            at + Duration::days(PLATFORM_SUPPRESSION_DAYS),
        )
        .await
}

/// Whether the platform's account must not send `stream` (or anything) to
/// `address`, whichever workspace asks.
pub async fn platform_suppressed(
    store: &dyn Store,
    address: &str,
    stream: Option<kpi_core::email::MailStream>,
    now: DateTime<Utc>,
) -> Result<bool> {
    if store
        .get_ephemeral(&platform_key(address, None), now)
        .await?
        .is_some()
    {
        return Ok(true);
    }
    match stream {
        Some(s) => Ok(store
            .get_ephemeral(&platform_key(address, Some(s)), now)
            .await?
            .is_some()),
        None => Ok(false),
    }
}

/// Emails a workspace may have the platform's account send each day (UTC).
pub const PLATFORM_DAILY_CAP: usize = 200;
/// One confirmation email per address and workspace in this many days.
pub const CONFIRMATION_EVERY_DAYS: i64 = 30;

/// How an address agreed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Agreed {
    /// A signed-in member listed their own verified address.
    Member,
    /// The address confirmed the double-opt-in email's link.
    Confirmed,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Consent {
    pub how: Agreed,
    pub at: DateTime<Utc>,
}

/// The workspace setting that holds one address's consent.
fn setting(address: &str) -> String {
    format!("consent {}", normalize_address(address))
}

pub async fn consent(
    store: &dyn Store,
    scope: &WorkspaceScope,
    address: &str,
) -> Result<Option<Consent>> {
    Ok(store
        .get_workspace_setting(scope, &setting(address))
        .await?
        .and_then(|v| serde_json::from_value(v).ok()))
}

pub async fn record(
    store: &dyn Store,
    scope: &WorkspaceScope,
    address: &str,
    how: Agreed,
    at: DateTime<Utc>,
) -> Result<()> {
    let value = serde_json::to_value(Consent { how, at })
        .map_err(|e| kpi_core::Error::internal("a consent did not serialize").with_source(e))?;
    store
        .put_workspace_setting(scope, &setting(address), &value)
        .await
}

/// Whether a confirmation email may go to `address` now (the first in
/// [`CONFIRMATION_EVERY_DAYS`] for this workspace): never a stream of them.
pub async fn may_ask(
    store: &dyn Store,
    scope: &WorkspaceScope,
    address: &str,
    now: DateTime<Utc>,
) -> Result<bool> {
    let key = format!(
        "consent-asked#{}#{}",
        scope.workspace(),
        normalize_address(address)
    );
    store
        .first_seen(&key, now + Duration::days(CONFIRMATION_EVERY_DAYS), now)
        .await
}

/// Claims one of the workspace's platform emails of `now`'s day; `false`
/// once `cap` are claimed. Slots are claimed atomically (first come), from a
/// random one on, so a day's first sends take one store call each and only a
/// day near its cap takes more.
pub async fn claim_platform_send(
    store: &dyn Store,
    scope: &WorkspaceScope,
    now: DateTime<Utc>,
    cap: usize,
) -> Result<bool> {
    if cap == 0 {
        return Ok(false);
    }
    let day = now.date_naive();
    let start = (uuid::Uuid::new_v4().as_u128() % cap as u128) as usize;
    for k in 0..cap {
        let slot = (start + k) % cap;
        let key = format!("platform-send#{}#{day}#{slot}", scope.workspace());
        if store.first_seen(&key, now + Duration::days(2), now).await? {
            return Ok(true);
        }
    }
    Ok(false)
}
