use std::sync::Arc;

use kpi_core::Registry;
use kpi_core::ports::{AppSecrets, Clock, CredentialVault, Queue, Store};

use crate::auth::Authenticator;
use crate::config::Config;

/// What handlers run on: the ports, wired once per process (per cold start on
/// Lambda) by the binary that owns the deployment.
#[derive(Clone)]
pub struct AppState {
    pub config: Arc<Config>,
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub vault: Arc<dyn CredentialVault>,
    pub secrets: Arc<dyn AppSecrets>,
    pub clock: Arc<dyn Clock>,
    pub auth: Arc<Authenticator>,
    /// Every provider of the deployment; the only way to one.
    pub registry: Arc<Registry>,
}
