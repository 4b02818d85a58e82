//! Email addresses as this system accepts them (recipients, senders): a
//! pragmatic check, not RFC 5322 — one `@`, a dotted domain of letters,
//! digits and dashes, no spaces, angle brackets or control characters.

/// A domain name such as `mail.example.com`.
pub fn is_domain(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 253
        && v.contains('.')
        && !v.starts_with('.')
        && !v.ends_with('.')
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-')
}

/// An address such as `owner@example.com`.
pub fn is_address(v: &str) -> bool {
    v.len() <= 254
        && v.split_once('@').is_some_and(|(local, domain)| {
            !local.is_empty()
                && local.len() <= 64
                && !local.chars().any(|c| {
                    c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '@' | ',' | '"')
                })
                && is_domain(domain)
        })
}

/// The kinds of email a reader can stop one by one (one-click unsubscribe,
/// RFC 8058). Each message the system sends belongs to one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailStream {
    /// Scheduled KPI reports.
    Reports,
    /// KPI alert digests and their back-to-normal emails.
    Alerts,
    /// Sync failure and recovery notices, reconnect reminders.
    Notices,
}

impl MailStream {
    pub const ALL: [Self; 3] = [Self::Reports, Self::Alerts, Self::Notices];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Reports => "reports",
            Self::Alerts => "alerts",
            Self::Notices => "notices",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// In a sentence: "KPI reports", …
    pub fn described(self) -> &'static str {
        match self {
            Self::Reports => "KPI reports",
            Self::Alerts => "KPI alerts",
            Self::Notices => "sync notices",
        }
    }
}

/// The suppression-list key that stops one stream to `address` (an
/// unsubscribe), beside the plain address that stops every email (a bounce
/// or complaint). A space cannot occur in an accepted address, so the two
/// never meet.
pub fn stream_suppression_key(address: &str, stream: MailStream) -> String {
    format!(
        "{} {}",
        crate::ports::store::normalize_address(address),
        stream.as_str()
    )
}

/// A suppression-list key read back: the address, and the stream it stops
/// (`None`: every email).
pub fn split_suppression_key(key: &str) -> (&str, Option<MailStream>) {
    match key.split_once(' ') {
        Some((address, stream)) => match MailStream::parse(stream) {
            Some(stream) => (address, Some(stream)),
            None => (key, None),
        },
        None => (key, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_keys_read_back() {
        let key = stream_suppression_key("Owner@Example.com ", MailStream::Reports);
        assert_eq!(key, "owner@example.com reports");
        assert_eq!(
            split_suppression_key(&key),
            ("owner@example.com", Some(MailStream::Reports))
        );
        assert_eq!(split_suppression_key("a@b.co"), ("a@b.co", None));
        assert!(!is_address(&key), "a stream key is never an address");
    }

    #[test]
    fn addresses() {
        for ok in [
            "a@b.co",
            "first.last+tag@mail.example.com",
            "x_y@sub-domain.example.org",
        ] {
            assert!(is_address(ok), "{ok}");
        }
        for bad in [
            "",
            "a",
            "a@b",
            "@b.co",
            "a b@c.co",
            "a@b .co",
            "<a@b.co>",
            "a@@b.co",
            "a@b.co,c@d.co",
            "a@.b.co",
            "a@b.co.",
        ] {
            assert!(!is_address(bad), "{bad}");
        }
    }
}
