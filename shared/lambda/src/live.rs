//! A Lambda's state that follows the application secret.
//!
//! **Start-up does no configuration work.** The first configuration (the AWS
//! configuration, the Secrets Manager fetch, then the registry, identity and
//! AWS adapters) starts with the first event that needs it ([`Live::state`]),
//! or in the background right after an event that needed none was answered
//! ([`Live::begin`]). Started with the process, it bought nothing on a real
//! cold start (the event is already waiting when the runtime first polls, so
//! there is no wait to overlap), while on the one-thread runtime its CPU-bound
//! part ran between the runtime's connect and its first poll: about 3 ms on
//! every cold start, events that need no configuration included. An event that
//! needs none (`/healthz`, a webhook delivery refused by its screen) is
//! answered without it, and one the store alone can answer (a sync message
//! whose job is gone, an idle tick, an unknown OAuth state) gets the store,
//! built from the environment, without the secret
//! ([`Live::store_before_configuration`]). A first configuration
//! that fails is the event's error and is tried again with the next event,
//! where it used to be the function's init error: either way Lambda's log
//! says why and nothing is served half-wired.
//!
//! A warm function lives for hours, and operators fill or rotate the Secrets
//! Manager secret (a provider's app credentials, the platform sender) without
//! redeploying. So the configuration is not read once per cold start: before
//! each event the function asks [`Live::state`], which re-reads the secret when
//! its cached copy is older than [`crate::SECRET_TTL`] and, when the values
//! changed, configures again (registry, identity, notices). The AWS adapters
//! (table, queues, key, with the key's data-key cache) stay as they are: their
//! names come from the template's environment, and a change of them takes a
//! deploy, which a changed secret cannot replace.
//!
//! A secret that cannot be read, or whose new values do not configure, never
//! takes a working function down: the previous configuration stays in use, and
//! the log says why.

use std::collections::HashMap;
use std::sync::Arc;

use kpi_app::AppState;
use kpi_app::auth::{Authenticator, JwksSettings};
use kpi_app::config::StoreConfig;
use kpi_aws::{DynamoStore, KmsKeySource, SecretsManagerSecrets, SqsQueue};
use kpi_core::ports::{AppSecrets, Store, SystemClock};
use kpi_core::{Error, Provider, Result};
use kpi_vault::{CacheSettings, EnvelopeVault};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::sync::{Mutex, OnceCell};
use tokio::task::JoinHandle;

use crate::{Configured, LINK_KEY_SECRET_VARIABLE, SECRET_ID_VARIABLE, SECRET_TTL, configure};

/// The names the AWS adapters were built for.
#[derive(Clone, PartialEq, Eq)]
struct Infrastructure {
    table: String,
    key_id: String,
    queue_urls: HashMap<Provider, String>,
}

struct Current {
    /// The secret's values the state was configured from (or last refused).
    values: HashMap<String, String>,
    state: AppState,
    /// Counts configurations, so callers can cache what they build from one.
    generation: u64,
    infrastructure: Infrastructure,
    /// The secret's reader (`None` without `KPI_SECRET_ID`).
    secret: Option<Arc<SecretsManagerSecrets>>,
    /// The providers' HTTP client, kept across configurations.
    http: reqwest::Client,
}

/// What the first configuration needs, owned by the task that builds it.
#[derive(Clone)]
struct Sources {
    /// `None`: loaded from the environment by the task, off the way to the
    /// first poll.
    sdk: Option<aws_config::SdkConfig>,
    env: HashMap<String, String>,
    ttl: std::time::Duration,
    /// What the environment alone gives, made once by whoever needs it first
    /// (the configuration task, or an event that needs only the store).
    base: Arc<OnceCell<Base>>,
}

/// The part of start-up that needs no secret.
#[derive(Clone)]
struct Base {
    sdk: aws_config::SdkConfig,
    /// The table `KPI_STORE` names in the environment, and its store.
    store: Option<(String, Arc<DynamoStore>)>,
}

/// Where the first configuration is.
enum First {
    NotStarted,
    /// Started by [`Live::begin`].
    UnderWay(JoinHandle<Result<Current>>),
    /// Awaited by an event (which kept it, or failed with its error).
    Taken,
}

pub struct Live {
    sources: Sources,
    first: std::sync::Mutex<First>,
    current: Mutex<Option<Current>>,
    /// Set once a configuration is in `current`.
    configured: AtomicBool,
}

impl Live {
    /// The first configuration, from the process environment and the secret
    /// named by `KPI_SECRET_ID`, made when first needed.
    pub fn start() -> Self {
        Self::new(Sources {
            sdk: None,
            env: std::env::vars().collect(),
            ttl: SECRET_TTL,
            base: Arc::default(),
        })
    }

