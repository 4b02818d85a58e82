//! `make run`: the whole system on one machine.

use std::io::Write as _;
use std::path::Path;
use std::process::ExitCode;

use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let (config, secrets) = match dev_server::load_config(Path::new(".env")) {
        Ok(loaded) => loaded,
        Err(message) => {
            eprintln!("configuration error: {message}");
            return ExitCode::from(2);
        }
    };
    let listen = config.listen;
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
    let server = match dev_server::build(config, secrets).await {
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
         API document: {public}/openapi.json\n  \
         health: {public}/healthz"
    );
    if server.sandbox.is_some() {
        let _ = writeln!(
            std::io::stdout(),
            "  provider sandbox: {public}/sandbox (no real provider accounts are used)"
        );
    }

    let _engine = dev_server::spawn_engine(&server);
    let app = dev_server::router(&server);
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
