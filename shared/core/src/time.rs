//! Timestamps as keys.

use chrono::{DateTime, SecondsFormat, Utc};

/// Fixed-width UTC timestamp (`2026-11-25T17:56:46.000123Z`) whose string order is
/// its time order, for sort keys and index columns.
pub fn sortable_timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn string_order_is_time_order() {
        let a = DateTime::parse_from_rfc3339("2026-01-01T00:00:09.9Z")
            .unwrap()
            .to_utc();
        let b = DateTime::parse_from_rfc3339("2026-01-01T00:00:10Z")
            .unwrap()
            .to_utc();
        assert!(sortable_timestamp(a) < sortable_timestamp(b));
        assert_eq!(sortable_timestamp(b), "2026-01-01T00:00:10.000000Z");
    }
}
