//! The one-machine deployment: builds the backends named by the configuration
//! (embedded by default, AWS when configured) and serves every router.

use std::path::Path;
use std::sync::Arc;

use kpi_app::auth::{Authenticator, JwksSettings};
use kpi_app::config::{QueueConfig, StoreConfig, VaultConfig};
use kpi_app::providers::{Providers, SandboxApps};
use kpi_app::{AppState, Config};
use kpi_core::Result;
use kpi_core::ports::{AppSecrets, CredentialVault, Queue, Store, SystemClock};
use kpi_local::{EnvSecrets, LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_sandbox::{Sandbox, SandboxConfig};
use kpi_vault::{CacheSettings, EnvelopeVault, LocalMasterKey};
use secrecy::SecretString;

/// Everything the dev server runs: the app state, the sandbox it mounts (when any
/// provider uses it) and the dev secret behind `/dev/login`.
pub struct DevServer {
    pub state: AppState,
    pub sandbox: Option<Sandbox>,
}

/// Wires the ports for `config`. AWS clients are built only when a backend
/// needs them, and then from the standard AWS environment (`AWS_ENDPOINT_URL`
/// and friends).
pub async fn build(config: Config, secrets: Arc<EnvSecrets>) -> Result<DevServer> {
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

    let any_sandbox = kpi_core::Provider::ALL
        .iter()
        .any(|p| config.sandbox_for(*p));
    let sandbox = any_sandbox.then(|| Sandbox::new(SandboxConfig::default()));
    let sandbox_apps = sandbox.as_ref().map(|s| {
        let c = s.config();
        let mut base = config.public_url.clone();
        base.set_path("/sandbox");
        SandboxApps {
            base,
            google_client_id: c.google_client_id.clone(),
            google_client_secret: c.google_client_secret.clone(),
            meta_app_id: c.meta_app_id.clone(),
            meta_app_secret: c.meta_app_secret.clone(),
        }
    });
    let providers = Providers::from_config(&config, sandbox_apps.as_ref())?;

    // Without a configured dev secret, a random one per start: dev logins last
    // until the server restarts.
    let dev_secret = config.auth.dev_secret.clone().map_or_else(
        || kpi_providers::oauth::random_token(32).map(SecretString::from),
        Ok,
    )?;
    let jwks = JwksSettings::from_config(&config.auth);
    let auth = Authenticator::new(Some(dev_secret), jwks, providers.http.clone());

    Ok(DevServer {
        state: AppState {
            config: Arc::new(config),
            store,
            queue,
            vault,
            secrets,
            clock: Arc::new(SystemClock),
            auth: Arc::new(auth),
            providers: Arc::new(providers),
        },
        sandbox,
    })
}

/// Every router of the system, the dev sign-in and the sandbox, in one app.
pub fn router(server: &DevServer) -> axum::Router {
    use kpi_app::http;
    let mut app = http::with_defaults(
        http::system_router()
            .merge(http::api_router())
            .merge(http::oauth_router())
            .merge(http::admin_router())
            .merge(http::dev_router()),
    )
    .with_state(server.state.clone());
    if let Some(sandbox) = &server.sandbox {
        app = app.nest("/sandbox", sandbox.router());
    }
    app
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

/// How often the dev server's scheduler looks for due integrations.
pub const SCHEDULER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// The background half of the system, in process: the scheduler on an interval,
/// and per provider a worker and a dead-letter handler polling the queues. The
/// same engine code as the Lambdas. Providers served by the sandbox sync through
/// its scripted adapters.
pub fn spawn_engine(server: &DevServer) -> Vec<tokio::task::JoinHandle<()>> {
    use kpi_core::Provider;
    use kpi_core::ports::QueueName;
    use kpi_sync::dlq::DlqHandler;
    use kpi_sync::mock::MockAdapter;
    use kpi_sync::notifier::LogNotifier;
    use kpi_sync::runner::poll_once;
    use kpi_sync::{Scheduler, Worker, WorkerSettings};

    let state = &server.state;
    let mut adapters: std::collections::HashMap<
        Provider,
        Arc<dyn kpi_core::adapter::IntegrationAdapter>,
    > = std::collections::HashMap::new();
    // GA4 syncs through its real adapter (against Google or the sandbox); the
    // providers whose adapters are still to come sync with the scripted ones
    // while the sandbox stands in for them.
    if let Some(ga4) = state.providers.ga4_adapter() {
        adapters.insert(Provider::Ga4, Arc::new(ga4));
    }
    for p in [Provider::MetaAds, Provider::Resend] {
        if state.config.sandbox_for(p) {
            adapters.insert(p, Arc::new(MockAdapter::new(p)));
        }
    }
    let notifier: Arc<dyn kpi_sync::Notifier> = Arc::new(LogNotifier);
    let worker = Arc::new(Worker {
        store: state.store.clone(),
        vault: state.vault.clone(),
        clock: state.clock.clone(),
        notifier: notifier.clone(),
        adapters,
        settings: WorkerSettings::default(),
        id: format!("dev-worker-{}", std::process::id()),
    });
    let dlq = Arc::new(DlqHandler {
        store: state.store.clone(),
        notifier,
        clock: state.clock.clone(),
    });
    let scheduler = Scheduler {
        store: state.store.clone(),
        queue: state.queue.clone(),
        clock: state.clock.clone(),
        settings: Default::default(),
    };
    let mut tasks = vec![tokio::spawn(async move {
        let mut tick = tokio::time::interval(SCHEDULER_INTERVAL);
        loop {
            tick.tick().await;
            if let Err(e) = scheduler.run_once().await {
                tracing::error!(error = %e.log_chain(), "scheduler run failed");
            }
        }
    })];
    for provider in Provider::ALL {
        let (queue, worker) = (state.queue.clone(), worker.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let polled = poll_once(
                    &*queue,
                    QueueName::Work(provider),
                    std::time::Duration::from_secs(1),
                    |m| {
                        let worker = worker.clone();
                        async move { worker.handle(&m).await }
                    },
                )
                .await;
                if let Err(e) = polled {
                    tracing::error!(error = %e.log_chain(), "worker poll failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }));
        let (queue, dlq) = (state.queue.clone(), dlq.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let polled = poll_once(
                    &*queue,
                    QueueName::DeadLetter(provider),
                    std::time::Duration::from_secs(1),
                    |m| {
                        let dlq = dlq.clone();
                        async move { dlq.handle(&m).await }
                    },
                )
                .await;
                if let Err(e) = polled {
                    tracing::error!(error = %e.log_chain(), "dead-letter poll failed");
                    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
                }
            }
        }));
    }
    tasks
}
