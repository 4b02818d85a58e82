//! The use cases behind the integration routes, independent of HTTP: create
//! with an API key, update, disconnect, request a sync, options, health, and
//! the two halves of an OAuth connect. Each reaches its provider only through
//! the registry, and tenant data only through a [`WorkspaceScope`].

mod accounts;
mod integrations;
mod oauth;
mod sync_requests;

pub use accounts::ProviderAccess;
pub(crate) use accounts::{endpoint_key, resource_key};
pub use integrations::{
    Disconnection, IntegrationPatch, check_display_name, create_with_key, disconnect, health,
    options, update,
};
pub use oauth::{OAuthStart, STATE_TTL_MINUTES, finish_oauth, start_oauth};
pub use sync_requests::{MANUAL_SYNCS_PER_HOUR, MAX_SYNC_DAYS, request_sync, take_hourly_slot};
pub(crate) use sync_requests::{active_job, queue_job};

use kpi_core::credentials::ConnectionCredentials;
use kpi_core::ports::CredentialContext;
use kpi_core::ports::provider::ProviderAdapter;
use kpi_core::{Error, Integration, IntegrationId, Provider, Result, WorkspaceScope};

use crate::state::AppState;

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
