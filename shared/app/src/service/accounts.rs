//! Account links: the keys that find integrations by provider account, webhook resource or endpoint.

use kpi_core::credentials::ConnectionCredentials;
use kpi_core::ports::provider::ProviderDescriptor;
use kpi_core::{Integration, IntegrationId, Provider, Result, WorkspaceScope};
use kpi_providers::oauth::sha256_b64;

use super::{adapter, modify_integration, open_credentials};
use crate::state::AppState;

/// `{KPI_PUBLIC_URL}/v1/webhooks/{path}/{integration}`: where one
/// connection's own webhook events arrive (`path`: the provider's webhook
/// path, which the webhook route finds it by).
pub(super) fn webhook_endpoint(state: &AppState, provider: Provider, id: IntegrationId) -> String {
    let descriptor = state.registry.descriptor(provider).ok();
    let path = descriptor
        .and_then(|d| d.webhook)
        .map_or(provider.as_str(), |w| w.path);
    format!(
        "{}/v1/webhooks/{path}/{id}",
        state.config.public_url.as_str().trim_end_matches('/'),
    )
}

/// The account-link key under which an integration's own webhook endpoint
/// finds it.
pub(crate) fn endpoint_key(id: IntegrationId) -> String {
    sha256_b64(&format!("webhook-endpoint:{id}"))
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
pub(super) fn account_key(provider: Provider, account: &str) -> String {
    sha256_b64(&format!("{provider}:{account}"))
}

/// When credentials that cannot be refreshed stop working (Meta's
/// long-lived token); `None` for refreshable ones and API keys.
pub(super) fn lasting_until(
    credentials: &ConnectionCredentials,
) -> Option<chrono::DateTime<chrono::Utc>> {
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
pub(super) fn webhook_resource<'a>(
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
pub(super) async fn follow_webhook_resource(
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
