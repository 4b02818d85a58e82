//! The wiring of every Lambda, one function per function kind, used by the
//! `functions/*/src/main.rs` files and by the tests, so a test runs exactly what
//! is deployed:
//!
//! * [`run_api`] and [`run_oauth`]: the HTTP route groups (`lambda_http`);
//! * [`run_worker`]: the sync worker, deployed on each provider's SQS queue;
//! * [`run_webhook`]: every provider's webhooks;
//! * [`run_scheduler`]: the EventBridge tick;
//! * [`run_dlq`]: the dead-letter handler.
//!
//! Each function runs on a current-thread Tokio runtime: Lambda hands a
//! function one event at a time, and the records of a batch wait on I/O
//! together; worker threads would only add start-up time and memory.
//!
//! Start-up sets up JSON logs and nothing else. The configuration (the
//! environment merged with the Secrets Manager JSON of `KPI_SECRET_ID`, the
//! provider registry, and the AWS adapters wired into an [`AppState`]) is
//! made when an event first needs it, and then follows the secret while the
//! function is warm ([`Live`]). What needs nothing the secret holds is
//! answered before it: the HTTP functions' early routers
//! (`kpi_app::http::early`), [`settled_before_configuration`] and
//! [`idle_before_configuration`].

mod live;
pub use live::Live;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use aws_lambda_events::sqs::{SqsBatchResponse, SqsEvent};
use kpi_app::config::{QueueConfig, StoreConfig, VaultConfig};
use kpi_app::http::request_id::RequestId;
use kpi_app::{AppState, Config, Environment};
use kpi_core::ports::queue::{ReceiptHandle, ReceivedMessage};
use kpi_core::ports::{AppSecrets, Queue, QueueName};
use kpi_core::{Error, Provider, Result};
use kpi_sync::Notifier;
use kpi_sync::dlq::DlqHandler;
use kpi_sync::settled::{Consumer, Settled};
use kpi_sync::{Disposition, Scheduler, Worker, WorkerSettings};
use lambda_runtime::{LambdaEvent, service_fn};
use tracing::Instrument as _;

/// The variable naming the Secrets Manager secret whose JSON is read with the
/// environment (read before the configuration, to fetch it).
pub const SECRET_ID_VARIABLE: &str = "KPI_SECRET_ID";
/// The secret the stack generates with `KPI_LINK_KEY` (the unsubscribe
/// links' key), read with `KPI_SECRET_ID`, whose own value of it wins.
pub const LINK_KEY_SECRET_VARIABLE: &str = "KPI_LINK_KEY_SECRET_ID";

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

/// What a Lambda's configuration resolves to before any AWS client exists.
pub struct Configured {
    pub config: Config,
    pub registry: kpi_core::Registry,
    /// The work queue of each provider whose worker is deployed.
    pub queue_urls: HashMap<Provider, String>,
    pub table: String,
    pub key_id: String,
}

/// The configuration of a Lambda from `lookup` (the environment over the
/// secret's JSON): what a deployment must set, checked without AWS (the
/// template test runs it on `template.yaml`'s variables).
pub fn configure(
    lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
    http: &reqwest::Client,
) -> Result<Configured> {
    let config = Config::from_lookup(lookup, Environment::Production)?;
    if config.environment != Environment::Production {
        // Development turns on HS256 dev tokens (operators' included) and the
        // sandbox: never in a deployed function.
        return Err(Error::config(
            "KPI_ENV: a Lambda function runs in production only; development is the dev server's",
        ));
    }
    let StoreConfig::DynamoDb { table } = &config.store else {
        return Err(Error::config("KPI_STORE: a Lambda needs dynamodb:TABLE"));
    };
    let QueueConfig::Sqs = &config.queue else {
        return Err(Error::config("KPI_QUEUE: a Lambda needs sqs"));
    };
    let VaultConfig::Kms { key_id } = &config.vault else {
        return Err(Error::config("KPI_VAULT: a Lambda needs kms:KEY"));
    };
    let (table, key_id) = (table.clone(), key_id.clone());
    let registry = kpi_app::providers::build_registry(&config, http, None)?;
    let queue_urls = config.queue_urls(&registry)?;
    Ok(Configured {
        config,
        registry,
        queue_urls,
        table,
        key_id,
    })
}

