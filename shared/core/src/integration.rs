//! Integrations and their status machine.

use std::fmt;

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Error;
use crate::ids::{IntegrationId, WorkspaceId};
use crate::provider::Provider;

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntegrationStatus {
    /// Created, credentials not yet obtained (OAuth in progress).
    Pending,
    /// Credentials are valid but a choice is missing (GA4 property, ad account).
    NeedsConfiguration,
    Connected,
    /// The provider rejected the credentials; only a reconnect helps.
    NeedsReauth,
    /// Syncing failed for good; an operator or the user must look.
    Error,
    Paused,
    /// Credentials revoked and erased. Terminal: connecting again makes a new one.
    Disconnected,
}

impl IntegrationStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::NeedsConfiguration => "needs_configuration",
            Self::Connected => "connected",
            Self::NeedsReauth => "needs_reauth",
            Self::Error => "error",
            Self::Paused => "paused",
            Self::Disconnected => "disconnected",
        }
    }

    pub fn parse(s: &str) -> Result<Self, Error> {
        use IntegrationStatus::*;
        [
            Pending,
            NeedsConfiguration,
            Connected,
            NeedsReauth,
            Error,
            Paused,
            Disconnected,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
        .ok_or_else(|| crate::Error::validation("status", "unknown integration status"))
    }

    /// Whether moving from `self` to `to` is allowed. Staying put is always allowed
    /// (a second failure of an integration already in `error` changes nothing).
    pub fn can_become(self, to: IntegrationStatus) -> bool {
        use IntegrationStatus::*;
        if self == to {
            return true;
        }
        match self {
            Pending => matches!(to, NeedsConfiguration | Connected | Error | Disconnected),
            NeedsConfiguration => {
                matches!(to, Connected | NeedsReauth | Error | Paused | Disconnected)
            }
            Connected => matches!(
                to,
                NeedsConfiguration | NeedsReauth | Error | Paused | Disconnected
            ),
            // Reconnecting yields fresh credentials, which may still need a choice.
            NeedsReauth => matches!(to, Connected | NeedsConfiguration | Paused | Disconnected),
            Error => matches!(
                to,
                Connected | NeedsConfiguration | NeedsReauth | Paused | Disconnected
            ),
            // Resuming goes back to connected; the next sync finds out the rest.
            Paused => matches!(to, Connected | NeedsReauth | Disconnected),
            Disconnected => false,
        }
    }

    /// Integrations in this status are synced on schedule.
    pub fn is_syncable(self) -> bool {
        self == IntegrationStatus::Connected
    }

    /// Whether a person may ask for a sync now: a connected integration, or
    /// one in `error`, where a successful sync is how it comes back.
    pub fn accepts_manual_sync(self) -> bool {
        matches!(
            self,
            IntegrationStatus::Connected | IntegrationStatus::Error
        )
    }
}

impl fmt::Display for IntegrationStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Ciphertext of an integration's credentials, as produced by the vault. Opaque
/// to everything else; bound to the integration it was sealed for.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SealedCredentials(String);

impl SealedCredentials {
    pub fn from_encoded(encoded: String) -> Self {
        Self(encoded)
    }
    pub fn as_encoded(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SealedCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SealedCredentials({} bytes)", self.0.len())
    }
}

/// The last failure of an integration or job, safe to show to its users.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorRecord {
    pub code: String,
    pub message: String,
    pub at: DateTime<Utc>,
}

impl ErrorRecord {
    pub fn from_error(err: &Error, at: DateTime<Utc>) -> Self {
        Self {
            code: err.code().to_owned(),
            message: err.message().to_owned(),
            at,
        }
    }
}

/// The outcome of asking the provider for an integration's webhook events.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookSubscription {
    /// The provider resource subscribed to (a Meta ad account).
    pub resource: String,
    pub subscribed: bool,
    /// Why not, when not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

/// What became of the last notice about an integration.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NoticeRecord {
    /// `sync_failure`, `recovery` or `reconnect_reminder`.
    pub kind: String,
    /// Whether an email went out.
    pub emailed: bool,
    /// Why not, when not (no recipients, no sender, the provider refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// How long before non-refreshable credentials expire an integration shows
