//! Start-up of every Lambda, once per cold start: JSON logs, configuration from
//! the environment merged with the Secrets Manager JSON (`KPI_SECRET_ID`), and
//! the AWS adapters wired into an [`AppState`]. A function's `main.rs` only picks
//! its routers and calls [`serve`].

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use kpi_app::auth::{Authenticator, JwksSettings};
use kpi_app::config::{QueueConfig, StoreConfig, VaultConfig};
use kpi_app::providers::Providers;
use kpi_app::{AppState, Config, Environment};
use kpi_aws::{DynamoStore, KmsKeySource, SecretsManagerSecrets, SqsQueue};
use kpi_core::ports::{AppSecrets, SystemClock};
use kpi_core::{Error, Result};
use kpi_vault::{CacheSettings, EnvelopeVault};

/// How long a warm function trusts its copy of the application secret.
pub const SECRET_TTL: Duration = Duration::from_secs(300);

/// JSON logs in the Lambda environment (readable text elsewhere), level from
/// `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    if std::env::var_os("AWS_LAMBDA_FUNCTION_NAME").is_some() {
        builder.json().without_time().init();
    } else {
        builder.init();
    }
}

/// Builds the state from the process environment.
pub async fn app_state() -> Result<AppState> {
    let sdk = kpi_aws::load_sdk_config().await;
    let env: HashMap<String, String> = std::env::vars().collect();
    let manager = env
        .get("KPI_SECRET_ID")
        .map(|id| Arc::new(SecretsManagerSecrets::new(&sdk, id, SECRET_TTL)));
    let from_secret = match &manager {
        Some(s) => s.values().await?,
        None => HashMap::new(),
    };
    // The environment wins over the secret, so one value can be overridden per function.
    let lookup = move |name: &str| env.get(name).or_else(|| from_secret.get(name)).cloned();
    let config = Config::from_lookup(&lookup, Environment::Production)
        .map_err(|e| Error::config(e.to_string()))?;

    let StoreConfig::DynamoDb { table } = &config.store else {
        return Err(Error::config("KPI_STORE: a Lambda needs dynamodb:TABLE"));
    };
    let QueueConfig::Sqs { urls } = &config.queue else {
        return Err(Error::config("KPI_QUEUE: a Lambda needs sqs"));
    };
    let VaultConfig::Kms { key_id } = &config.vault else {
        return Err(Error::config("KPI_VAULT: a Lambda needs kms:KEY"));
    };
    let providers = Providers::from_config(&config, None)?;
    let jwks = JwksSettings::from_config(&config.auth);
    let auth = Authenticator::new(config.auth.dev_secret.clone(), jwks, providers.http.clone());
    let secrets: Arc<dyn AppSecrets> = match manager {
        Some(s) => s,
        None => Arc::new(EnvOnly),
    };
    Ok(AppState {
        store: Arc::new(DynamoStore::new(&sdk, table)),
        queue: Arc::new(SqsQueue::new(&sdk, urls.clone())),
        vault: Arc::new(EnvelopeVault::new(
            KmsKeySource::new(&sdk, key_id),
            CacheSettings::default(),
        )),
        secrets,
        clock: Arc::new(SystemClock),
        auth: Arc::new(auth),
        providers: Arc::new(providers),
        config: Arc::new(config),
    })
}

/// No Secrets Manager secret configured: secrets come from the environment.
struct EnvOnly;

#[async_trait::async_trait]
impl AppSecrets for EnvOnly {
    async fn get(&self, name: &str) -> Result<Option<secrecy::SecretString>> {
        Ok(std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(secrecy::SecretString::from))
    }
}

/// Serves `router` as the function's handler. A start-up failure is logged and
/// returned, so Lambda reports an init error instead of serving half-wired.
pub async fn serve(
    router: impl FnOnce(AppState) -> axum::Router,
) -> std::result::Result<(), lambda_http::Error> {
    init_tracing();
    let state = match app_state().await {
        Ok(state) => state,
        Err(e) => {
            tracing::error!(error = %e.log_chain(), "start-up failed");
            return Err(e.log_chain().into());
        }
    };
    lambda_http::run(router(state)).await
}

/// One SQS batch, the Lambda way: each record handled concurrently; a record
/// whose handler asks for a retry is reported as a batch item failure (the rest
/// of the batch is deleted by Lambda), after `delay_retry` has moved its
/// visibility to the wanted backoff.
pub async fn handle_sqs_batch<H, HF, R, RF>(
    event: aws_lambda_events::sqs::SqsEvent,
    handle: H,
    delay_retry: R,
) -> aws_lambda_events::sqs::SqsBatchResponse
where
    H: Fn(kpi_core::ports::queue::ReceivedMessage) -> HF,
    HF: std::future::Future<Output = kpi_sync::Disposition>,
    R: Fn(kpi_core::ports::queue::ReceiptHandle, Duration) -> RF,
    RF: std::future::Future<Output = ()>,
{
    use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse};
    use kpi_core::ports::queue::{ReceiptHandle, ReceivedMessage};

    let outcomes = futures::future::join_all(event.records.into_iter().map(|record| {
        let id = record.message_id.clone().unwrap_or_default();
        let message = ReceivedMessage {
            message_id: id.clone(),
            body: record.body.clone().unwrap_or_default(),
            receipt: ReceiptHandle(record.receipt_handle.clone().unwrap_or_default()),
            receive_count: record
                .attributes
                .get("ApproximateReceiveCount")
                .and_then(|c| c.parse().ok())
                .unwrap_or(1),
        };
        let receipt = message.receipt.clone();
        let fut = handle(message);
        async move { (id, receipt, fut.await) }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, receipt, disposition) in outcomes {
        if let kpi_sync::Disposition::RetryAfter(delay) = disposition {
            delay_retry(receipt, delay).await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The sync worker of `provider`, with its adapter and the log notifier (the
/// Resend notifier arrives with the Resend integration).
pub fn worker_for(state: &AppState, provider: kpi_core::Provider) -> Result<kpi_sync::Worker> {
    let mut adapters: HashMap<kpi_core::Provider, Arc<dyn kpi_core::adapter::IntegrationAdapter>> =
        HashMap::new();
    match provider {
        kpi_core::Provider::Ga4 => {
            let ga4 = state.providers.ga4_adapter().ok_or_else(|| {
                Error::config("GOOGLE_CLIENT_ID and GOOGLE_CLIENT_SECRET are needed to sync GA4")
            })?;
            adapters.insert(provider, Arc::new(ga4));
        }
        other => return Err(Error::config(format!("no sync adapter for {other} yet"))),
    }
    Ok(kpi_sync::Worker {
        store: state.store.clone(),
        vault: state.vault.clone(),
        clock: state.clock.clone(),
        notifier: Arc::new(kpi_sync::notifier::LogNotifier),
        adapters,
        settings: kpi_sync::WorkerSettings::default(),
        id: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "worker".into()),
    })
}

/// Moves a failed message's next delivery to `delay` from now (backoff); on
/// failure the queue's own visibility timeout applies.
pub async fn delay_message(
    queue: &dyn kpi_core::ports::Queue,
    provider: kpi_core::Provider,
    receipt: &kpi_core::ports::queue::ReceiptHandle,
    delay: Duration,
) {
    if let Err(e) = queue
        .change_visibility(kpi_core::ports::QueueName::Work(provider), receipt, delay)
        .await
    {
        tracing::warn!(error = %e.log_chain(), "could not delay a failed message");
    }
}
