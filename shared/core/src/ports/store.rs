//! The store port: every persistent operation the system needs, grouped by area.
//!
//! Workspace data is reached only through a [`WorkspaceScope`]; cross-workspace
//! reads for operators take an [`AdminScope`]. The two backends (DynamoDB and
//! SQLite) pass one conformance suite, so the semantics below are the contract:
//!
//! * writes of versioned records are compare-and-swap on `version`; a lost race
//!   is a `Conflict` error and nothing is written;
//! * expiring records (OAuth states, dedupe keys, leases) count as absent once
//!   expired, whether or not they have been physically deleted yet;
//! * listings are paginated with opaque cursors.

use async_trait::async_trait;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::ids::{IntegrationId, JobId, WorkspaceId};
use crate::integration::Integration;
use crate::job::{JobStatus, SyncJob};
use crate::kpi::KpiPoint;
use crate::metric::Metric;
use crate::page::{Page, PageRequest};
use crate::provider::Provider;
use crate::scope::{AdminScope, WorkspaceScope};

/// An integration the scheduler should sync now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueIntegration {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
    pub next_sync_at: DateTime<Utc>,
}

#[async_trait]
pub trait IntegrationStore: Send + Sync {
    /// Inserts a new integration (version 0 becomes 1). `Conflict` if the id exists.
    async fn create_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration>;

    async fn get_integration(
        &self,
        scope: &WorkspaceScope,
        id: IntegrationId,
    ) -> Result<Integration>;

    /// Integrations of the workspace, in a stable order (by id).
    async fn list_integrations(
        &self,
        scope: &WorkspaceScope,
        page: &PageRequest,
    ) -> Result<Page<Integration>>;

    /// Writes `integration` if the stored version still equals
    /// `integration.version`; returns it with the version incremented.
    async fn update_integration(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<Integration>;

    /// Removes the record; `false` when there was none (idempotent).
    async fn delete_integration(&self, scope: &WorkspaceScope, id: IntegrationId) -> Result<bool>;

    /// Connected integrations whose next sync time is at or before `now`, earliest
    /// first. Served by an index of due integrations only, never a full scan.
    async fn due_integrations(
        &self,
        now: DateTime<Utc>,
        page: &PageRequest,
    ) -> Result<Page<DueIntegration>>;
}

/// Filter of the operators' job listing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobFilter {
    pub status: JobStatus,
    pub provider: Option<Provider>,
    pub workspace: Option<WorkspaceId>,
    /// Jobs last updated in `[since, until)`.
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
}

#[async_trait]
pub trait JobStore: Send + Sync {
    /// Inserts the job unless one with its id exists; `false` if it did (so a job
    /// created twice for the same scheduler tick stays one job).
    async fn create_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<bool>;

    /// In one atomic step: writes `integration` (compare-and-swap on its version,
    /// e.g. to move its next sync time) and inserts `job`. If either condition
    /// fails nothing is written and the error is `Conflict`; this is what keeps a
    /// scheduler tick that fires twice from creating two jobs.
    async fn create_job_with_integration(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        integration: &Integration,
    ) -> Result<Integration>;

    async fn get_job(&self, scope: &WorkspaceScope, id: JobId) -> Result<SyncJob>;

    /// Compare-and-swap on `job.version`, like integrations.
    async fn update_job(&self, scope: &WorkspaceScope, job: &SyncJob) -> Result<SyncJob>;

    /// A sync's last write: the job (compare-and-swap, as [`Self::update_job`])
    /// and the KPI points it brought. The embedded store makes it one
    /// transaction: a lost race writes neither, and a sync costs one commit,
    /// not two. A store whose transactions cannot hold a sync's points
    /// (DynamoDB takes 100 items) writes the points first, then the job; a
    /// lost race then leaves points the winning attempt overwrites with its own
    /// (upserts of the same keys).
    async fn update_job_with_kpis(
        &self,
        scope: &WorkspaceScope,
        job: &SyncJob,
        points: &[KpiPoint],
    ) -> Result<SyncJob>;