/// No Secrets Manager secret configured: secrets come from the environment.
pub(crate) struct EnvOnly;

#[async_trait::async_trait]
impl AppSecrets for EnvOnly {
    async fn get(&self, name: &str) -> Result<Option<secrecy::SecretString>> {
        Ok(std::env::var(name)
            .ok()
            .filter(|v| !v.is_empty())
            .map(secrecy::SecretString::from))
    }
}

/// Start-up: logs, and the first configuration to be made when first
/// needed ([`Live`]).
fn start() -> Arc<Live> {
    init_tracing();
    Arc::new(Live::start())
}

/// The state for one event; a configuration that failed is logged and is
/// the event's error (Lambda retries it, or answers 500).
async fn state_of(live: &Live) -> std::result::Result<(AppState, u64), lambda_runtime::Error> {
    // Boxed: the configuration's future reaches down into the AWS SDK's, deep
    // enough to overflow the compiler's layout depth nested in a function's.
    Box::pin(live.state_and_generation()).await.map_err(|e| {
        tracing::error!(error = %e.log_chain(), "the function is not configured");
        e.log_chain().into()
    })
}

/// API Gateway's request id (else the invocation's) as the app's [`RequestId`].
async fn with_gateway_request_id(mut request: axum::extract::Request) -> axum::extract::Request {
    use lambda_http::RequestExt as _;
    use lambda_http::request::RequestContext;
    let from_gateway = match request.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => ctx.request_id.clone(),
        _ => None,
    };
    let id = from_gateway.or_else(|| request.lambda_context_ref().map(|c| c.request_id.clone()));
    if let Some(id) = id {
        request.extensions_mut().insert(RequestId(id));
    }
    request
}

/// An HTTP function: `router` (with its state) behind API Gateway.
pub fn http_app(router: axum::Router<AppState>, state: AppState) -> axum::Router {
    let cors = kpi_app::http::cors::CorsOrigins::new(&state.config.cors_origins);
    router
        .with_state(state)
        .layer(axum::Extension(cors))
        .layer(axum::middleware::map_request(with_gateway_request_id))
}

/// Serves `router` as this Lambda's HTTP function (the `ui` function passes
/// the pages' router, which lives in its own crate). The router gets its state
/// again when the configuration changes ([`Live`]).
pub async fn serve(
    router: axum::Router<AppState>,
) -> std::result::Result<(), lambda_runtime::Error> {
    serve_with(router, |_| kpi_app::http::early::nothing()).await
}

/// An HTTP function's early router (`kpi_app::http::early`) behind API
/// Gateway, as [`http_app`] puts the configured one.
pub fn early_app(early: axum::Router) -> axum::Router {
    early.layer(axum::middleware::map_request(with_gateway_request_id))
}

/// [`serve`], with an early router (`kpi_app::http::early`) asked first: what
/// it answers is answered without waiting for the configuration; what it
/// declines goes on to `router`.
pub async fn serve_with(
    router: axum::Router<AppState>,
    early: impl FnOnce(&Arc<Live>) -> axum::Router,
) -> std::result::Result<(), lambda_runtime::Error> {
    use tower::ServiceExt as _;
    let live = start();
    let early = early_app(early(&live));
    let app: Arc<std::sync::Mutex<Option<(u64, axum::Router)>>> = Arc::default();
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let (live, router, app, early) =
                (live.clone(), router.clone(), app.clone(), early.clone());
            async move {
                let (request, copy) = with_copy(request);
                if let Some(copy) = copy {
                    let answer = early.oneshot(copy).await?;
                    if !kpi_app::http::early::is_declined(&answer) {
                        live.begin();
                        return Ok(answer);
                    }
                }
                let (state, generation) = state_of(&live).await?;
                let current = {
                    let mut app = app.lock().unwrap_or_else(|e| e.into_inner());
                    match &*app {
                        Some((built, router)) if *built == generation => router.clone(),
                        _ => {
                            let router = http_app(router, state);
                            *app = Some((generation, router.clone()));
                            router
                        }
                    }
                };
                current
                    .oneshot(request)
                    .await
                    .map_err(lambda_runtime::Error::from)
            }
        },
    ))
    .await
}

