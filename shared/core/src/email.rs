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

#[cfg(test)]
mod tests {
    use super::*;

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
