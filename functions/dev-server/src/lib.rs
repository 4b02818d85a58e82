//! The one-machine deployment: builds the backends named by the configuration
//! (embedded by default, AWS when configured) and serves every router.

use std::path::Path;
use std::sync::Arc;

use kpi_app::config::{QueueConfig, StoreConfig, VaultConfig};
use kpi_app::{AppState, Config};
use kpi_core::Result;
use kpi_core::ports::{AppSecrets, CredentialVault, Queue, Store, SystemClock};
use kpi_local::{EnvSecrets, LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_vault::{CacheSettings, EnvelopeVault, LocalMasterKey};

/// Wires the ports for `config`. AWS clients are built only when a backend
/// needs them, and then from the standard AWS environment (`AWS_ENDPOINT_URL`
/// and friends).
pub async fn build_state(config: Config, secrets: Arc<EnvSecrets>) -> Result<AppState> {
    let uses_aws = matches!(config.store, StoreConfig::DynamoDb { .. })
        || matches!(config.queue, QueueConfig::Sqs { .. })
        || matches!(config.vault, VaultConfig::Kms { .. });
    let sdk = if uses_aws {
        Some(kpi_aws::load_sdk_config().await)
    } else {
        None
    };
    let aws = || sdk.as_ref().expect("AWS configuration loaded above");

    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreConfig::DynamoDb { table } => Arc::new(kpi_aws::DynamoStore::new(aws(), table)),
    };
    let queue: Arc<dyn Queue> = match &config.queue {
        QueueConfig::Local => Arc::new(LocalQueue::new(LocalQueueSettings::default())),
        QueueConfig::Sqs { urls } => Arc::new(kpi_aws::SqsQueue::new(aws(), urls.clone())),
    };
    let vault: Arc<dyn CredentialVault> = match &config.vault {
        VaultConfig::Local(path) => Arc::new(EnvelopeVault::new(
            LocalMasterKey::load_or_create(path)?,
            CacheSettings::default(),
        )),
        VaultConfig::Kms { key_id } => Arc::new(EnvelopeVault::new(
            kpi_aws::KmsKeySource::new(aws(), key_id),
            CacheSettings::default(),
        )),
    };
    let secrets: Arc<dyn AppSecrets> = secrets;
    Ok(AppState {
        config: Arc::new(config),
        store,
        queue,
        vault,
        secrets,
        clock: Arc::new(SystemClock),
    })
}

/// Reads `.env` (if present) and the environment into a configuration.
pub fn load_config(env_file: &Path) -> std::result::Result<(Config, Arc<EnvSecrets>), String> {
    let secrets = Arc::new(EnvSecrets::load(env_file).map_err(|e| e.log_chain())?);
    let lookup = {
        let secrets = secrets.clone();
        move |name: &str| secrets.lookup(name)
    };
    let config = Config::from_lookup(&lookup, kpi_app::Environment::Development)
        .map_err(|e| e.to_string())?;
    Ok((config, secrets))
}