    /// Jobs of one integration, newest first.
    async fn list_jobs(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>>;

    /// Operators: one job by id, whatever its workspace.
    async fn find_job(&self, admin: &AdminScope, id: JobId) -> Result<SyncJob>;

    /// Operators: jobs in one status across workspaces, most recently updated first.
    async fn list_jobs_by_status(
        &self,
        admin: &AdminScope,
        filter: &JobFilter,
        page: &PageRequest,
    ) -> Result<Page<SyncJob>>;
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KpiQuery {
    pub metric: Metric,
    pub from: NaiveDate,
    pub to: NaiveDate,
    pub integration: Option<IntegrationId>,
}

#[async_trait]
pub trait KpiStore: Send + Sync {
    /// Writes the points, overwriting any with the same (integration, metric,
    /// date). Every point must belong to the scope's workspace.
    async fn upsert_kpis(&self, scope: &WorkspaceScope, points: &[KpiPoint]) -> Result<usize>;

    /// Points of one metric in `[from, to]`, by date then integration.
    async fn query_kpis(&self, scope: &WorkspaceScope, query: &KpiQuery) -> Result<Vec<KpiPoint>>;
}

/// A pending OAuth authorization, stored at start and consumed once at callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OAuthState {
    /// Hash of the `state` value sent to the provider; the raw value is not stored.
    pub key: String,
    pub workspace: WorkspaceId,
    pub user: String,
    pub provider: Provider,
    pub integration: Option<IntegrationId>,
    /// Hash of the browser-binding cookie value.
    pub browser_binding: String,
    /// PKCE verifier (only meaningful for one 10-minute exchange).
    pub pkce_verifier: Option<String>,
    pub return_to: Option<String>,
    pub expires_at: DateTime<Utc>,
}

#[async_trait]
pub trait OAuthStateStore: Send + Sync {
    async fn put_oauth_state(&self, scope: &WorkspaceScope, state: &OAuthState) -> Result<()>;

    /// Whether the state exists and has not expired at `now`, leaving it in
    /// place: for an answer that refuses an unknown state before the
    /// callback's own work (which consumes it) can start.
    async fn oauth_state_held(&self, key: &str, now: DateTime<Utc>) -> Result<bool>;

    /// Removes and returns the state if it exists and has not expired at `now`.
    /// Of two concurrent consumers exactly one gets it.
    async fn consume_oauth_state(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<OAuthState>>;
}

/// Short-lived records by key, each gone at its expiry for every method: the
/// pages' sign-in sessions and sign-in attempts. Not workspace data: a key is
/// the hash of a secret only its browser holds.
#[async_trait]
pub trait EphemeralStore: Send + Sync {
    /// Writes `body` under `key` until `expires_at`, replacing what was there.
    async fn put_ephemeral(
        &self,
        key: &str,
        body: &serde_json::Value,
        expires_at: DateTime<Utc>,
    ) -> Result<()>;

    /// The record, if it exists and has not expired at `now`.
    async fn get_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>>;

