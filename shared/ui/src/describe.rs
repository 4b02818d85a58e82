//! Words for people: an integration's state as a badge, what it means and the
//! one action that fixes it; times relative to now; OAuth outcomes.

use chrono::{DateTime, Utc};
use kpi_core::{Integration, IntegrationStatus};
use serde::Serialize;

/// A time as shown: relative words, with the exact time for `title` and
/// `datetime`.
#[derive(Serialize)]
pub struct When {
    pub relative: String,
    pub exact: String,
    pub iso: String,
}

impl When {
    pub fn of(t: DateTime<Utc>, now: DateTime<Utc>) -> Self {
        Self {
            relative: relative(t, now),
            exact: t.format("%Y-%m-%d %H:%M UTC").to_string(),
            iso: t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        }
    }

    pub fn maybe(t: Option<DateTime<Utc>>, now: DateTime<Utc>) -> Option<Self> {
        t.map(|t| Self::of(t, now))
    }
}

/// "in 5 minutes", "3 hours ago", "just now".
pub fn relative(t: DateTime<Utc>, now: DateTime<Utc>) -> String {
    let seconds = (t - now).num_seconds();
    let future = seconds > 0;
    let s = seconds.unsigned_abs();
    if s < 45 {
        return if future { "in a moment" } else { "just now" }.into();
    }
    let (n, unit) = match s {
        s if s < 90 * 60 => (s.div_ceil(60).max(1), "minute"),
        s if s < 36 * 3600 => ((s + 1800) / 3600, "hour"),
        s if s < 45 * 86400 => ((s + 43200) / 86400, "day"),
        s if s < 550 * 86400 => ((s + 15 * 86400) / (30 * 86400), "month"),
        s => ((s + 182 * 86400) / (365 * 86400), "year"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if future {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

/// What a card's badge says, and its colour class.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Badge {
    NotConnected,
    Connecting,
    Connected,
    NeedsConfiguration,
    NeedsReconnect,
    ExpiresSoon,
    Error,
    Paused,
    Disconnected,
}

impl Badge {
    pub fn label(self) -> &'static str {
        match self {
            Self::NotConnected => "Not connected",
            Self::Connecting => "Connecting",
            Self::Connected => "Connected",
            Self::NeedsConfiguration => "Needs configuration",
            Self::NeedsReconnect => "Needs reconnect",
            Self::ExpiresSoon => "Expires soon",
            Self::Error => "Error",
            Self::Paused => "Paused",
            Self::Disconnected => "Disconnected",
        }
    }

    /// `ok`, `warn`, `bad` or `off`: the badge colour.
    pub fn tone(self) -> &'static str {
        match self {
            Self::Connected => "ok",
            Self::NeedsConfiguration | Self::ExpiresSoon | Self::Connecting => "warn",
            Self::NeedsReconnect | Self::Error => "bad",
            Self::NotConnected | Self::Paused | Self::Disconnected => "off",
        }
    }
}

/// The one thing to do about a card.
#[derive(Serialize, Clone, Copy, PartialEq, Eq, Debug)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Start connecting (OAuth) or enter a key.
    Connect,
    /// Connect again with the same integration (OAuth) or a new key.
    Reconnect,
    /// Open the settings at the picker.
    Configure,
    Resume,
    /// Sync now (after an error, to try again).
    Retry,
    /// Nothing is wrong: the settings are the way in.
    None,
}

impl Action {
    pub fn label(self, provider: &str) -> String {
        match self {
            Self::Connect => format!("Connect {provider}"),
            Self::Reconnect => format!("Reconnect {provider}"),
            Self::Configure => "Choose what to sync".into(),
            Self::Resume => "Resume syncing".into(),
            Self::Retry => "Try again now".into(),
            Self::None => String::new(),
        }
    }
}

/// The badge of an integration, what it means, and what fixes it.
pub fn state_of(
    i: &Integration,
    provider: &str,
    choice: &str,
    now: DateTime<Utc>,
) -> (Badge, String, Action) {
    match i.status() {
        IntegrationStatus::Pending => (
            Badge::Connecting,
            format!(
                "Connecting to {provider} was started but not finished. Connect again to finish it."
            ),
            Action::Reconnect,
        ),
        IntegrationStatus::NeedsConfiguration => (
            Badge::NeedsConfiguration,
            format!("{provider} is connected. Choose the {choice} to sync; nothing syncs until you do."),
            Action::Configure,
        ),
        IntegrationStatus::NeedsReauth => (
            Badge::NeedsReconnect,
            format!(
                "{provider} no longer accepts our access, so syncing has stopped. Reconnect to give access again; your settings and KPIs stay."
            ),
            Action::Reconnect,
        ),
        IntegrationStatus::Error => (
            Badge::Error,
            "Syncing failed and will not retry by itself. Check the error below, fix it, then try again.".into(),
            Action::Retry,
        ),
        IntegrationStatus::Paused => (
            Badge::Paused,
            "Scheduled syncs are paused. KPIs synced so far stay; nothing new arrives until you resume.".into(),
            Action::Resume,
        ),
        IntegrationStatus::Disconnected => (
            Badge::Disconnected,
            format!(
                "Disconnected: our access at {provider} was given up and the stored credentials erased. KPIs synced before stay."
            ),
            Action::Connect,
        ),
        IntegrationStatus::Connected if i.expires_soon(now) => {
            let on = i
                .credentials_expire_at
                .map(|t| t.format("%B %-d").to_string())
                .unwrap_or_else(|| "soon".into());
            (
                Badge::ExpiresSoon,
                format!("The {provider} connection stops working on {on}. Reconnect before then to keep syncing."),
                Action::Reconnect,
            )
        }
        IntegrationStatus::Connected => {
            let every = interval_words(i.sync_interval_minutes);
            let text = if i.last_success_at.is_none() {
                format!("Connected. The first sync is on its way; after it, KPIs sync {every}.")
            } else {
                format!("Connected and syncing {every}.")
            };
            (Badge::Connected, text, Action::None)
        }
    }
}