/// `expires_soon` and its workspace gets a reconnect reminder.
pub const EXPIRY_WARNING_DAYS: i64 = 7;

/// One connected provider account of one workspace.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Integration {
    pub id: IntegrationId,
    pub workspace: WorkspaceId,
    pub provider: Provider,
    status: IntegrationStatus,
    pub display_name: String,
    /// Provider-specific choices (GA4 property, Meta ad account, …), validated by
    /// the provider's adapter before they are stored.
    pub settings: serde_json::Map<String, serde_json::Value>,
    pub sync_interval_minutes: u32,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<ErrorRecord>,
    pub credentials: Option<SealedCredentials>,
    /// The sync job queued or running for it: one at a time. A job that has
    /// ended (or vanished) no longer counts, whatever this still says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_job: Option<crate::ids::JobId>,
    /// Opaque key of the provider account whose grant it holds (a hash of the
    /// provider and the account id): integrations with the same key share one
    /// grant at the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Whether the provider sends us this integration's webhook events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhooks: Option<WebhookSubscription>,
    /// When credentials that cannot be refreshed stop working (Meta's
    /// long-lived token): a reconnect is needed by then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials_expire_at: Option<DateTime<Utc>>,
    /// The expiry a reconnect reminder was sent for: one reminder per expiry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reminded_for: Option<DateTime<Utc>>,
    /// When its current run of failed syncs began (cleared by a success,
    /// which then sends a recovery notice).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failing_since: Option<DateTime<Utc>>,
    /// The last notice about it (failure, recovery, reminder): whether an
    /// email could be sent, and why not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_notice: Option<NoticeRecord>,
    /// What the chosen options are called at the provider (`property` →
    /// "Demo Shop"), kept when they are picked so pages show names, not ids.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub choice_names: std::collections::BTreeMap<String, String>,
    /// Optimistic concurrency: a write succeeds only against the version it read.
    pub version: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Integration {
    pub const DEFAULT_SYNC_INTERVAL_MINUTES: u32 = 360;
    pub const MIN_SYNC_INTERVAL_MINUTES: u32 = 15;
    pub const MAX_SYNC_INTERVAL_MINUTES: u32 = 7 * 24 * 60;

    pub fn new(
        id: IntegrationId,
        workspace: WorkspaceId,
        provider: Provider,
        display_name: impl Into<String>,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id,
            workspace,
            provider,
            status: IntegrationStatus::Pending,
            display_name: display_name.into(),
            settings: Default::default(),
            sync_interval_minutes: Self::DEFAULT_SYNC_INTERVAL_MINUTES,
            next_sync_at: None,
            last_sync_at: None,
            last_success_at: None,
            last_error: None,
            credentials: None,
            active_job: None,
            account: None,
            webhooks: None,
            credentials_expire_at: None,
            reminded_for: None,
            failing_since: None,
            last_notice: None,
            choice_names: Default::default(),
            version: 0,
            created_at: now,
            updated_at: now,
        }
    }

    pub fn status(&self) -> IntegrationStatus {
        self.status
    }

    /// Moves the status, enforcing the status machine. Becoming connected schedules
    /// a sync right away when none is scheduled.
    pub fn transition(&mut self, to: IntegrationStatus, now: DateTime<Utc>) -> Result<(), Error> {
        if !self.status.can_become(to) {
            return Err(Error::conflict(format!(
                "integration cannot go from {} to {}",
                self.status, to
            )));
        }
        self.status = to;
        if to == IntegrationStatus::Connected && self.next_sync_at.is_none() {
            self.next_sync_at = Some(now);
        }
        if to == IntegrationStatus::Disconnected {
            self.credentials = None;
            self.next_sync_at = None;
        }
        self.updated_at = now;
        Ok(())
    }

    pub fn set_sync_interval(&mut self, minutes: u32) -> Result<(), Error> {
        if !(Self::MIN_SYNC_INTERVAL_MINUTES..=Self::MAX_SYNC_INTERVAL_MINUTES).contains(&minutes) {
            return Err(Error::validation(
                "sync_interval_minutes",
                format!(
                    "sync interval must be between {} and {} minutes",
                    Self::MIN_SYNC_INTERVAL_MINUTES,
                    Self::MAX_SYNC_INTERVAL_MINUTES
                ),
            ));
        }
        self.sync_interval_minutes = minutes;
        Ok(())
    }

    /// Its credentials expire within [`EXPIRY_WARNING_DAYS`] and cannot be
    /// refreshed: only a reconnect keeps it syncing.
    pub fn expires_soon(&self, now: DateTime<Utc>) -> bool {
        self.credentials.is_some()
            && self
                .credentials_expire_at
                .is_some_and(|at| at - Duration::days(EXPIRY_WARNING_DAYS) <= now)
    }

    /// Whether the scheduler should pick this integration up at `now`.
    pub fn is_due(&self, now: DateTime<Utc>) -> bool {
        self.status.is_syncable() && self.next_sync_at.is_some_and(|t| t <= now)
    }

    /// The next sync time after one starting at `from`.
    pub fn following_sync(&self, from: DateTime<Utc>) -> DateTime<Utc> {
        from + Duration::minutes(i64::from(self.sync_interval_minutes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use IntegrationStatus::*;

    const ALL: [IntegrationStatus; 7] = [
        Pending,
        NeedsConfiguration,
        Connected,
        NeedsReauth,
        Error,
        Paused,
        Disconnected,
    ];

    fn integration() -> Integration {
        Integration::new(
            IntegrationId::new_random(),
            WorkspaceId::parse("ws").unwrap(),
            Provider::new("ga4"),
            "GA4",
            Utc::now(),
        )
    }

    #[test]
    fn disconnected_is_terminal() {
        for to in ALL {
            assert_eq!(Disconnected.can_become(to), to == Disconnected, "{to}");
        }
    }

    #[test]
    fn every_status_can_be_disconnected() {
        for from in ALL {
            assert!(from.can_become(Disconnected), "{from}");
        }
    }

    #[test]
    fn illegal_transitions_are_rejected_with_conflict() {
        let mut i = integration();
        let now = Utc::now();
        let err = i.transition(Paused, now).unwrap_err();
        assert_eq!(err.code(), "conflict");
        assert_eq!(i.status(), Pending);
        assert!(!Pending.can_become(NeedsReauth));
        assert!(!Paused.can_become(Error));
        assert!(!Paused.can_become(NeedsConfiguration));
    }

    #[test]
    fn lifecycle_connect_pause_resume_reauth_disconnect() {
        let mut i = integration();
        let now = Utc::now();
        i.transition(NeedsConfiguration, now).unwrap();
        i.transition(Connected, now).unwrap();
        assert_eq!(i.next_sync_at, Some(now));
        assert!(i.is_due(now));
        i.transition(Paused, now).unwrap();
        assert!(!i.is_due(now));
        i.transition(Connected, now).unwrap();
        i.transition(NeedsReauth, now).unwrap();
        i.transition(Connected, now).unwrap();
        i.credentials = Some(SealedCredentials::from_encoded("x".into()));
        i.transition(Disconnected, now).unwrap();
        assert!(i.credentials.is_none());
        assert!(i.next_sync_at.is_none());
        assert!(i.transition(Connected, now).is_err());
    }

    #[test]
    fn status_names_round_trip() {
        for s in ALL {
            assert_eq!(IntegrationStatus::parse(s.as_str()).unwrap(), s);
            assert_eq!(serde_json::to_value(s).unwrap(), s.as_str());
        }
        assert!(IntegrationStatus::parse("active").is_err());
    }

    #[test]
    fn sync_interval_is_bounded() {
        let mut i = integration();
        assert!(i.set_sync_interval(5).is_err());
        assert!(i.set_sync_interval(60).is_ok());
        assert!(i.set_sync_interval(100_000).is_err());
    }
}
