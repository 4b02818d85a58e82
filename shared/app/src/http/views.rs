//! What the API shows of the domain: never credentials, never internals.

use chrono::{DateTime, NaiveDate, Utc};
use kpi_core::integration::{ErrorRecord, NoticeRecord, WebhookSubscription};
use kpi_core::job::JobTrigger;
use kpi_core::kpi::DateRange;
use kpi_core::metric::Unit;
use kpi_core::{Integration, IntegrationStatus, JobStatus, Provider, SyncJob};
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Serialize, ToSchema)]
pub struct IntegrationView {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    pub workspace: String,
    pub provider: Provider,
    pub status: IntegrationStatus,
    pub display_name: String,
    #[schema(value_type = Object)]
    pub settings: serde_json::Map<String, serde_json::Value>,
    /// What the chosen options are called at the provider, by setting key
    /// (`{"property": "Demo Shop"}`).
    pub choice_names: std::collections::BTreeMap<String, String>,
    pub sync_interval_minutes: u32,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<ErrorRecord>,
    /// Whether credentials are stored (they are never shown).
    pub has_credentials: bool,
    /// When credentials that cannot be refreshed (Meta's) stop working.
    pub credentials_expire_at: Option<DateTime<Utc>>,
    /// They stop working within 7 days: reconnect to keep syncing.
    pub expires_soon: bool,
    /// Whether the provider sends us this integration's webhook events.
    pub webhooks: Option<WebhookSubscription>,
    /// The last notice about it, and whether it could be emailed.
    pub last_notice: Option<NoticeRecord>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl IntegrationView {
    /// The integration as shown at `now`.
    pub fn at(i: &Integration, now: DateTime<Utc>) -> Self {
        Self {
            id: i.id.to_string(),
            workspace: i.workspace.to_string(),
            provider: i.provider,
            status: i.status(),
            display_name: i.display_name.clone(),
            settings: i.settings.clone(),
            choice_names: i.choice_names.clone(),
            sync_interval_minutes: i.sync_interval_minutes,
            next_sync_at: i.next_sync_at,
            last_sync_at: i.last_sync_at,
            last_success_at: i.last_success_at,
            last_error: i.last_error.clone(),
            has_credentials: i.credentials.is_some(),
            credentials_expire_at: i.credentials_expire_at,
            expires_soon: i.expires_soon(now),
            webhooks: i.webhooks.clone(),
            last_notice: i.last_notice.clone(),
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct IntegrationPage {
    pub items: Vec<IntegrationView>,
    /// Pass as `cursor` for the next page; absent on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct StatusView {
    pub status: IntegrationStatus,
    pub last_sync_at: Option<DateTime<Utc>>,
    pub next_sync_at: Option<DateTime<Utc>>,
    pub last_success_at: Option<DateTime<Utc>>,
    pub last_error: Option<ErrorRecord>,
    pub credentials_expire_at: Option<DateTime<Utc>>,
    /// Credentials stop working within 7 days: reconnect to keep syncing.
    pub expires_soon: bool,
    /// Whether the provider sends us this integration's webhook events.
    pub webhooks: Option<WebhookSubscription>,
}

#[derive(Serialize, ToSchema)]
pub struct JobView {
    #[schema(value_type = String, format = Uuid)]
    pub id: String,
    #[schema(value_type = String, format = Uuid)]
    pub integration: String,
    pub provider: Provider,
    pub trigger: JobTrigger,
    pub window: Option<DateRange>,
    pub status: JobStatus,
    pub attempts: u32,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub rows_written: u64,
    pub provider_calls: u32,
    pub last_error: Option<ErrorRecord>,
}

impl From<&SyncJob> for JobView {
    fn from(j: &SyncJob) -> Self {
        Self {
            id: j.id.to_string(),
            integration: j.integration.to_string(),
            provider: j.provider,
            trigger: j.trigger,
            window: j.window,
            status: j.status(),
            attempts: j.attempts,
            created_at: j.created_at,
            started_at: j.started_at,
            finished_at: j.finished_at,
            rows_written: j.rows_written,
            provider_calls: j.provider_calls,
            last_error: j.last_error.clone(),
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct JobPage {
    pub items: Vec<JobView>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct SyncAccepted {
    #[schema(value_type = String, format = Uuid)]
    pub job_id: String,
    pub status: JobStatus,
    /// `true`: a job of this integration was already queued or running, and
    /// this is that job (no second one is made).
    #[serde(default)]
    pub existing: bool,
}

#[derive(Serialize, ToSchema)]
pub struct HealthView {
    /// `healthy`, `needs_reauth`, `no_access`, `quota_exhausted` or `unavailable`.
    pub state: String,
    pub message: Option<String>,
    pub checked_at: DateTime<Utc>,
}

#[derive(Serialize, ToSchema)]
pub struct KpiPointView {
    pub date: NaiveDate,
    #[schema(value_type = String, format = Uuid)]
    pub integration: String,
    /// Exact decimal, as a string.
    #[schema(value_type = String, example = "1234.56")]
    pub value: rust_decimal::Decimal,
    pub currency: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct KpiSeries {
    pub metric: String,
    pub unit: Unit,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub points: Vec<KpiPointView>,
}

#[derive(Serialize, ToSchema)]
pub struct ProviderMetric {
    pub name: String,
    pub unit: Unit,
}
