//! The use cases behind the integration routes, independent of HTTP: create
//! with an API key, update, disconnect, request a sync, options, health, and
//! the two halves of an OAuth connect. Each reaches its provider only through
//! the registry, and tenant data only through a [`WorkspaceScope`].

use chrono::Duration;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::job::JobTrigger;
use kpi_core::kpi::DateRange;
use kpi_core::ports::provider::{
    AuthorizationRequest, ConnectRequest, HealthStatus, ProviderAdapter, ProviderDescriptor,
    ProviderOptions, Settings,
};
use kpi_core::ports::store::OAuthState;
use kpi_core::ports::{CredentialContext, QueueName};
use kpi_core::provider::AuthMode;
use kpi_core::{
    Error, Integration, IntegrationId, IntegrationStatus, JobId, Principal, Provider, Result,
    SyncJob, WorkspaceScope,
};
use kpi_providers::oauth::{random_token, sha256_b64};
use secrecy::SecretString;

use crate::state::AppState;

/// How long a started authorization may take.
pub const STATE_TTL_MINUTES: i64 = 10;

/// Longest window one manual sync may ask for.
pub const MAX_SYNC_DAYS: i64 = 400;

/// Read-modify-write with optimistic versioning, retried on a lost race
/// (the one policy of `kpi_sync::cas`).
pub async fn modify_integration(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
    change: impl FnMut(&mut Integration) -> Result<()>,
) -> Result<Integration> {
    kpi_sync::cas::modify_integration(&*state.store, &*state.clock, scope, id, change).await
}

/// The integration's credentials, decrypted for one use.
pub async fn open_credentials(
    state: &AppState,
    integration: &Integration,
) -> Result<ConnectionCredentials> {
    let sealed = integration
        .credentials
        .as_ref()
        .ok_or_else(|| Error::conflict("the integration is not connected"))?;
    state
        .vault
        .open(&CredentialContext::of(integration), sealed)
        .await
}

fn adapter(state: &AppState, provider: Provider) -> Result<&dyn ProviderAdapter> {
    Ok(state.registry.adapter(provider)?.as_ref())
}

pub fn check_display_name(name: &str) -> Result<String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
        return Err(Error::validation(
            "display_name",
            "must be 1 to 100 printable characters",
        ));
    }
    Ok(name.to_owned())
}

/// Connects an API-key provider: the key is checked with the provider, stored
/// encrypted and never shown again.
pub async fn create_with_key(
    state: &AppState,
    scope: &WorkspaceScope,
    provider: &str,
    api_key: &str,
    display_name: Option<&str>,
) -> Result<Integration> {
    let provider = state.registry.parse("provider", provider)?;
    let descriptor = state.registry.descriptor(provider)?;
    if descriptor.auth != AuthMode::ApiKey {
        return Err(Error::validation(
            "provider",
            format!(
                "{} connects with OAuth: open /v1/oauth/{provider}/start",
                descriptor.display_name
            ),
        ));
    }
    let key = api_key.trim();
    if key.is_empty() || key.len() > 256 || key.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::validation(
            "api_key",
            format!(
                "must be the API key as {} shows it",
                descriptor.display_name
            ),
        ));
    }
    let display_name = display_name
        .map(check_display_name)
        .transpose()?
        .unwrap_or_else(|| descriptor.display_name.to_owned());
    let outcome = adapter(state, provider)?
        .connect(ConnectRequest::ApiKey {
            key: SecretString::from(key.to_owned()),
        })
        .await?;
    let now = state.clock.now();
    let mut integration = Integration::new(
        IntegrationId::new_random(),
        scope.workspace().clone(),
        provider,
        display_name,
        now,
    );
    integration.settings.extend(outcome.settings);
    // An endpoint of its own for the account's webhook events, where the
    // provider lets the key register one: best effort, the outcome shown.
    let endpoint = webhook_endpoint(state, provider, integration.id);
    let mut credentials = outcome.credentials;
    let registered = adapter(state, provider)?
        .register_webhook(&credentials, &endpoint)
        .await;
    match registered {
        Ok(None) => {}
        Ok(Some(with_webhook)) => {
            credentials = with_webhook;
            integration.webhooks = Some(kpi_core::integration::WebhookSubscription {
                resource: endpoint.clone(),
                subscribed: true,
                message: None,
                at: now,
            });
        }
        Err(e) => {
            tracing::warn!(error = %e.log_chain(), "webhook registration failed");
            integration.webhooks = Some(kpi_core::integration::WebhookSubscription {
                resource: endpoint.clone(),
                subscribed: false,
                message: Some(e.message().to_owned()),
                at: now,
            });
        }
    }
    integration.credentials = Some(
        state
            .vault
            .seal(&CredentialContext::of(&integration), &credentials)
            .await?,
    );
    let status = if outcome.needs_configuration {
        IntegrationStatus::NeedsConfiguration
    } else {
        IntegrationStatus::Connected
    };
    integration.transition(status, now)?;
    let created = state.store.create_integration(scope, &integration).await?;
    if created.webhooks.as_ref().is_some_and(|w| w.subscribed) {
        // Deliveries name the integration alone: this link finds its workspace.
        state
            .store
            .link_account(&endpoint_key(created.id), &created.workspace, created.id)
            .await?;
    }
    Ok(created)
}

