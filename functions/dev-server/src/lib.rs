//! The one-machine deployment: builds the backends named by the configuration
//! (embedded by default, AWS when configured), the provider registry (the
//! sandbox standing in for unconfigured providers), and serves every router.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use kpi_app::auth::{Authenticator, JwksSettings};
use kpi_app::config::{QueueConfig, StoreConfig, VaultConfig};
use kpi_app::{AppState, Config};
use kpi_core::Result;
use kpi_core::ports::{AppSecrets, CredentialVault, Queue, QueueName, Store, SystemClock};
use kpi_local::{EnvSecrets, LocalQueue, LocalQueueSettings, SqliteStore};
use kpi_providers::SandboxSite;
use kpi_sandbox::{Sandbox, SandboxConfig};
use kpi_vault::{CacheSettings, EnvelopeVault, LocalMasterKey};
use secrecy::SecretString;
use tracing::Instrument as _;

/// Everything the dev server runs: the app state and the sandbox it mounts
/// (when any provider uses it).
pub struct DevServer {
    pub state: AppState,
    pub sandbox: Option<Sandbox>,
}

/// Wires the ports for `config`. AWS clients are built only when a backend
/// needs them, and then from the standard AWS environment (`AWS_ENDPOINT_URL`
/// and friends).
pub async fn build(mut config: Config, secrets: Arc<EnvSecrets>) -> Result<DevServer> {
    if config.environment != kpi_app::Environment::Development {
        // Its dev login hands out sessions for any workspace: never in production.
        return Err(kpi_core::Error::config(
            "KPI_ENV: the dev server runs in development only; production runs on Lambda",
        ));
    }
    let uses_aws = matches!(config.store, StoreConfig::DynamoDb { .. })
        || matches!(config.queue, QueueConfig::Sqs)
        || matches!(config.vault, VaultConfig::Kms { .. });
    let sdk = if uses_aws {
        Some(kpi_aws::load_sdk_config().await)
    } else {
        None
    };
    let aws = || sdk.as_ref().expect("AWS configuration loaded above");

    let http = kpi_app::providers::http_client()?;
    let sandbox = (config.sandbox != Some(false)).then(|| {
        let mut webhook = config.public_url.clone();
        webhook.set_path("/v1/webhooks/meta");
        let mut resend_webhook = config.public_url.clone();
        resend_webhook.set_path("/v1/webhooks/resend");
        Sandbox::new(SandboxConfig {
            meta_webhook_url: Some(webhook.to_string()),
            resend_webhook_url: Some(resend_webhook.to_string()),
            ..SandboxConfig::default()
        })
    });
    let site = sandbox.as_ref().map(|s| {
        let mut base = config.public_url.clone();
        base.set_path("/sandbox");
        SandboxSite {
            base,
            app_credentials: s.app_credentials(),
        }
    });
    let registry = kpi_app::providers::build_registry(&config, &http, site.as_ref())?;
    let sandbox = sandbox.filter(|_| registry.entries().any(|e| e.sandbox));

    let store: Arc<dyn Store> = match &config.store {
        StoreConfig::Sqlite(path) => Arc::new(SqliteStore::open(path)?),
        StoreConfig::DynamoDb { table } => Arc::new(kpi_aws::DynamoStore::new(aws(), table)),
    };
    let queue: Arc<dyn Queue> = match &config.queue {
        QueueConfig::Local => Arc::new(LocalQueue::new(LocalQueueSettings::default())),
        QueueConfig::Sqs => Arc::new(kpi_aws::SqsQueue::new(aws(), config.queue_urls(&registry)?)),
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
    if config.notices.link_key.is_none() {
        config.notices.link_key = Some(local_link_key(&config.store)?);
    }

    // Without a configured dev secret, a random one per start: dev logins last
    // until the server restarts.
    let dev_secret = config.auth.dev_secret.clone().map_or_else(
        || kpi_providers::oauth::random_token(32).map(SecretString::from),
        Ok,
    )?;
    let jwks = JwksSettings::from_config(&config.auth);
    let auth = Authenticator::new(Some(dev_secret), jwks, http);

    Ok(DevServer {
        state: AppState {
            config: Arc::new(config),
            store,
            queue,
            vault,
            secrets,
            clock: Arc::new(SystemClock),
            auth: Arc::new(auth),
            registry: Arc::new(registry),
        },
        sandbox,
    })
}

/// The unsubscribe links' key when `KPI_LINK_KEY` is not set: kept beside
/// the SQLite database (`link.key`, mode 0600), so links in emails sent
/// before a restart keep working; with another store, one per start.
fn local_link_key(store: &StoreConfig) -> Result<SecretString> {
    let StoreConfig::Sqlite(db) = store else {
        // Printed before the listening address would break scripts that read
        // that first line; the README says it.
        tracing::debug!("KPI_LINK_KEY is not set: unsubscribe links work until the server stops");
        return kpi_providers::oauth::random_token(32).map(SecretString::from);
    };
    let path = db.with_file_name("link.key");
    if let Ok(text) = std::fs::read_to_string(&path) {
        return Ok(SecretString::from(text.trim().to_owned()));
    }
    let key = kpi_providers::oauth::random_token(32)?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let written = options
        .open(&path)
        .and_then(|mut f| std::io::Write::write_all(&mut f, key.as_bytes()));
    match written {
        Ok(()) => Ok(SecretString::from(key)),
        // Another process made it first: use theirs.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            let text = std::fs::read_to_string(&path).map_err(|e| {
                kpi_core::Error::config(format!("cannot read {}: {e}", path.display()))
            })?;
            Ok(SecretString::from(text.trim().to_owned()))
        }
        Err(e) => Err(kpi_core::Error::config(format!(
            "cannot write {}: {e}",
            path.display()
        ))),
    }
}

