//! Exponential backoff with full jitter, honouring a provider's own wait.

use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

/// SQS cannot hide a message for longer than 12 hours.
pub const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    pub base: Duration,
    pub cap: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            base: Duration::from_secs(30),
            cap: Duration::from_secs(3600),
        }
    }
}

impl RetryPolicy {
    /// The ceiling of the delay before attempt `attempt + 1` (1-based `attempt`):
    /// `min(cap, base * 2^(attempt - 1))`.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let factor = 1u32 << attempt.saturating_sub(1).min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// Full jitter: uniformly random in `[0, ceiling]`, so retries of many jobs
    /// that failed together spread out. A provider's own hint (`Retry-After`, a
    /// quota reset) is a floor: never retry sooner than it asked.
    pub fn delay(&self, attempt: u32, hint: Option<Duration>) -> Duration {
        let ceiling = self.ceiling(attempt);
        let mut bytes = [0u8; 8];
        let jitter = if SystemRandom::new().fill(&mut bytes).is_ok() {
            let unit = u64::from_le_bytes(bytes) as f64 / u64::MAX as f64;
            ceiling.mul_f64(unit)
        } else {
            ceiling
        };
        jitter.max(hint.unwrap_or_default()).min(MAX_VISIBILITY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_grow_then_cap_and_hints_are_floors() {
        let p = RetryPolicy {
            base: Duration::from_secs(2),
            cap: Duration::from_secs(60),
        };
        assert_eq!(p.ceiling(1), Duration::from_secs(2));
        assert_eq!(p.ceiling(3), Duration::from_secs(8));
        assert_eq!(p.ceiling(30), Duration::from_secs(60));
        for attempt in 1..10 {
            let d = p.delay(attempt, None);
            assert!(d <= p.ceiling(attempt));
        }
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(90))),
            Duration::from_secs(90)
        );
        assert_eq!(
            p.delay(1, Some(Duration::from_secs(86_400))),
            MAX_VISIBILITY
        );
    }
}