/// `{KPI_PUBLIC_URL}/v1/webhooks/{provider}/{integration}`: where one
/// connection's own webhook events arrive.
fn webhook_endpoint(state: &AppState, provider: Provider, id: IntegrationId) -> String {
    format!(
        "{}/v1/webhooks/{}/{id}",
        state.config.public_url.as_str().trim_end_matches('/'),
        provider.as_str().replace('_', "-")
    )
}

/// The account-link key under which an integration's own webhook endpoint
/// finds it.
pub(crate) fn endpoint_key(id: IntegrationId) -> String {
    sha256_b64(&format!("webhook-endpoint:{id}"))
}

/// A change a user asks for.
#[derive(Debug, Default)]
pub struct IntegrationPatch {
    /// The signing secret of a webhook the user added at the provider by
    /// hand (write-only: kept sealed with the credentials).
    pub webhook_secret: Option<String>,
    pub display_name: Option<String>,
    pub settings: Option<Settings>,
    pub sync_interval_minutes: Option<u32>,
    pub paused: Option<bool>,
}

/// Settings after `patch`: only the provider's settings, parsed by the
/// provider; a choice from the options must be one the account can use.
async fn merged_settings(
    state: &AppState,
    current: &Integration,
    patch: &Settings,
) -> Result<(Settings, Vec<(String, String)>)> {
    let descriptor = state.registry.descriptor(current.provider)?;
    for key in patch.keys() {
        if descriptor.setting(key).is_none() {
            return Err(Error::validation(
                format!("settings.{key:.40}"),
                format!("{} has no setting named {key:.40}", descriptor.display_name),
            ));
        }
    }
    let mut merged = current.settings.clone();
    for (key, value) in patch {
        if value.is_null() {
            merged.remove(key);
        } else {
            merged.insert(key.clone(), value.clone());
        }
    }
    let adapter = adapter(state, current.provider)?;
    adapter.validate_settings(&merged)?;
    let names = check_choices(state, adapter, descriptor, current, patch).await?;
    Ok((merged, names))
}

async fn check_choices(
    state: &AppState,
    adapter: &dyn ProviderAdapter,
    descriptor: &ProviderDescriptor,
    current: &Integration,
    patch: &Settings,
) -> Result<Vec<(String, String)>> {
    let chosen: Vec<(&String, &str)> = patch
        .iter()
        .filter(|(k, _)| descriptor.setting(k).is_some_and(|s| s.must_be_an_option))
        .filter_map(|(k, v)| v.as_str().map(|v| (k, v)))
        .collect();
    if chosen.is_empty() {
        return Ok(Vec::new());
    }
    let credentials = open_credentials(state, current).await?;
    let options = adapter.options(current, &credentials).await?;
    let mut names = Vec::new();
    for (key, value) in chosen {
        match options.options.iter().find(|o| o.id == value) {
            None => {
                return Err(Error::validation(
                    format!("settings.{key}"),
                    "the connected account has no access to this choice; pick one from the options",
                ));
            }
            Some(option) if !option.selectable => {
                return Err(Error::validation(
                    format!("settings.{key}"),
                    format!(
                        "{} cannot be chosen in its current state; pick an active one",
                        option.name
                    ),
                ));
            }
            Some(option) => names.push((key.clone(), option.name.clone())),
        }
    }
    Ok(names)
}

