//! Meta's rate-limit headers, read on every response: `X-App-Usage`,
//! `X-Ad-Account-Usage` and `X-Business-Use-Case-Usage` (percentages of the
//! limits, and minutes until a throttled caller regains access).

use std::time::Duration;

use serde_json::Value;

/// Above this share of any limit, a sync slows down between pages.
pub const SLOW_DOWN_PCT: f64 = 75.0;
/// Above this, it stops and lets the engine retry after the wait.
pub const STOP_PCT: f64 = 95.0;

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Usage {
    /// The highest percentage of any limit reported.
    pub highest_pct: f64,
    /// Meta's estimate of when a throttled caller may call again.
    pub regain_after: Option<Duration>,
}

fn json(headers: &reqwest::header::HeaderMap, name: &str) -> Option<Value> {
    serde_json::from_str(headers.get(name)?.to_str().ok()?).ok()
}

fn pct(v: &Value, key: &str) -> f64 {
    v.get(key).and_then(Value::as_f64).unwrap_or(0.0)
}

/// The usage a response reports (zero when it reports none).
pub fn read(headers: &reqwest::header::HeaderMap) -> Usage {
    let mut usage = Usage::default();
    let mut note = |p: f64| usage.highest_pct = usage.highest_pct.max(p);
    if let Some(app) = json(headers, "x-app-usage") {
        for key in ["call_count", "total_cputime", "total_time"] {
            note(pct(&app, key));
        }
    }
    if let Some(account) = json(headers, "x-ad-account-usage") {
        note(pct(&account, "acc_id_util_pct"));
    }
    let mut regain_minutes: Option<f64> = None;
    if let Some(Value::Object(objects)) = json(headers, "x-business-use-case-usage") {
        for entries in objects.values() {
            for entry in entries.as_array().into_iter().flatten() {
                for key in ["call_count", "total_cputime", "total_time"] {
                    note(pct(entry, key));
                }
                let minutes = pct(entry, "estimated_time_to_regain_access");
                if minutes > 0.0 {
                    regain_minutes = Some(regain_minutes.unwrap_or(0.0).max(minutes));
                }
            }
        }
    }
    usage.regain_after = regain_minutes.map(|m| Duration::from_secs((m * 60.0).ceil() as u64));
    usage
}

impl Usage {
    /// The pause before the next page: nothing below [`SLOW_DOWN_PCT`], then
    /// growing to 2 s just below [`STOP_PCT`].
    pub fn pause(&self) -> Duration {
        if self.highest_pct < SLOW_DOWN_PCT {
            return Duration::ZERO;
        }
        let over = (self.highest_pct - SLOW_DOWN_PCT).min(STOP_PCT - SLOW_DOWN_PCT);
        Duration::from_millis((over * 100.0) as u64)
    }

    /// How long to leave Meta alone once a limit is (nearly) used up.
    pub fn wait(&self) -> Duration {
        self.regain_after
            .unwrap_or_default()
            .max(Duration::from_secs(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    #[test]
    fn the_reference_headers_are_read() {
        let mut h = HeaderMap::new();
        h.insert(
            "x-app-usage",
            HeaderValue::from_static(r#"{"call_count":28,"total_cputime":25,"total_time":25}"#),
        );
        h.insert("x-ad-account-usage", HeaderValue::from_static(r#"{"acc_id_util_pct":9.67,"reset_time_duration":100,"ads_api_access_tier":"standard_access"}"#));
        h.insert("x-business-use-case-usage", HeaderValue::from_static(r#"{"1234":[{"type":"ads_insights","call_count":95,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":3,"ads_api_access_tier":"development_access"}]}"#));
        let u = read(&h);
        assert_eq!(u.highest_pct, 95.0);
        assert_eq!(u.regain_after, Some(Duration::from_secs(180)));
        assert_eq!(u.wait(), Duration::from_secs(180));
        assert_eq!(read(&HeaderMap::new()), Usage::default());
        assert_eq!(
            Usage {
                highest_pct: 50.0,
                regain_after: None
            }
            .pause(),
            Duration::ZERO
        );
        assert_eq!(
            Usage {
                highest_pct: 85.0,
                regain_after: None
            }
            .pause(),
            Duration::from_millis(1000)
        );
        assert_eq!(Usage::default().wait(), Duration::from_secs(60));
    }
}
