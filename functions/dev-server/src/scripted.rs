//! Resend connects, lists options, checks health and disconnects through its
//! real adapter, but its sync arrives with its own issue; until then the dev
//! server syncs it (sandbox only) with a scripted adapter, so the whole engine
//! can be tried on every provider. Nothing here is linked into a Lambda.

use std::sync::Arc;

use async_trait::async_trait;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::ports::provider::{
    Authorization, AuthorizationRequest, ConnectOutcome, ConnectRequest, ProviderAdapter,
    ProviderDescriptor, ProviderOptions, Settings, SyncRequest, SyncResult,
};
use kpi_core::registry::Plugin;
use kpi_core::{Integration, Provider, Registry, Result};
use kpi_sync::mock::MockAdapter;

/// Providers whose real sync is still to come.
const SYNC_PENDING: [Provider; 1] = [Provider::RESEND];

/// The registry with the sandboxed providers of [`SYNC_PENDING`] syncing by script.
pub fn sync_by_script_until_real(registry: Registry) -> Result<Registry> {
    let mut out = Registry::new();
    for entry in registry.entries() {
        let plugin = match entry.adapter() {
            Ok(real) if entry.sandbox && SYNC_PENDING.contains(&entry.descriptor.id) => {
                Plugin::Ready {
                    adapter: Arc::new(ScriptedSync {
                        script: MockAdapter::new(entry.descriptor.clone()),
                        real: real.clone(),
                    }),
                    sandbox: true,
                }
            }
            Ok(real) => Plugin::Ready {
                adapter: real.clone(),
                sandbox: entry.sandbox,
            },
            Err(e) => Plugin::Unconfigured {
                descriptor: entry.descriptor.clone(),
                why: e.message().to_owned(),
            },
        };
        out.register(plugin)?;
    }
    Ok(out)
}

struct ScriptedSync {
    real: Arc<dyn ProviderAdapter>,
    script: MockAdapter,
}

#[async_trait]
impl ProviderAdapter for ScriptedSync {
    fn descriptor(&self) -> &ProviderDescriptor {
        self.real.descriptor()
    }
    fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<Authorization> {
        self.real.authorize(request)
    }
    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        self.real.connect(request).await
    }
    async fn options(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions> {
        self.real.options(integration, credentials).await
    }
    fn validate_settings(&self, settings: &Settings) -> Result<()> {
        self.real.validate_settings(settings)
    }
    async fn health(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()> {
        self.real.health(integration, credentials).await
    }
    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        self.script.sync(request).await
    }
    async fn refresh(&self, credentials: &ConnectionCredentials) -> Result<ConnectionCredentials> {
        self.real.refresh(credentials).await
    }
    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()> {
        self.real.disconnect(credentials).await
    }
    fn mailer(&self) -> Option<Arc<dyn kpi_core::ports::Mailer>> {
        self.real.mailer()
    }
    fn webhook_challenge(&self, params: &[(String, String)]) -> Result<String> {
        self.real.webhook_challenge(params)
    }
    fn read_webhook(
        &self,
        delivery: &kpi_core::ports::provider::WebhookDelivery<'_>,
    ) -> Result<kpi_core::ports::provider::WebhookEvents> {
        self.real.read_webhook(delivery)
    }
    async fn subscribe_webhooks(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()> {
        self.real.subscribe_webhooks(integration, credentials).await
    }
}