pub async fn update(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
    patch: IntegrationPatch,
) -> Result<Integration> {
    let display_name = patch
        .display_name
        .as_deref()
        .map(check_display_name)
        .transpose()?;
    let current = state.store.get_integration(scope, id).await?;
    if current.status() == IntegrationStatus::Disconnected {
        return Err(Error::conflict(
            "the integration is disconnected; connect it again",
        ));
    }
    let descriptor = state.registry.descriptor(current.provider)?.clone();
    let sealed_with_webhook = match &patch.webhook_secret {
        None => None,
        Some(secret) => {
            let credentials = open_credentials(state, &current).await?;
            let with =
                adapter(state, current.provider)?.with_webhook_secret(&credentials, secret)?;
            Some(
                state
                    .vault
                    .seal(&CredentialContext::of(&current), &with)
                    .await?,
            )
        }
    };
    let settings = match &patch.settings {
        Some(p) => Some(merged_settings(state, &current, p).await?),
        None => None,
    };
    let now = state.clock.now();
    let endpoint = webhook_endpoint(state, current.provider, id);
    let updated = modify_integration(state, scope, id, |i| {
        if let Some(sealed) = &sealed_with_webhook {
            if i.credentials != current.credentials {
                return Err(Error::conflict(
                    "the integration was reconnected meanwhile; enter the secret again",
                ));
            }
            i.credentials = Some(sealed.clone());
            i.webhooks = Some(kpi_core::integration::WebhookSubscription {
                resource: endpoint.clone(),
                subscribed: true,
                message: None,
                at: now,
            });
        }
        if let Some(name) = &display_name {
            i.display_name = name.clone();
        }
        if let Some(minutes) = patch.sync_interval_minutes {
            i.set_sync_interval(minutes)?;
        }
        if let Some((settings, names)) = &settings {
            i.settings = settings.clone();
            // A name is only right for the value it was picked with.
            i.choice_names.retain(|key, _| i.settings.contains_key(key));
            i.choice_names.extend(names.iter().cloned());
            if i.status() == IntegrationStatus::NeedsConfiguration
                && descriptor.settings_complete(&i.settings)
            {
                i.transition(IntegrationStatus::Connected, now)?;
            }
        }
        match patch.paused {
            Some(true) if i.status() != IntegrationStatus::Paused => {
                i.transition(IntegrationStatus::Paused, now)?
            }
            Some(false) if i.status() == IntegrationStatus::Paused => {
                let to = if descriptor.settings_complete(&i.settings) {
                    IntegrationStatus::Connected
                } else {
                    IntegrationStatus::NeedsReauth
                };
                i.transition(to, now)?;
                i.next_sync_at = Some(now);
            }
            _ => {}
        }
        Ok(())
    })
    .await?;
    if sealed_with_webhook.is_some() {
        state
            .store
            .link_account(&endpoint_key(id), &updated.workspace, id)
            .await?;
    }
    follow_webhook_resource(state, scope, &current, updated).await
}

/// What a disconnect did at the provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProviderAccess {
    /// Access was revoked at the provider.
    Revoked,
    /// Another live integration uses the same provider account: revoking
    /// would cut it off too, so only this integration's credentials were erased.
    KeptForOtherIntegrations,
    /// The provider could not revoke now; the credentials were erased anyway.
    NotRevoked,
    /// Nothing to revoke (an API key, or already disconnected).
    NothingToRevoke,
}

impl ProviderAccess {
    pub fn explain(self, provider: &str) -> String {
        match self {
            Self::Revoked => format!("access was revoked at {provider}"),
            Self::KeptForOtherIntegrations => format!(
                "the same {provider} account connects another integration, so its access at {provider} stays; \
                 only this integration's credentials were erased"
            ),
            Self::NotRevoked => format!(
                "{provider} could not revoke access now; the credentials were erased all the same \
                 (remove the app in the account's settings at {provider} to revoke it there)"
            ),
            Self::NothingToRevoke => "there was nothing to revoke at the provider".to_owned(),
        }
    }
}

/// The key under which integrations sharing one provider account are found.
fn account_key(provider: Provider, account: &str) -> String {
    sha256_b64(&format!("{provider}:{account}"))
}

/// When credentials that cannot be refreshed stop working (Meta's
/// long-lived token); `None` for refreshable ones and API keys.
fn lasting_until(credentials: &ConnectionCredentials) -> Option<chrono::DateTime<chrono::Utc>> {
    match credentials {
        ConnectionCredentials::OAuth(t) if t.refresh_token.is_none() => t.expires_at,
        _ => None,
    }
}