    /// Removes and returns the record if it has not expired at `now`. Of two
    /// concurrent takers exactly one gets it.
    async fn take_ephemeral(
        &self,
        key: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<serde_json::Value>>;

    /// Removes the record (idempotent).
    async fn delete_ephemeral(&self, key: &str) -> Result<()>;
}

#[async_trait]
pub trait DedupeStore: Send + Sync {
    /// Records `key` until `expires_at`. `true` if it was not already recorded (or
    /// its record had expired): the caller is the first and should act.
    async fn first_seen(
        &self,
        key: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Removes `key`, so the next `first_seen` of it is first again (the
    /// first caller failed to act and hands the work back). Idempotent.
    async fn forget(&self, key: &str) -> Result<()>;
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EmailRecord {
    /// Our id, also the `Idempotency-Key` sent to Resend.
    pub id: String,
    pub workspace: WorkspaceId,
    pub kind: String,
    pub to: Vec<String>,
    pub subject: String,
    pub provider_message_id: Option<String>,
    /// The workspace's Resend integration that sent it (`None`: the platform's account).
    #[serde(default)]
    pub integration: Option<IntegrationId>,
    pub status: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[async_trait]
pub trait EmailStore: Send + Sync {
    /// Inserts or replaces the record.
    async fn put_email(&self, scope: &WorkspaceScope, email: &EmailRecord) -> Result<()>;
    async fn get_email(&self, scope: &WorkspaceScope, id: &str) -> Result<Option<EmailRecord>>;

    /// Adds an address to the workspace's suppression list (bounces, complaints).
    async fn suppress(
        &self,
        scope: &WorkspaceScope,
        address: &str,
        reason: &str,
        at: DateTime<Utc>,
    ) -> Result<()>;
    async fn is_suppressed(&self, scope: &WorkspaceScope, address: &str) -> Result<bool>;

    /// The workspace's suppressed addresses, by address.
    async fn list_suppressions(&self, scope: &WorkspaceScope) -> Result<Vec<Suppression>>;

    /// Lifts a suppression; `false` when the address was not suppressed.
    async fn unsuppress(&self, scope: &WorkspaceScope, address: &str) -> Result<bool>;

    /// The emails `integration` sent with `created_at` in `[from, to)`,
    /// oldest first (what its delivery KPIs are counted from).
    async fn emails_sent_by(
        &self,
        scope: &WorkspaceScope,
        integration: IntegrationId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<EmailRecord>>;

    /// The workspace and record id of the email the provider knows as
    /// `provider_message_id` (recorded by `put_email`). For the system only:
    /// a provider's signed webhook names emails, not workspaces.
    async fn email_by_provider_id(
        &self,
        provider_message_id: &str,
    ) -> Result<Option<(WorkspaceId, String)>>;
}

/// An address no email goes to, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suppression {
    pub address: String,
    pub reason: String,
    pub at: DateTime<Utc>,
}

#[async_trait]
pub trait LeaseStore: Send + Sync {
    /// Takes the lease `name` for `owner` until `expires_at` if it is free, expired
    /// or already held by `owner`. `true` when `owner` holds it afterwards.
    async fn try_acquire_lease(
        &self,
        name: &str,
        owner: &str,
        expires_at: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Result<bool>;

    /// Frees the lease if `owner` still holds it.
    async fn release_lease(&self, name: &str, owner: &str) -> Result<()>;
}

/// One integration using a provider account or resource.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct AccountLink {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
}

/// Which integrations use one provider account or resource, across
/// workspaces: revoking at the provider ends that account's access for all of
/// them, and a provider's webhook about a resource concerns all of them.
/// `account` is an opaque key (a hash of the provider and its id); only the
/// system (never a workspace's caller) reads links, to find whom an event or
/// a revocation concerns.
#[async_trait]
pub trait AccountStore: Send + Sync {
    /// Records that `integration` of `workspace` uses `account` (idempotent).
    async fn link_account(
        &self,
        account: &str,
        workspace: &WorkspaceId,
        integration: IntegrationId,
    ) -> Result<()>;
    /// Forgets it (idempotent).
    async fn unlink_account(&self, account: &str, integration: IntegrationId) -> Result<()>;
    /// Up to `limit` integrations that use `account`.
    async fn account_integrations(&self, account: &str, limit: u32) -> Result<Vec<AccountLink>>;
}

/// Small per-workspace documents by name: who gets notices
/// (`notifications`), report settings. Written whole; last write wins.
#[async_trait]
pub trait WorkspaceSettingsStore: Send + Sync {
    async fn get_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
    ) -> Result<Option<serde_json::Value>>;
    async fn put_workspace_setting(
        &self,
        scope: &WorkspaceScope,
        name: &str,
        value: &serde_json::Value,
    ) -> Result<()>;
}

/// One firing or clearing of an alert rule, with the values behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertEvent {
    /// Names what happened (`{rule}/fired/{first day}..{last day}`): an
    /// event recorded twice stays one.
    pub id: String,
    pub rule: crate::ids::AlertId,
    pub workspace: WorkspaceId,
    /// `fired` or `cleared`.
    pub kind: String,
    pub days: Vec<AlertDay>,
    /// Whether an email went out, and why not when not.
    pub emailed: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub at: DateTime<Utc>,
}

/// The values of one day of an alert event (decimals as strings).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDay {
    pub date: NaiveDate,
    pub value: Option<rust_decimal::Decimal>,
    pub previous: Option<rust_decimal::Decimal>,
    pub change_percent: Option<rust_decimal::Decimal>,
}

/// Alert rules and their history, per workspace.
#[async_trait]
pub trait AlertStore: Send + Sync {
    /// Inserts a new rule (version 0 becomes 1); `Conflict` if the id exists.
    async fn create_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &crate::alert::AlertRule,
    ) -> Result<crate::alert::AlertRule>;
    async fn get_alert(
        &self,
        scope: &WorkspaceScope,
        id: crate::ids::AlertId,
    ) -> Result<crate::alert::AlertRule>;
    /// Every rule of the workspace (at most a few hundred), by id.
    async fn list_alerts(&self, scope: &WorkspaceScope) -> Result<Vec<crate::alert::AlertRule>>;
    /// Compare-and-swap on `version`, like integrations.
    async fn update_alert(
        &self,
        scope: &WorkspaceScope,
        rule: &crate::alert::AlertRule,
    ) -> Result<crate::alert::AlertRule>;
    /// Removes the rule and its history; `false` when there was none.
    async fn delete_alert(&self, scope: &WorkspaceScope, id: crate::ids::AlertId) -> Result<bool>;
    /// Records an event; `false` when one with its id was recorded before.
    async fn add_alert_event(&self, scope: &WorkspaceScope, event: &AlertEvent) -> Result<bool>;
    /// The rule's events, newest first.
    async fn list_alert_events(
        &self,
        scope: &WorkspaceScope,
        rule: crate::ids::AlertId,
        limit: u32,
    ) -> Result<Vec<AlertEvent>>;
}

/// When each workspace's scheduled report is next due: an index of due
/// reports, so the scheduler never scans every workspace.
#[async_trait]
pub trait ReportStore: Send + Sync {
    /// Sets (or with `None` removes) the workspace's next report time.
    async fn schedule_report(
        &self,
        scope: &WorkspaceScope,
        next: Option<DateTime<Utc>>,
    ) -> Result<()>;
    /// Workspaces whose report is due at `now`, earliest first, at most `limit`.
    async fn due_reports(
        &self,
        now: DateTime<Utc>,
        limit: u32,
    ) -> Result<Vec<(WorkspaceId, DateTime<Utc>)>>;
}

/// Everything a full deployment needs from its store.
pub trait Store:
    IntegrationStore
    + JobStore
    + KpiStore
    + OAuthStateStore
    + EphemeralStore
    + DedupeStore
    + EmailStore
    + LeaseStore
    + AccountStore
    + WorkspaceSettingsStore
    + AlertStore
    + ReportStore
{
}

impl<T> Store for T where
    T: IntegrationStore
        + JobStore
        + KpiStore
        + OAuthStateStore
        + EphemeralStore
        + DedupeStore
        + EmailStore
        + LeaseStore
        + AccountStore
        + WorkspaceSettingsStore
        + AlertStore
        + ReportStore
{
}

/// Suppression and address keys compare case-insensitively.
pub fn normalize_address(address: &str) -> String {
    address.trim().to_ascii_lowercase()
}