    /// [`Live::start`] with the given AWS configuration, environment and
    /// secret TTL (tests shorten it). The configuration's errors come with
    /// the first [`Live::state`].
    pub fn from_env(
        sdk: &aws_config::SdkConfig,
        env: HashMap<String, String>,
        ttl: std::time::Duration,
    ) -> Self {
        Self::new(Sources {
            sdk: Some(sdk.clone()),
            env,
            ttl,
            base: Arc::default(),
        })
    }

    fn new(sources: Sources) -> Self {
        Self {
            sources,
            first: std::sync::Mutex::new(First::NotStarted),
            current: Mutex::new(None),
            configured: AtomicBool::new(false),
        }
    }

    /// Starts the first configuration in the background, unless it was
    /// started already: for a function that has just answered an event
    /// without it, so that the next event finds it ready, or nearer (within
    /// a Tokio runtime).
    pub fn begin(&self) {
        if self.configured.load(Ordering::Acquire) {
            return;
        }
        let mut first = self.first.lock().unwrap_or_else(|e| e.into_inner());
        if matches!(*first, First::NotStarted) {
            let sources = self.sources.clone();
            *first = First::UnderWay(tokio::spawn(async move {
                // Called while an event's answer is on its way out: the
                // answer goes first. (On the one-thread runtime this task
                // would otherwise run before the connection task that
                // writes the answer.)
                tokio::task::yield_now().await;
                first_configuration(sources).await
            }));
        }
    }

    /// The configuration from the environment alone, without the secret's
    /// values (`None` when that does not parse): what it says of a name the
    /// environment sets holds for the configuration too, where the
    /// environment wins.
    pub fn environment_config(&self) -> Option<kpi_app::Config> {
        let env = self.sources.env.clone();
        kpi_app::Config::from_lookup(
            move |name| env.get(name).cloned(),
            kpi_app::Environment::Production,
        )
        .ok()
    }

    /// The store, from the environment alone, while no configuration is
    /// ready: for what the store alone can answer (a job that is gone) without
    /// waiting for the secret. `None` once one is (use [`Live::state`]), or
    /// when the environment names no table. It is the store the
    /// configuration then uses, connections and all.
    pub async fn store_before_configuration(&self) -> Option<Arc<dyn Store>> {
        if self.configured.load(Ordering::Acquire) {
            return None;
        }
        let base = self.sources.base();
        let (_, store) = base.await.store?;
        Some(store)
    }

    /// The state to handle the next event with, configured from the secret's
    /// values as of at most [`SECRET_TTL`] ago; the first configuration's
    /// error until one succeeds.
    pub async fn state(&self) -> Result<AppState> {
        Ok(self.state_and_generation().await?.0)
    }

    /// [`Live::state`] with its generation, which changes with each new
    /// configuration.
    pub async fn state_and_generation(&self) -> Result<(AppState, u64)> {
        let mut guard = self.current.lock().await;
        let current = match &mut *guard {
            Some(current) => current,
            None => {
                let first = std::mem::replace(
                    &mut *self.first.lock().unwrap_or_else(|e| e.into_inner()),
                    First::Taken,
                );
                let first = match first {
                    First::UnderWay(task) => task
                        .await
                        .map_err(|e| Error::internal(format!("the configuration task: {e}")))?,
                    // Not started, or the first attempt failed: this event
                    // makes it.
                    First::NotStarted | First::Taken => {
                        first_configuration(self.sources.clone()).await
                    }
                }?;
                // Values fetched just now: nothing to refresh.
                let current = guard.insert(first);
                self.configured.store(true, Ordering::Release);
                return Ok((current.state.clone(), current.generation));
            }
        };
        if let Some(secret) = current.secret.clone() {
            match secret.values().await {
                Ok(values) if values != current.values => {
                    match self.reconfigure(&values, current) {
                        Ok(state) => {
                            current.state = state;
                            current.generation += 1;
                            tracing::info!(
                                "the application secret changed: configuration reloaded"
                            );
                        }
                        Err(e) => tracing::error!(
                            error = %e.log_chain(),
                            "the application secret changed, but its values are refused; \
                             the previous configuration stays in use"
                        ),
                    }
                    // Refused values are not tried again until they change.
                    current.values = values;
                }
                Ok(_) => {}
                // The secret's reader keeps serving its last copy while
                // Secrets Manager fails; reaching here means it has none.
                Err(e) => tracing::warn!(
                    error = %e.log_chain(),
                    "the application secret could not be read; the previous configuration stays in use"
                ),
            }
        }
        Ok((current.state.clone(), current.generation))
    }