/// The link key of a provider resource whose webhook events concern the
/// integrations using it (a Meta ad account).
pub(crate) fn resource_key(provider: Provider, resource: &str) -> String {
    sha256_b64(&format!("{provider}:resource:{resource}"))
}

/// The integration's webhook resource (the value of the provider's
/// `webhook_resource` setting), if it has one.
fn webhook_resource<'a>(
    descriptor: &ProviderDescriptor,
    integration: &'a Integration,
) -> Option<&'a str> {
    integration
        .settings
        .get(descriptor.webhook_resource?)?
        .as_str()
}

/// Links the integration to its webhook resource (unlinking the one it had)
/// and asks the provider to send that resource's events. Best effort: the
/// outcome is recorded on the integration for its status, never an error.
async fn follow_webhook_resource(
    state: &AppState,
    scope: &WorkspaceScope,
    before: &Integration,
    after: Integration,
) -> Result<Integration> {
    let descriptor = state.registry.descriptor(after.provider)?;
    let (old, new) = (
        webhook_resource(descriptor, before),
        webhook_resource(descriptor, &after),
    );
    if old == new {
        return Ok(after);
    }
    if let Some(old) = old {
        state
            .store
            .unlink_account(&resource_key(after.provider, old), after.id)
            .await?;
    }
    let Some(new) = new else {
        return Ok(after);
    };
    state
        .store
        .link_account(
            &resource_key(after.provider, new),
            &after.workspace,
            after.id,
        )
        .await?;
    let outcome = async {
        let credentials = open_credentials(state, &after).await?;
        adapter(state, after.provider)?
            .subscribe_webhooks(&after, &credentials)
            .await
    }
    .await;
    let now = state.clock.now();
    let record = match outcome {
        Ok(()) => kpi_core::integration::WebhookSubscription {
            resource: new.to_owned(),
            subscribed: true,
            message: None,
            at: now,
        },
        Err(e) => {
            tracing::warn!(integration = %after.id, error = %e.log_chain(), "webhook subscription failed");
            kpi_core::integration::WebhookSubscription {
                resource: new.to_owned(),
                subscribed: false,
                message: Some(format!(
                    "{} will not tell us about changes; scheduled syncs go on: {}",
                    descriptor.display_name,
                    e.message()
                )),
                at: now,
            }
        }
    };
    modify_integration(state, scope, after.id, |i| {
        i.webhooks = Some(record.clone());
        Ok(())
    })
    .await
}

/// Revokes at the provider — unless another live integration uses the same
/// provider account, whose grant a revocation would end too — then erases the
/// credentials and keeps the integration as `disconnected`. Idempotent.
/// What a disconnect did, and at which provider (`None`: no such integration).
pub struct Disconnection {
    pub access: ProviderAccess,
    pub provider: Option<Provider>,
}

pub async fn disconnect(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
) -> Result<Disconnection> {
    let integration = match state.store.get_integration(scope, id).await {
        Ok(i) => i,
        Err(e) if e.is_not_found() => {
            return Ok(Disconnection {
                access: ProviderAccess::NothingToRevoke,
                provider: None,
            });
        }
        Err(e) => return Err(e),
    };
    let mut access = ProviderAccess::NothingToRevoke;
    if integration.credentials.is_some() {
        let shared = match &integration.account {
            Some(key) => state
                .store
                .account_integrations(key, 10)
                .await?
                .into_iter()
                .any(|other| other.integration != integration.id),
            None => false,
        };
        access = if shared {
            ProviderAccess::KeptForOtherIntegrations
        } else {
            let revoked = async {
                let credentials = open_credentials(state, &integration).await?;
                adapter(state, integration.provider)?
                    .disconnect(&credentials)
                    .await
            }
            .await;
            match revoked {
                Ok(())
                    if state.registry.descriptor(integration.provider)?.auth == AuthMode::OAuth =>
                {
                    ProviderAccess::Revoked
                }
                Ok(()) => ProviderAccess::NothingToRevoke,
                Err(e) => {
                    // Revocation is best effort; ours are erased whatever it answers.
                    tracing::warn!(
                        integration = %integration.id,
                        provider = %integration.provider,
                        error = %e.log_chain(),
                        "revocation at the provider failed; erasing the credentials anyway"
                    );
                    ProviderAccess::NotRevoked
                }
            }
        };
    }
    let now = state.clock.now();
    modify_integration(state, scope, id, |i| {
        i.transition(IntegrationStatus::Disconnected, now)
    })
    .await?;
    if let Some(key) = &integration.account {
        state.store.unlink_account(key, integration.id).await?;
    }
    state
        .store
        .unlink_account(&endpoint_key(integration.id), integration.id)
        .await?;
    if let Some(resource) = webhook_resource(
        state.registry.descriptor(integration.provider)?,
        &integration,
    ) {
        state
            .store
            .unlink_account(
                &resource_key(integration.provider, resource),
                integration.id,
            )
            .await?;
    }
    Ok(Disconnection {
        access,
        provider: Some(integration.provider),
    })
}