/// The request, and a copy of it for the early router (`None` for a body of
/// a kind this build does not know, which goes to the configured routes).
fn with_copy(
    request: lambda_http::Request,
) -> (lambda_http::Request, Option<lambda_http::Request>) {
    use lambda_http::Body;
    let (parts, body) = request.into_parts();
    let copy = match &body {
        Body::Empty => Some(Body::Empty),
        Body::Text(text) => Some(Body::Text(text.clone())),
        Body::Binary(bytes) => Some(Body::Binary(bytes.clone())),
        _ => None,
    }
    .map(|body| lambda_http::Request::from_parts(parts.clone(), body));
    (lambda_http::Request::from_parts(parts, body), copy)
}

/// The `api` function.
pub async fn run_api() -> std::result::Result<(), lambda_runtime::Error> {
    serve_with(kpi_app::http::api_function(), |_| {
        kpi_app::http::early::api()
    })
    .await
}

/// The `oauth` function.
pub async fn run_oauth() -> std::result::Result<(), lambda_runtime::Error> {
    serve_with(kpi_app::http::oauth_function(), |live| {
        kpi_app::http::early::oauth(live.clone())
    })
    .await
}

/// The `webhook` function: every provider's webhooks.
pub async fn run_webhook() -> std::result::Result<(), lambda_runtime::Error> {
    serve_with(kpi_app::http::webhook_function(), |_| {
        kpi_app::http::early::webhook()
    })
    .await
}

/// One SQS batch, the Lambda way: each record handled concurrently in its own
/// span; a record whose handler asks for a retry is reported as a batch item
/// failure (the rest of the batch is deleted by Lambda), after `delay_retry`
/// has moved its visibility to the wanted backoff.
pub async fn handle_sqs_batch<H, HF, R, RF>(
    event: SqsEvent,
    handle: H,
    delay_retry: R,
) -> SqsBatchResponse
where
    H: Fn(ReceivedMessage) -> HF,
    HF: std::future::Future<Output = Disposition>,
    R: Fn(ReceiptHandle, Duration) -> RF,
    RF: std::future::Future<Output = ()>,
{
    use aws_lambda_events::sqs::BatchItemFailure;

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
        let span = tracing::info_span!("sqs_record", message_id = %id);
        let fut = handle(message).instrument(span);
        async move { (id, receipt, fut.await) }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    for (id, receipt, disposition) in outcomes {
        if let Disposition::RetryAfter(delay) = disposition {
            delay_retry(receipt, delay).await;
            let mut failure = BatchItemFailure::default();
            failure.item_identifier = id;
            response.batch_item_failures.push(failure);
        }
    }
    response
}

/// The sync worker of `provider`: a configuration error naming what is
/// missing when the deployment has not configured that provider.
pub fn worker(state: &AppState, provider: Provider) -> Result<Worker> {
    let descriptor = &state.registry.adapter(provider)?.descriptor().clone();
    if !state.queue.serves(QueueName::Work(provider)) {
        return Err(Error::config(format!(
            "{}: the {} worker has no queue to consume",
            descriptor.queue_url_variable, descriptor.display_name
        )));
    }
    Ok(worker_for_any(state))
}

/// The sync engine's notices by email: from the workspace's Resend account,
/// else the platform's (`KPI_SYSTEM_RESEND_API_KEY`, `KPI_SYSTEM_EMAIL_FROM`),
/// else to the log only.
pub fn notifier(state: &AppState) -> Arc<dyn Notifier> {
    Arc::new(kpi_notify::EmailNotifier {
        outbox: outbox(state),
        registry: state.registry.clone(),
        public_url: state.config.public_url.clone(),
    })
}

/// Sending email for a workspace: its own Resend account, else (for notices)
/// the platform's.
pub fn outbox(state: &AppState) -> Arc<kpi_notify::Outbox> {
    kpi_app::mail::outbox(state)
}

/// Alert rules, evaluated after each sync that wrote points.
pub fn alert_evaluator(state: &AppState) -> Arc<kpi_notify::AlertEvaluator> {
    Arc::new(kpi_app::mail::alert_evaluator(state))
}

/// A worker for messages of any registered provider (the dev server's).
pub fn worker_for_any(state: &AppState) -> Worker {
    Worker {
        store: state.store.clone(),
        vault: state.vault.clone(),
        clock: state.clock.clone(),
        notifier: notifier(state),
        observer: Some(alert_evaluator(state)),
        registry: state.registry.clone(),
        settings: WorkerSettings::default(),
        id: std::env::var("AWS_LAMBDA_LOG_STREAM_NAME").unwrap_or_else(|_| "worker".into()),
    }
}