/// Every router of the system, the dev sign-in and the sandbox, in one app,
/// behind the `Host` check.
pub fn router(server: &DevServer) -> axum::Router {
    use kpi_app::http;
    let mut app = http::with_defaults(
        http::all_routes()
            .merge(http::dev_router())
            .merge(kpi_ui::router()),
    )
    .with_state(server.state.clone());
    if let Some(sandbox) = &server.sandbox {
        app = app.nest("/sandbox", sandbox.router());
    }
    let cors = kpi_app::http::cors::CorsOrigins::new(&server.state.config.cors_origins);
    let public_host = server
        .state
        .config
        .public_url
        .host_str()
        .map(str::to_ascii_lowercase);
    app.layer(axum::Extension(cors))
        .layer(axum::middleware::from_fn(move |request, next| {
            let allowed = host_allowed(&request, public_host.as_deref());
            refuse_foreign_host(allowed, request, next)
        }))
}

/// Whether a request's `Host` names this server: an IP address, `localhost`,
/// or `KPI_PUBLIC_URL`'s host. A page on another site whose name was made to
/// resolve to this machine (DNS rebinding) sends its own name, and must not
/// reach `/dev/login` or a workspace's real provider tokens. A request
/// without `Host` comes from no browser.
pub fn host_allowed(request: &axum::extract::Request, public_host: Option<&str>) -> bool {
    let Some(value) = request.headers().get(axum::http::header::HOST) else {
        return true;
    };
    let Some(host) = value
        .to_str()
        .ok()
        .and_then(|h| h.parse::<axum::http::uri::Authority>().ok())
    else {
        return false;
    };
    let name = host.host().to_ascii_lowercase();
    let bare = name.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().is_ok()
        || name == "localhost"
        || public_host.is_some_and(|p| p.trim_start_matches('[').trim_end_matches(']') == bare)
}

async fn refuse_foreign_host(
    allowed: bool,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    if allowed {
        return next.run(request).await;
    }
    (
        axum::http::StatusCode::MISDIRECTED_REQUEST,
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; charset=utf-8",
        )],
        "This dev server answers only to its own address (an IP address, localhost, \
         or the host of KPI_PUBLIC_URL).\n",
    )
        .into_response()
}

/// Reads `.env` (if present) and the environment into a configuration.
pub fn load_config(env_file: &Path) -> std::result::Result<(Config, Arc<EnvSecrets>), String> {
    let secrets = Arc::new(EnvSecrets::load(env_file).map_err(|e| e.log_chain())?);
    let lookup = {
        let secrets = secrets.clone();
        move |name: &str| secrets.lookup(name)
    };
    let config = Config::from_lookup(lookup, kpi_app::Environment::Development)
        .map_err(|e| e.to_string())?;
    Ok((config, secrets))
}

/// The warning printed when the dev server listens beyond this machine.
pub fn listen_warning(addr: std::net::SocketAddr) -> Option<String> {
    (!addr.ip().is_loopback()).then(|| {
        format!(
            "WARNING: listening on {addr}, reachable from other machines: anyone who reaches \
             /dev/login gets a session for any workspace, with no password. Use KPI_LISTEN=127.0.0.1:PORT \
             unless this network is yours alone."
        )
    })
}

/// How often the dev server's scheduler looks for due integrations.
pub const SCHEDULER_INTERVAL: std::time::Duration = std::time::Duration::from_secs(30);

