//! What every simulator shares: the call counters, authorization codes and
//! tokens, and random ids. Each simulator's own state lives in its module,
//! kept in the sandbox's type map ([`crate::Sandbox::with`]).

use std::time::{Duration, Instant};

use base64::Engine as _;
use ring::rand::{SecureRandom, SystemRandom};

/// Calls per endpoint, for tests that count provider calls.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub google_code_exchanges: u32,
    pub google_refreshes: u32,
    pub google_revocations: u32,
    pub ga4_admin_calls: u32,
    pub ga4_data_calls: u32,
    pub meta_code_exchanges: u32,
    pub meta_long_lived_exchanges: u32,
    pub meta_revocations: u32,
    pub meta_graph_calls: u32,
    pub meta_report_runs: u32,
    pub meta_subscriptions: u32,
    pub resend_calls: u32,
}

pub struct AuthCode {
    pub grant: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: Option<String>,
    pub scopes: Vec<String>,
    pub offline: bool,
    pub expires: Instant,
}

pub struct Token {
    /// Tokens of one consent share a grant; revoking it revokes them all.
    pub grant: String,
    pub scopes: Vec<String>,
    pub expires: Instant,
    pub revoked: bool,
}

pub fn random(prefix: &str) -> String {
    let mut buf = [0u8; 24];
    // The sandbox only needs unguessable-enough test tokens; on failure the
    // zeroed buffer still yields a (weak) unique-looking value with the counter.
    let _ = SystemRandom::new().fill(&mut buf);
    format!(
        "{prefix}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(buf)
    )
}

pub const CODE_TTL: Duration = Duration::from_secs(600);

impl Token {
    pub fn live(&self) -> bool {
        !self.revoked && self.expires > Instant::now()
    }
}
