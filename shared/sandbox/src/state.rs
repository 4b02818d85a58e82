use std::collections::HashMap;
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

#[derive(Default)]
pub struct State {
    pub counters: Counters,
    pub google_codes: HashMap<String, AuthCode>,
    pub google_access: HashMap<String, Token>,
    pub google_refresh: HashMap<String, Token>,
    pub meta_codes: HashMap<String, AuthCode>,
    pub meta_short: HashMap<String, Token>,
    pub meta_long: HashMap<String, Token>,
    /// Async insights report runs by id.
    pub meta_runs: HashMap<String, crate::meta_insights::ReportRun>,
    /// Ad accounts the app was subscribed to (`POST /act_{id}/subscribed_apps`).
    pub meta_subscribed: Vec<String>,
    /// Emails accepted by the Resend endpoints, oldest first.
    pub resend_outbox: Vec<crate::resend_send::OutboxEmail>,
    /// (API key, Idempotency-Key) → the first answer.
    pub resend_idempotency: HashMap<(String, String), crate::resend_send::Remembered>,
    pub resend_window: crate::resend_send::RateWindow,
    /// Sends still to be accepted without their answer reaching the caller.
    pub resend_lose_answers: u32,
    /// Endpoints registered through `POST /webhooks`, oldest first.
    pub resend_webhooks: Vec<crate::resend::Webhook>,
    /// GA4 core tokens used per property.
    pub ga4_tokens: HashMap<String, i64>,
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