/// Polls `queue` for ever, handing each message to `handle`.
fn spawn_poller<H, F>(
    queue: Arc<dyn Queue>,
    name: QueueName,
    handle: H,
) -> tokio::task::JoinHandle<()>
where
    H: Fn(kpi_core::ports::queue::ReceivedMessage) -> F + Send + Sync + 'static,
    F: std::future::Future<Output = kpi_sync::Disposition> + Send,
{
    let handle = Arc::new(handle);
    tokio::spawn(async move {
        loop {
            let polled = kpi_sync::runner::poll_once(
                &*queue,
                name,
                std::time::Duration::from_secs(1),
                |m| {
                    let span = tracing::info_span!("queue_message", queue = %name, message_id = %m.message_id);
                    handle(m).instrument(span)
                },
            )
            .await;
            if let Err(e) = polled {
                tracing::error!(queue = %name, error = %e.log_chain(), "queue poll failed");
                tokio::time::sleep(std::time::Duration::from_secs(1)).await;
            }
        }
    })
}

/// The background half of the system, in process, with the same wiring as the
/// Lambdas: the scheduler on an interval, and per registered provider a worker
/// and a dead-letter handler polling its queues.
pub fn spawn_engine(server: &DevServer) -> Vec<tokio::task::JoinHandle<()>> {
    let state = &server.state;
    let mut worker = kpi_lambda::worker_for_any(state);
    worker.id = format!("dev-worker-{}", std::process::id());
    let worker = Arc::new(worker);
    let dlq = Arc::new(kpi_lambda::dlq_handler(state));
    let mut scheduler = kpi_lambda::scheduler(state);
    scheduler.settings.claims_at_once = kpi_sync::scheduler::EMBEDDED_CLAIMS_AT_ONCE;
    let mut tasks = vec![tokio::spawn(async move {
        // The first run one interval after start, like every later one.
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + SCHEDULER_INTERVAL,
            SCHEDULER_INTERVAL,
        );
        loop {
            tick.tick().await;
            let run = scheduler
                .run_once()
                .instrument(tracing::info_span!("scheduler_run"))
                .await;
            if let Err(e) = run {
                tracing::error!(error = %e.log_chain(), "scheduler run failed");
            }
        }
    })];
    for provider in state.registry.providers() {
        let worker = worker.clone();
        tasks.push(spawn_poller(
            state.queue.clone(),
            QueueName::Work(provider),
            move |m| {
                let worker = worker.clone();
                async move { worker.handle(&m).await }
            },
        ));
        let dlq = dlq.clone();
        tasks.push(spawn_poller(
            state.queue.clone(),
            QueueName::DeadLetter(provider),
            move |m| {
                let dlq = dlq.clone();
                async move { dlq.handle(&m).await }
            },
        ));
    }
    tasks
}

/// `make run`: logs, configuration from `.env` and the environment, the
/// listener, the engine and the routers, until Ctrl-C or SIGTERM.
pub async fn run() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();

    let (config, secrets) = match load_config(Path::new(".env")) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("configuration error: {message}");
            return ExitCode::from(2);
        }
    };
    let listen = config.listen;
    if let Some(warning) = listen_warning(listen) {
        eprintln!("{warning}");
    }
    let listener = match tokio::net::TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen} (KPI_LISTEN): {e}");
            return ExitCode::from(1);
        }
    };
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut config = config;
    if secrets.lookup("KPI_PUBLIC_URL").is_none() {
        // Not configured: the address actually bound (KPI_LISTEN may ask for port 0).
        if let Ok(url) = url::Url::parse(&format!("http://{addr}")) {
            config.public_url = url;
        }
    }
    let server = match build(config, secrets).await {
        Ok(server) => server,
        Err(e) => {
            eprintln!("cannot start: {}", e.log_chain());
            return ExitCode::from(1);
        }
    };
    let public = server
        .state
        .config
        .public_url
        .as_str()
        .trim_end_matches('/')
        .to_owned();
    let _ = writeln!(
        std::io::stdout(),
        "KPI Integrations dev server listening on http://{addr}\n  \
         settings (dev login, workspace demo): {public}/dev/login?workspace=demo\n  \
         operators' dashboard (dev login): {public}/dev/login?workspace=demo&operator=true&return_to=/admin/sync-jobs\n  \
         API document: {public}/openapi.json\n  \
         health: {public}/healthz"
    );
    if server.state.config.oidc.is_some() {
        let _ = writeln!(
            std::io::stdout(),
            "  sign in at the identity provider (KPI_OIDC_ISSUER): {public}/auth/login"
        );
    }
    if server.sandbox.is_some() {
        let _ = writeln!(
            std::io::stdout(),
            "  provider sandbox: {public}/sandbox (no real provider accounts are used)"
        );
    }

    let _engine = spawn_engine(&server);
    let app = router(&server);
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
    {
        eprintln!("server error: {e}");
        return ExitCode::from(1);
    }
    ExitCode::SUCCESS
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
    tracing::info!("shutting down");
}
