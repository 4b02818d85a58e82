//! In-memory adapters with scripted outcomes, for the engine's tests and fault
//! runs (and for trying the engine without a provider).

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use chrono::Utc;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::metric::{MetricSpec, Unit};
use kpi_core::ports::provider::{
    ConnectOutcome, ConnectRequest, ProviderAdapter, ProviderDescriptor, ProviderOptions, Settings,
    SyncRequest, SyncResult,
};
use kpi_core::{Error, Integration, IntegrationId, KpiPoint, Result};
use rust_decimal::Decimal;
use secrecy::{ExposeSecret, SecretString};

/// What one scripted sync call does.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// One point per day of the window.
    Success,
    RateLimited(Duration),
    /// A 5xx-like failure.
    Transient,
    /// Takes longer than any sync timeout a test sets.
    Timeout,
    Permanent,
    Auth,
    /// Succeeds after a delay.
    Slow(Duration),
    Panic,
    /// Succeeds, after renewing the token itself mid-sync (a 401 answered by a
    /// refresh inside the adapter).
    SuccessWithNewToken,
    /// Signals `entered`, waits for `release`, then succeeds with a renewed
    /// token: a window for the test to act while the sync is in flight.
    HeldThenNewToken,
}

pub struct MockAdapter {
    descriptor: ProviderDescriptor,
    scripts: Mutex<HashMap<IntegrationId, VecDeque<Outcome>>>,
    /// Fraction (per mille) of calls that fail with a random fault, while on.
    fault_per_mille: AtomicU32,
    faults_on: AtomicBool,
    /// While on, every unscripted call fails as in a provider outage (5xx).
    pub outage: AtomicBool,
    rng: AtomicU64,
    pub sync_calls: AtomicU32,
    pub refresh_calls: AtomicU32,
    pub refresh_delay: Duration,
    /// Access tokens seen by sync calls, in order.
    pub tokens_used: Mutex<Vec<String>>,
    /// Signalled when a held sync has started.
    pub entered: tokio::sync::Notify,
    /// Lets a held sync go on.
    pub release: tokio::sync::Notify,
    /// The next refresh is held like a held sync (`entered`, then `release`)
    /// and rotates the refresh token, as providers that rotate do.
    pub hold_next_refresh: AtomicBool,
}

impl MockAdapter {
    /// Stands in for the provider of `descriptor`, in windows of at most 30 days.
    pub fn new(descriptor: ProviderDescriptor) -> Self {
        Self {
            descriptor: ProviderDescriptor {
                max_window_days: 30,
                ..descriptor
            },
            scripts: Mutex::new(HashMap::new()),
            fault_per_mille: AtomicU32::new(0),
            faults_on: AtomicBool::new(false),
            outage: AtomicBool::new(false),
            rng: AtomicU64::new(0x9E37_79B9_7F4A_7C15),
            sync_calls: AtomicU32::new(0),
            refresh_calls: AtomicU32::new(0),
            refresh_delay: Duration::from_millis(50),
            tokens_used: Mutex::new(Vec::new()),
            entered: tokio::sync::Notify::new(),
            release: tokio::sync::Notify::new(),
            hold_next_refresh: AtomicBool::new(false),
        }
    }

    /// The next calls for `integration` do these, in order; then success.
    pub fn script(&self, integration: IntegrationId, outcomes: impl IntoIterator<Item = Outcome>) {
        self.scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(integration)
            .or_default()
            .extend(outcomes);
    }

    /// Random faults of mixed kinds on `per_mille` of unscripted calls.
    pub fn set_random_faults(&self, per_mille: u32, seed: u64) {
        self.fault_per_mille.store(per_mille, Ordering::SeqCst);
        self.rng.store(seed | 1, Ordering::SeqCst);
        self.faults_on.store(per_mille > 0, Ordering::SeqCst);
    }

    pub fn stop_faults(&self) {
        self.faults_on.store(false, Ordering::SeqCst);
    }

