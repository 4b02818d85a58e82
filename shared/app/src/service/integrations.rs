//! The integration use cases: create with an API key, update, disconnect, options and health.

use kpi_core::credentials::ConnectionCredentials;
use kpi_core::ports::CredentialContext;
use kpi_core::ports::provider::{
    ConnectRequest, HealthStatus, ProviderAdapter, ProviderDescriptor, ProviderOptions, Settings,
};
use kpi_core::provider::AuthMode;
use kpi_core::{
    Error, Integration, IntegrationId, IntegrationStatus, Provider, Result, WorkspaceScope,
};
use secrecy::SecretString;

use super::accounts::{
    ProviderAccess, endpoint_key, follow_webhook_resource, resource_key, webhook_endpoint,
    webhook_resource,
};
use super::{adapter, modify_integration, open_credentials};
use crate::state::AppState;

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
