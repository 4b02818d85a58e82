//! The two halves of an OAuth connect: starting an authorization and finishing it.

use chrono::Duration;
use kpi_core::ports::CredentialContext;
use kpi_core::ports::provider::{AuthorizationRequest, ConnectRequest};
use kpi_core::ports::store::OAuthState;
use kpi_core::{
    Error, Integration, IntegrationId, IntegrationStatus, Principal, Provider, Result,
    WorkspaceScope,
};
use kpi_providers::oauth::{random_token, sha256_b64};

use super::accounts::{account_key, lasting_until};
use super::{adapter, modify_integration};
use crate::state::AppState;

/// How long a started authorization may take.
pub const STATE_TTL_MINUTES: i64 = 10;

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