    fn reconfigure(&self, values: &HashMap<String, String>, current: &Current) -> Result<AppState> {
        let configured = configure(lookup(&self.sources.env, values), &current.http)?;
        let now = Infrastructure {
            table: configured.table.clone(),
            key_id: configured.key_id.clone(),
            queue_urls: configured.queue_urls.clone(),
        };
        if now != current.infrastructure {
            return Err(Error::config(
                "KPI_STORE, KPI_VAULT and the queue URLs take effect at the next deploy, \
                 not through the application secret",
            ));
        }
        let previous = &current.state;
        Ok(assemble(
            configured,
            &current.http,
            Adapters {
                store: previous.store.clone(),
                queue: previous.queue.clone(),
                vault: previous.vault.clone(),
                secrets: previous.secrets.clone(),
            },
        ))
    }
}

#[async_trait::async_trait]
impl kpi_app::http::early::StoreBeforeConfiguration for Live {
    async fn store(&self) -> Option<Arc<dyn Store>> {
        self.store_before_configuration().await
    }
}

impl Sources {
    /// [`Base`], made on first use; a retried configuration keeps it.
    async fn base(&self) -> Base {
        let made = self.base.get_or_init(|| async {
            let sdk = match &self.sdk {
                Some(sdk) => sdk.clone(),
                None => kpi_aws::load_sdk_config().await,
            };
            // Only the deployed form; anything else is the configuration's
            // to refuse, with its reason.
            let store = match self
                .env
                .get("KPI_STORE")
                .and_then(|v| StoreConfig::parse(v))
            {
                Some(StoreConfig::DynamoDb { table }) => {
                    let store = Arc::new(DynamoStore::new(&sdk, &table));
                    Some((table, store))
                }
                _ => None,
            };
            Base { sdk, store }
        });
        made.await.clone()
    }
}

/// The secret's values, the configuration from them and the environment, and
/// the AWS adapters.
async fn first_configuration(sources: Sources) -> Result<Current> {
    let Base { sdk, store } = sources.base().await;
    let Sources { env, ttl, .. } = sources;
    let http = kpi_app::providers::http_client()?;
    let secret = env.get(SECRET_ID_VARIABLE).map(|id| {
        let secret = SecretsManagerSecrets::new(&sdk, id, ttl);
        Arc::new(match env.get(LINK_KEY_SECRET_VARIABLE) {
            Some(link) => secret.with_defaults_from(link),
            None => secret,
        })
    });
    let values = match &secret {
        Some(s) => s.values().await?,
        None => HashMap::new(),
    };
    let configured = configure(lookup(&env, &values), &http)?;
    let infrastructure = Infrastructure {
        table: configured.table.clone(),
        key_id: configured.key_id.clone(),
        queue_urls: configured.queue_urls.clone(),
    };
    let secrets: Arc<dyn AppSecrets> = match &secret {
        Some(s) => s.clone(),
        None => Arc::new(crate::EnvOnly),
    };
    let state = assemble(
        configured,
        &http,
        Adapters {
            store: match store {
                Some((table, store)) if table == infrastructure.table => store,
                _ => Arc::new(DynamoStore::new(&sdk, &infrastructure.table)),
            },
            queue: Arc::new(SqsQueue::new(&sdk, infrastructure.queue_urls.clone())),
            vault: Arc::new(EnvelopeVault::new(
                KmsKeySource::new(&sdk, &infrastructure.key_id),
                CacheSettings::default(),
            )),
            secrets,
        },
    );
    Ok(Current {
        values,
        state,
        generation: 0,
        infrastructure,
        secret,
        http,
    })
}

/// The environment over the secret's values: one value can be overridden per
/// function.
fn lookup(
    env: &HashMap<String, String>,
    values: &HashMap<String, String>,
) -> impl Fn(&str) -> Option<String> + Send + Sync + 'static {
    let (env, values) = (env.clone(), values.clone());
    move |name: &str| env.get(name).or_else(|| values.get(name)).cloned()
}

struct Adapters {
    store: Arc<dyn kpi_core::ports::Store>,
    queue: Arc<dyn kpi_core::ports::Queue>,
    vault: Arc<dyn kpi_core::ports::CredentialVault>,
    secrets: Arc<dyn AppSecrets>,
}

fn assemble(configured: Configured, http: &reqwest::Client, adapters: Adapters) -> AppState {
    let Configured {
        config, registry, ..
    } = configured;
    let jwks = JwksSettings::from_config(&config.auth);
    let auth = Authenticator::new(config.auth.dev_secret.clone(), jwks, http.clone());
    AppState {
        store: adapters.store,
        queue: adapters.queue,
        vault: adapters.vault,
        secrets: adapters.secrets,
        clock: Arc::new(SystemClock),
        auth: Arc::new(auth),
        registry: Arc::new(registry),
        config: Arc::new(config),
    }
}