/// An integration that has credentials (options and health need them).
async fn connected(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
) -> Result<(Integration, ConnectionCredentials)> {
    let integration = state.store.get_integration(scope, id).await?;
    let credentials = open_credentials(state, &integration).await?;
    Ok((integration, credentials))
}

pub async fn options(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
) -> Result<ProviderOptions> {
    let (integration, credentials) = connected(state, scope, id).await?;
    adapter(state, integration.provider)?
        .options(&integration, &credentials)
        .await
}

pub async fn health(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
) -> Result<HealthStatus> {
    let (integration, credentials) = connected(state, scope, id).await?;
    let result = async {
        adapter(state, integration.provider)?
            .health(&integration, &credentials)
            .await
    }
    .await;
    Ok(HealthStatus::from_check(result, state.clock.now()))
}

/// Manual syncs one workspace may ask for per hour.
pub const MANUAL_SYNCS_PER_HOUR: u32 = 30;

/// The job queued or running for the integration, if any.
pub(crate) async fn active_job(
    state: &AppState,
    scope: &WorkspaceScope,
    integration: &Integration,
) -> Result<Option<SyncJob>> {
    let Some(id) = integration.active_job else {
        return Ok(None);
    };
    match state.store.get_job(scope, id).await {
        Ok(job) if !job.status().is_final() => Ok(Some(job)),
        Ok(_) => Ok(None),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

/// A fixed hourly window of [`MANUAL_SYNCS_PER_HOUR`] slots per workspace,
/// kept in the store so every instance counts the same.
async fn take_manual_sync_slot(state: &AppState, scope: &WorkspaceScope) -> Result<()> {
    let now = state.clock.now();
    let hour = now.timestamp() / 3600;
    let window_end = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap_or(now);
    for slot in 0..MANUAL_SYNCS_PER_HOUR {
        let key = format!("manual-sync:{}:{hour}:{slot}", scope.workspace());
        if state.store.first_seen(&key, window_end, now).await? {
            return Ok(());
        }
    }
    let wait = (window_end - now).to_std().unwrap_or_default();
    Err(Error::rate_limited(
        Some(wait.max(std::time::Duration::from_secs(1))),
        format!(
            "this workspace asked for {MANUAL_SYNCS_PER_HOUR} syncs this hour; try again after the hour"
        ),
    ))
}

/// One of `per_hour` slots of a fixed hourly window under `name` (kept in
/// the store, so every instance counts the same), or 429 with the wait.
pub async fn take_hourly_slot(
    state: &AppState,
    name: &str,
    per_hour: u32,
    what: &str,
) -> Result<()> {
    let now = state.clock.now();
    let hour = now.timestamp() / 3600;
    let window_end = chrono::DateTime::from_timestamp((hour + 1) * 3600, 0).unwrap_or(now);
    for slot in 0..per_hour {
        let key = format!("{name}:{hour}:{slot}");
        if state.store.first_seen(&key, window_end, now).await? {
            return Ok(());
        }
    }
    let wait = (window_end - now).to_std().unwrap_or_default();
    Err(Error::rate_limited(
        Some(wait.max(std::time::Duration::from_secs(1))),
        format!("at most {per_hour} {what} an hour; try again after the hour"),
    ))
}

/// The window a user asked for, checked against what the provider keeps.
fn requested_window(
    descriptor: &ProviderDescriptor,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    today: chrono::NaiveDate,
) -> Result<Option<DateRange>> {
    if from.is_none() && to.is_none() {
        return Ok(None);
    }
    let to = to.unwrap_or(today);
    let from = from.unwrap_or(to);
    let range = DateRange::new(from, to)?;
    if from > today + Duration::days(1) {
        return Err(Error::validation("from", "cannot sync days in the future"));
    }
    let earliest = today
        .checked_sub_months(chrono::Months::new(descriptor.history_months))
        .unwrap_or(today);
    if from < earliest {
        return Err(Error::validation(
            "from",
            format!(
                "{} keeps {} months of data: from must be {earliest} or later",
                descriptor.display_name, descriptor.history_months
            ),
        ));
    }
    if range.days() > MAX_SYNC_DAYS {
        return Err(Error::validation(
            "from",
            format!("at most {MAX_SYNC_DAYS} days per sync"),
        ));
    }
    Ok(Some(range))
}

/// Creates a manual (or, with a window, backfill) job and queues it; while a
/// job of the integration is queued or running, that job is the answer
/// (`true`: it already existed) and nothing new is made.
pub async fn request_sync(
    state: &AppState,
    scope: &WorkspaceScope,
    id: IntegrationId,
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    request_id: Option<&str>,
) -> Result<(SyncJob, bool)> {
    let mut limited = false;
    for _ in 0..3 {
        let mut integration = state.store.get_integration(scope, id).await?;
        if !integration.status().accepts_manual_sync() {
            return Err(Error::conflict(format!(
                "the integration is {}; only connected integrations (or ones in error) sync",
                integration.status()
            )));
        }
        let descriptor = state.registry.descriptor(integration.provider)?;
        if !state.queue.serves(QueueName::Work(integration.provider)) {
            return Err(Error::conflict(format!(
                "{} does not sync in this deployment (no worker is set up for it)",
                descriptor.display_name
            )));
        }
        let now = state.clock.now();
        // Bad input is refused even while a job runs.
        let window = requested_window(descriptor, from, to, now.date_naive())?;
        if let Some(job) = active_job(state, scope, &integration).await? {
            return Ok((job, true));
        }
        if !limited {
            take_manual_sync_slot(state, scope).await?;
            limited = true;
        }
        let trigger = if window.is_some() {
            JobTrigger::Backfill
        } else {
            JobTrigger::Manual
        };
        if let Some(job) =
            queue_job(state, scope, &mut integration, trigger, window, request_id).await?
        {
            return Ok((job, false));
        }
    }
    Err(Error::conflict(
        "the integration is changing right now; try again",
    ))
}

/// Makes a job for `integration` and queues it. In one step the job is
/// written with the integration naming it as its active job
/// (compare-and-swap), so two callers at once make one job: the loser gets
/// `None` and reads again.
pub(crate) async fn queue_job(
    state: &AppState,
    scope: &WorkspaceScope,
    integration: &mut Integration,
    trigger: JobTrigger,
    window: Option<DateRange>,
    request_id: Option<&str>,
) -> Result<Option<SyncJob>> {
    let now = state.clock.now();
    let job = SyncJob::new(
        JobId::new_time_ordered(),
        scope.workspace().clone(),
        integration.id,
        integration.provider,
        trigger,
        window,
        now,
    );
    integration.active_job = Some(job.id);
    integration.updated_at = now;
    match state
        .store
        .create_job_with_integration(scope, &job, integration)
        .await
    {
        Ok(_) => {
            kpi_sync::enqueue(
                &*state.store,
                &*state.queue,
                std::slice::from_ref(&job),
                request_id,
                now,
            )
            .await?;
            Ok(Some(job))
        }
        Err(e) if e.is_conflict() => Ok(None),
        Err(e) => Err(e),
    }
}

/// An authorization begun: where to send the browser, and the value of the
/// cookie that binds the state to it.
pub struct OAuthStart {
    pub url: String,
    pub browser_binding: String,
}

/// Starts an OAuth connect (or a reconnect of `integration`): a single-use
/// state bound to workspace, user, provider and browser, stored hashed.
pub async fn start_oauth(
    state: &AppState,
    principal: &Principal,
    scope: &WorkspaceScope,
    provider: Provider,
    integration: Option<IntegrationId>,
    return_to: Option<String>,
) -> Result<OAuthStart> {
    let adapter = state.registry.adapter(provider).map_err(|e| {
        if e.is_not_found() {
            Error::not_found("unknown provider")
        } else {
            e
        }
    })?;
    let integration = match integration {
        Some(id) => {
            let existing = state.store.get_integration(scope, id).await?;
            if existing.provider != provider {
                return Err(Error::validation(
                    "integration",
                    "that integration belongs to another provider",
                ));
            }
            if existing.status() == IntegrationStatus::Disconnected {
                return Err(Error::conflict(
                    "that integration is disconnected; connect a new one",
                ));
            }
            Some(existing.id)
        }
        None => None,
    };
    let state_value = random_token(32)?;
    let binding = random_token(32)?;
    let redirect_uri = state.config.oauth_redirect_uri(provider);
    let authorization = adapter.authorize(&AuthorizationRequest {
        state: &state_value,
        redirect_uri: &redirect_uri,
    })?;
    let now = state.clock.now();
    state
        .store
        .put_oauth_state(
            scope,
            &OAuthState {
                key: sha256_b64(&state_value),
                workspace: scope.workspace().clone(),
                user: principal.sub.clone(),
                provider,
                integration,
                browser_binding: sha256_b64(&binding),
                pkce_verifier: authorization.pkce_verifier,
                return_to,
                expires_at: now + Duration::minutes(STATE_TTL_MINUTES),
            },
        )
        .await?;
    Ok(OAuthStart {
        url: authorization.url,
        browser_binding: binding,
    })
}

/// Finishes an OAuth connect: the provider exchanges the code (with its own
/// extra steps) and the credentials are stored, on a new integration or the
/// one being reconnected.
pub async fn finish_oauth(
    state: &AppState,
    record: &OAuthState,
    code: &str,
) -> Result<IntegrationId> {
    let now = state.clock.now();
    let redirect_uri = state.config.oauth_redirect_uri(record.provider);
    let adapter = adapter(state, record.provider)?;
    let outcome = adapter
        .connect(ConnectRequest::OAuthCode {
            code,
            redirect_uri: &redirect_uri,
            pkce_verifier: record.pkce_verifier.as_deref(),
            now,
        })
        .await?;
    let descriptor = adapter.descriptor();
    let account = outcome
        .account
        .as_deref()
        .map(|a| account_key(record.provider, a));
    // The state record was written by `start_oauth` after authorising this user
    // for this workspace, and has just been consumed by its bound browser.
    let scope = WorkspaceScope::for_system(
        record.workspace.clone(),
        "consumed OAuth state of an authorised user",
    );
    match record.integration {
        Some(id) => {
            let existing = state.store.get_integration(&scope, id).await?;
            let sealed = state
                .vault
                .seal(&CredentialContext::of(&existing), &outcome.credentials)
                .await?;
            if let Some(key) = &account {
                state.store.link_account(key, &record.workspace, id).await?;
            }
            modify_integration(state, &scope, id, |i| {
                if i.provider != record.provider {
                    return Err(Error::conflict("the integration changed provider"));
                }
                i.credentials = Some(sealed.clone());
                i.credentials_expire_at = lasting_until(&outcome.credentials);
                i.reminded_for = None;
                i.account = account.clone();
                i.settings.extend(outcome.settings.clone());
                i.last_error = None;
                let target = if descriptor.settings_complete(&i.settings) {
                    IntegrationStatus::Connected
                } else {
                    IntegrationStatus::NeedsConfiguration
                };
                if i.status() != IntegrationStatus::Paused && i.status() != target {
                    i.transition(target, now)?;
                }
                Ok(())
            })
            .await?;
            // Reconnected with another account: the old one no longer counts it.
            if let Some(old) = existing.account.filter(|old| Some(old) != account.as_ref()) {
                state.store.unlink_account(&old, id).await?;
            }
            Ok(id)
        }
        None => {
            let mut integration = Integration::new(
                IntegrationId::new_random(),
                record.workspace.clone(),
                record.provider,
                descriptor.display_name,
                now,
            );
            integration.settings.extend(outcome.settings);
            integration.account = account.clone();
            integration.credentials_expire_at = lasting_until(&outcome.credentials);
            integration.credentials = Some(
                state
                    .vault
                    .seal(&CredentialContext::of(&integration), &outcome.credentials)
                    .await?,
            );
            // Linked first: a link without its integration only keeps a
            // revocation from happening, never the other way round.
            if let Some(key) = &account {
                state
                    .store
                    .link_account(key, &integration.workspace, integration.id)
                    .await?;
            }
            let status = if outcome.needs_configuration
                || !descriptor.settings_complete(&integration.settings)
            {
                IntegrationStatus::NeedsConfiguration
            } else {
                IntegrationStatus::Connected
            };
            integration.transition(status, now)?;
            let stored = state.store.create_integration(&scope, &integration).await?;
            Ok(stored.id)
        }
    }
}
