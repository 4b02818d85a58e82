//! The contract every provider integration implements.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::credentials::ConnectionCredentials;
use crate::error::Result;
use crate::integration::Integration;
use crate::kpi::{DateRange, KpiPoint};
use crate::provider::Provider;

/// What a connect step starts from: the credentials just obtained (OAuth code
/// exchange result or an API key typed by the user).
#[derive(Debug, Clone)]
pub struct ConnectRequest {
    pub credentials: ConnectionCredentials,
}

/// The adapter's verdict on fresh credentials.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    /// Possibly refined credentials (e.g. a long-lived token).
    pub credentials: ConnectionCredentials,
    /// A name for the account to show in the UI.
    pub display_name: String,
    /// Whether the user still has to choose something (property, ad account).
    pub needs_configuration: bool,
}

/// One sync of one integration over one window of reporting days.
#[derive(Debug, Clone)]
pub struct SyncRequest<'a> {
    pub integration: &'a Integration,
    pub credentials: &'a ConnectionCredentials,
    pub window: DateRange,
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub points: Vec<KpiPoint>,
    pub provider_calls: u32,
    /// Smallest share of any provider quota left after the sync, in `[0, 1]`.
    pub quota_remaining: Option<Decimal>,
    /// Credentials the adapter refreshed during the sync, to be stored.
    pub refreshed_credentials: Option<ConnectionCredentials>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    NeedsReauth { message: String },
    NoAccess { message: String },
    QuotaExhausted { until: Option<DateTime<Utc>> },
    Unavailable { message: String },
}

#[async_trait]
pub trait IntegrationAdapter: Send + Sync {
    fn provider(&self) -> Provider;

    /// Validates fresh credentials with the provider.
    async fn connect(&self, request: ConnectRequest) -> Result<ConnectOutcome>;

    /// Fetches the window's KPI points with the fewest calls the API allows.
    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult>;

    /// A cheap live call that tells whether syncing can work right now.
    async fn health_check(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<HealthStatus>;

    /// Revokes the credentials at the provider where it can. Callers erase the
    /// stored credentials whatever this returns.
    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()>;

    /// New credentials for ones about to expire (OAuth refresh). Providers without
    /// refresh (API keys, Meta's long-lived tokens) return them unchanged. A
    /// provider that rotates refresh tokens returns the new one; one that does not
    /// may return none, and the caller keeps the old.
    async fn refresh(&self, credentials: &ConnectionCredentials) -> Result<ConnectionCredentials> {
        Ok(credentials.clone())
    }

    /// Longest window one `sync` call should cover; longer backfills are chunked.
    fn max_window_days(&self) -> u32 {
        90
    }
}