/// Moves a failed message's next delivery to `delay` from now (backoff); on
/// failure the queue's own visibility timeout applies.
pub async fn delay_message(
    queue: &dyn Queue,
    provider: Provider,
    receipt: &ReceiptHandle,
    delay: Duration,
) {
    if let Err(e) = queue
        .change_visibility(QueueName::Work(provider), receipt, delay)
        .await
    {
        tracing::warn!(error = %e.log_chain(), "could not delay a failed message");
    }
}

/// A worker's handling of one SQS event, within `deadline` (the invocation's,
/// when Lambda gives one).
pub async fn worker_batch(
    worker: &Worker,
    queue: &dyn Queue,
    provider: Provider,
    event: SqsEvent,
    deadline: Option<std::time::SystemTime>,
) -> SqsBatchResponse {
    let budget = deadline.map(|d| {
        d.duration_since(std::time::SystemTime::now())
            .unwrap_or_default()
    });
    handle_sqs_batch(
        event,
        |m| async move { worker.handle_within(&m, budget).await },
        |receipt, delay| async move { delay_message(queue, provider, &receipt, delay).await },
    )
    .await
}

/// The provider whose work queue `event` comes from: the queue named by
/// its records' source (`arn:aws:sqs:…:<queue name>`), matched against the
/// configured `KPI_QUEUE_URL_<PROVIDER>` URLs (`…/<queue name>`). A batch
/// comes from one event source, so from one queue.
pub fn provider_of(queue_urls: &HashMap<Provider, String>, event: &SqsEvent) -> Result<Provider> {
    let names: std::collections::BTreeSet<Option<&str>> = event
        .records
        .iter()
        .map(|r| {
            r.event_source_arn
                .as_deref()
                .and_then(|arn| arn.rsplit(':').next())
        })
        .collect();
    let mut names = names.into_iter();
    let (Some(Some(name)), None) = (names.next(), names.next()) else {
        return Err(Error::config(
            "a worker's batch does not name one source queue",
        ));
    };
    queue_urls
        .iter()
        .find(|(_, url)| url.rsplit('/').next() == Some(name))
        .map(|(provider, _)| *provider)
        .ok_or_else(|| {
            Error::config(format!(
                "queue {name:.80}: no KPI_QUEUE_URL_<PROVIDER> names it, so no provider's worker takes it"
            ))
        })
}

/// Whether, with no configuration ready yet, every message of the batch is
/// one its consumer has nothing to do for (its job is gone or ended, or it is
/// no sync message at all, which is logged and dropped): then
/// the batch is answered with the store alone, without waiting for the secret.
/// The messages are deleted as the consumer would delete them, and the
/// configuration starts in the background for the batches to come; one store
/// error, or one message with work, and the batch waits for the
/// configuration as any other.
pub async fn settled_before_configuration(
    live: &Live,
    consumer: Consumer,
    event: &SqsEvent,
) -> bool {
    let Some(store) = live.store_before_configuration().await else {
        return false;
    };
    let checks = event.records.iter().map(|r| {
        let body = r.body.as_deref().unwrap_or_default();
        kpi_sync::settled::settled(&*store, consumer, body)
    });
    match futures::future::try_join_all(checks).await {
        Ok(settled) if !settled.contains(&Settled::No) => {
            for (record, settled) in event.records.iter().zip(&settled) {
                if *settled == Settled::Unreadable {
                    let id = record.message_id.as_deref().unwrap_or_default();
                    tracing::error!(message = %id, ?consumer, "unreadable sync message dropped");
                }
            }
            tracing::info!(
                messages = settled.len(),
                "nothing to do for the batch's messages: answered before the configuration"
            );
            live.begin();
            true
        }
        Ok(_) => false,
        Err(e) => {
            tracing::warn!(error = %e.log_chain(), "the batch waits for the configuration");
            false
        }
    }
}