/// "every 15 minutes", "every hour", "every day".
pub fn interval_words(minutes: u32) -> String {
    match minutes {
        60 => "every hour".into(),
        1440 => "every day".into(),
        10080 => "every week".into(),
        m if m % 1440 == 0 => format!("every {} days", m / 1440),
        m if m % 60 == 0 => format!("every {} hours", m / 60),
        m => format!("every {m} minutes"),
    }
}

/// The sync frequencies the settings offer (minutes, words).
pub const FREQUENCIES: [(u32, &str); 8] = [
    (15, "Every 15 minutes"),
    (30, "Every 30 minutes"),
    (60, "Every hour"),
    (180, "Every 3 hours"),
    (360, "Every 6 hours"),
    (720, "Every 12 hours"),
    (1440, "Every day"),
    (10080, "Every week"),
];

/// The toast after an OAuth round trip that did not connect.
pub fn oauth_error(kind: &str, provider: &str) -> String {
    match kind {
        "access_denied" => format!(
            "You declined access at {provider}, so nothing was connected. To connect, start again and allow access."
        ),
        "scope_missing" => format!(
            "{provider} was connected without every permission we need, so nothing was saved. Connect again and leave every permission ticked."
        ),
        "provider_error" => format!(
            "{provider} reported a problem and nothing was connected. Try again in a few minutes."
        ),
        "invalid_response" => format!(
            "{provider} sent an answer we could not use, so nothing was connected. Try again; if it keeps happening, contact support."
        ),
        "exchange_failed" => {
            format!("We could not finish connecting to {provider}. Nothing was saved; try again.")
        }
        _ => format!("Connecting to {provider} did not finish. Try again."),
    }
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;

    #[test]
    fn relative_times_read_naturally() {
        let now = Utc::now();
        assert_eq!(relative(now, now), "just now");
        assert_eq!(relative(now + Duration::minutes(12), now), "in 12 minutes");
        assert_eq!(relative(now - Duration::minutes(1), now), "1 minute ago");
        assert_eq!(relative(now - Duration::hours(3), now), "3 hours ago");
        assert_eq!(relative(now - Duration::days(2), now), "2 days ago");
        assert_eq!(relative(now + Duration::days(60), now), "in 2 months");
    }

    #[test]
    fn every_oauth_error_kind_has_its_own_words() {
        let kinds = [
            "access_denied",
            "scope_missing",
            "provider_error",
            "invalid_response",
            "exchange_failed",
        ];
        let texts: std::collections::HashSet<String> =
            kinds.iter().map(|k| oauth_error(k, "Meta Ads")).collect();
        assert_eq!(texts.len(), kinds.len());
        assert!(oauth_error("access_denied", "Meta Ads").contains("declined"));
    }

    fn integration(path: &[IntegrationStatus]) -> Integration {
        let now = Utc::now();
        let mut i = Integration::new(
            kpi_core::IntegrationId::new_random(),
            kpi_core::WorkspaceId::parse("demo").unwrap(),
            kpi_providers::meta::ID,
            "Meta Ads",
            now,
        );
        for to in path {
            i.transition(*to, now).unwrap();
        }
        i
    }

    #[test]
    fn every_state_has_a_badge_words_and_its_fix() {
        use IntegrationStatus::*;
        let now = Utc::now();
        let cases = [
            (vec![], Badge::Connecting, Action::Reconnect),
            (
                vec![NeedsConfiguration],
                Badge::NeedsConfiguration,
                Action::Configure,
            ),
            (vec![Connected], Badge::Connected, Action::None),
            (
                vec![Connected, NeedsReauth],
                Badge::NeedsReconnect,
                Action::Reconnect,
            ),
            (vec![Connected, Error], Badge::Error, Action::Retry),
            (vec![Connected, Paused], Badge::Paused, Action::Resume),
            (
                vec![Connected, Disconnected],
                Badge::Disconnected,
                Action::Connect,
            ),
        ];
        for (path, badge, action) in cases {
            let i = integration(&path);
            let (b, words, a) = state_of(&i, "Meta Ads", "ad account", now);
            assert_eq!((b, a), (badge, action), "{path:?}");
            assert!(!words.is_empty() && !b.label().is_empty());
        }
        // Connected, but the token ends within the week.
        let mut i = integration(&[Connected]);
        i.credentials = Some(kpi_core::integration::SealedCredentials::from_encoded(
            "sealed".into(),
        ));
        i.credentials_expire_at = Some(now + chrono::Duration::days(3));
        let (b, words, a) = state_of(&i, "Meta Ads", "ad account", now);
        assert_eq!((b, a), (Badge::ExpiresSoon, Action::Reconnect));
        assert!(words.contains("Reconnect before then"), "{words}");
        let (_, words, _) = state_of(
            &integration(&[NeedsConfiguration]),
            "Meta Ads",
            "ad account",
            now,
        );
        assert!(words.contains("Choose the ad account"), "{words}");
    }

    #[test]
    fn intervals_in_words() {
        assert_eq!(interval_words(15), "every 15 minutes");
        assert_eq!(interval_words(60), "every hour");
        assert_eq!(interval_words(360), "every 6 hours");
        assert_eq!(interval_words(1440), "every day");
    }
}