    fn next_random(&self) -> u64 {
        // xorshift64*: deterministic per seed, good enough to spread faults.
        let mut x = self.rng.load(Ordering::SeqCst);
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.store(x, Ordering::SeqCst);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn next_outcome(&self, integration: IntegrationId) -> Outcome {
        if let Some(o) = self
            .scripts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get_mut(&integration)
            .and_then(VecDeque::pop_front)
        {
            return o;
        }
        if self.outage.load(Ordering::SeqCst) {
            return Outcome::Transient;
        }
        if self.faults_on.load(Ordering::SeqCst) {
            let r = self.next_random();
            if r % 1000 < u64::from(self.fault_per_mille.load(Ordering::SeqCst)) {
                return match (r >> 10) % 10 {
                    0..=2 => Outcome::Transient,
                    3..=4 => Outcome::RateLimited(Duration::from_millis(100)),
                    5..=6 => Outcome::Timeout,
                    7..=8 => Outcome::Permanent,
                    _ => Outcome::Panic,
                };
            }
        }
        Outcome::Success
    }

    /// The provider's first count metric: one point per day needs no currency.
    fn metric(&self) -> Result<MetricSpec> {
        self.descriptor
            .metrics
            .iter()
            .find(|m| m.unit == Unit::Count)
            .copied()
            .ok_or_else(|| Error::config("the mock needs a provider with a count metric"))
    }

    fn points(&self, request: &SyncRequest<'_>) -> Result<Vec<KpiPoint>> {
        let i = request.integration;
        let mut out = Vec::new();
        let mut day = request.window.from;
        while day <= request.window.to {
            let value = Decimal::from(chrono::Datelike::ordinal(&day));
            out.push(KpiPoint::new(
                i.workspace.clone(),
                i.id,
                self.metric()?,
                day,
                value,
                None,
            )?);
            day += chrono::Duration::days(1);
        }
        Ok(out)
    }
}

#[async_trait]
impl ProviderAdapter for MockAdapter {
    fn descriptor(&self) -> &ProviderDescriptor {
        &self.descriptor
    }

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        let credentials = match request {
            ConnectRequest::ApiKey { key } => ConnectionCredentials::ApiKey { key, webhook: None },
            ConnectRequest::OAuthCode { .. } => ConnectionCredentials::OAuth(OAuthTokens {
                access_token: SecretString::from("mock-access-0".to_owned()),
                refresh_token: Some(SecretString::from("mock-refresh".to_owned())),
                expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
                scopes: vec![],
            }),
        };
        Ok(ConnectOutcome {
            credentials,
            settings: Settings::new(),
            needs_configuration: false,
            account: None,
        })
    }

    async fn options(&self, _: &Integration, _: &ConnectionCredentials) -> Result<ProviderOptions> {
        Ok(ProviderOptions {
            setting: String::new(),
            options: vec![],
            note: None,
        })
    }

    fn validate_settings(&self, _: &Settings) -> Result<()> {
        Ok(())
    }

    async fn health(&self, _: &Integration, _: &ConnectionCredentials) -> Result<()> {
        Ok(())
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        self.sync_calls.fetch_add(1, Ordering::SeqCst);
        if let ConnectionCredentials::OAuth(t) = request.credentials {
            self.tokens_used
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(t.access_token.expose_secret().to_owned());
        }
        let mut refreshed = None;
        match self.next_outcome(request.integration.id) {
            Outcome::Success => {}
            Outcome::SuccessWithNewToken => {
                refreshed = Some(self.refresh(request.credentials).await?);
            }
            Outcome::HeldThenNewToken => {
                self.entered.notify_one();
                self.release.notified().await;
                refreshed = Some(self.refresh(request.credentials).await?);
            }
            Outcome::Slow(d) => tokio::time::sleep(d).await,
            Outcome::RateLimited(wait) => {
                return Err(Error::rate_limited(Some(wait), "mock quota exhausted"));
            }
            Outcome::Transient => return Err(Error::transient("mock provider returned 500")),
            Outcome::Timeout => {
                tokio::time::sleep(Duration::from_secs(3600)).await;
            }
            Outcome::Permanent => return Err(Error::config("mock property was deleted")),
            Outcome::Auth => return Err(Error::reauth("mock token was revoked")),
            Outcome::Panic => panic!("mock adapter panicked"),
        }
        Ok(SyncResult {
            points: self.points(&request)?,
            provider_calls: 1,
            quota_remaining: None,
            refreshed_credentials: refreshed,
        })
    }

    async fn disconnect(&self, _: &ConnectionCredentials) -> Result<()> {
        Ok(())
    }

    async fn refresh(&self, credentials: &ConnectionCredentials) -> Result<ConnectionCredentials> {
        let n = self.refresh_calls.fetch_add(1, Ordering::SeqCst) + 1;
        // Wide enough for concurrent workers to meet at the lease.
        tokio::time::sleep(self.refresh_delay).await;
        let rotate = self.hold_next_refresh.swap(false, Ordering::SeqCst);
        if rotate {
            self.entered.notify_one();
            self.release.notified().await;
        }
        let scopes = match credentials {
            ConnectionCredentials::OAuth(t) => t.scopes.clone(),
            ConnectionCredentials::ApiKey { .. } => vec![],
        };
        Ok(ConnectionCredentials::OAuth(OAuthTokens {
            access_token: SecretString::from(format!("mock-access-{n}")),
            // No new refresh token, like Google (the engine keeps the old
            // one), unless this refresh rotates it.
            refresh_token: rotate.then(|| SecretString::from(format!("mock-refresh-{n}"))),
            expires_at: Some(Utc::now() + chrono::Duration::hours(1)),
            scopes,
        }))
    }
}