/// The `sync-worker` function, deployed once per provider work queue: each
/// batch is its queue's provider's.
pub async fn run_worker() -> std::result::Result<(), lambda_runtime::Error> {
    let live = start();
    let live = &live;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        let deadline = Some(event.context.deadline());
        if settled_before_configuration(live, Consumer::Worker, &event.payload).await {
            return Ok(SqsBatchResponse::default());
        }
        let (state, _) = state_of(live).await?;
        // Not configured (yet): the batch fails whole and waits in the queue.
        let provider = state
            .config
            .queue_urls(&state.registry)
            .map_err(Error::from)
            .and_then(|urls| provider_of(&urls, &event.payload))
            .map_err(|e| e.log_chain())?;
        let worker = worker(&state, provider).map_err(|e| e.log_chain())?;
        Ok::<_, lambda_runtime::Error>(
            worker_batch(&worker, &*state.queue, provider, event.payload, deadline).await,
        )
    }))
    .await
}

/// Whether, with no configuration ready yet, the tick has nothing to do: no
/// integration due, no queued job to send again or give up, no report due.
/// Then it is answered (an empty run) with the store alone, without waiting
/// for the secret, and the configuration starts in the background for the
/// ticks to come. Anything to do, or a store error, and the tick waits for
/// the configuration as any other; the checks run one after the other, so on
/// a busy deployment the first one (the due integrations) settles it.
pub async fn idle_before_configuration(live: &Live) -> bool {
    let Some(store) = live.store_before_configuration().await else {
        return false;
    };
    use kpi_core::ports::Clock as _;
    let now = kpi_core::ports::SystemClock.now();
    let settings = kpi_sync::scheduler::SchedulerSettings::default();
    let idle = async {
        let held_since = kpi_aws::SqsQueue::holds_since_at(now);
        Ok::<_, Error>(
            kpi_sync::scheduler::nothing_to_fan_out(&*store, &settings, now, held_since).await?
                && store.due_reports(now, 1).await?.is_empty(),
        )
    };
    match idle.await {
        Ok(true) => {
            tracing::info!("nothing due: the tick is answered before the configuration");
            live.begin();
            true
        }
        Ok(false) => false,
        Err(e) => {
            tracing::warn!(error = %e.log_chain(), "the tick waits for the configuration");
            false
        }
    }
}

pub fn scheduler(state: &AppState) -> Scheduler {
    Scheduler {
        store: state.store.clone(),
        queue: state.queue.clone(),
        clock: state.clock.clone(),
        notifier: notifier(state),
        due_work: Some(Arc::new(kpi_app::mail::report_sender(state))),
        // The settings `idle_before_configuration` judges a tick by.
        settings: Default::default(),
    }
}

/// The `sync-scheduler` function: on each EventBridge tick, fan due integrations out.
pub async fn run_scheduler() -> std::result::Result<(), lambda_runtime::Error> {
    let live = start();
    let live = &live;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            let budget = event
                .context
                .deadline()
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            if idle_before_configuration(live).await {
                return Ok(serde_json::to_value(kpi_sync::SchedulerReport::default())?);
            }
            let report = scheduler(&state_of(live).await?.0)
                .run_within(Some(budget))
                .instrument(tracing::info_span!("scheduler_run"))
                .await
                .map_err(|e| e.log_chain())?;
            Ok::<_, lambda_runtime::Error>(serde_json::to_value(report)?)
        },
    ))
    .await
}

pub fn dlq_handler(state: &AppState) -> DlqHandler {
    DlqHandler {
        store: state.store.clone(),
        notifier: notifier(state),
        clock: state.clock.clone(),
    }
}

/// A dead-letter handler's handling of one SQS event. A failed record becomes
/// visible again after the DLQ's own timeout.
pub async fn dlq_batch(handler: &DlqHandler, event: SqsEvent) -> SqsBatchResponse {
    handle_sqs_batch(
        event,
        |m| async move { handler.handle(&m).await },
        |_, _| async {},
    )
    .await
}

/// The `sync-dlq` function: dead-lettered sync messages of every provider.
pub async fn run_dlq() -> std::result::Result<(), lambda_runtime::Error> {
    let live = start();
    let live = &live;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| async move {
        if settled_before_configuration(live, Consumer::DeadLetters, &event.payload).await {
            return Ok(SqsBatchResponse::default());
        }
        let handler = dlq_handler(&state_of(live).await?.0);
        Ok::<_, lambda_runtime::Error>(dlq_batch(&handler, event.payload).await)
    }))
    .await
}
