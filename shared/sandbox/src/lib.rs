//! The provider sandbox: a simulator of the Google authorization and token
//! endpoints, the GA4 Admin API, Facebook Login and the Graph API, and Resend,
//! speaking their wire formats (including their error bodies) so the real
//! adapters can run against it. The dev server mounts it under `/sandbox` when
//! `KPI_SANDBOX` is on; tests start it alone on a free port with [`Sandbox::serve`].
//!
//! Each provider's simulator is one implementation of [`Simulator`]: it owns
//! its routes (answering late under the latency fault), its control routes
//! (`/_control/...`), the app credentials it accepts, and its state, which it
//! keeps in the sandbox's type map (`Sandbox::with`, created on first use).
//! [`SIMULATORS`] lists them; [`Sandbox::router`] mounts every one and
//! [`Sandbox::app_credentials`] gathers theirs. Adding a provider's simulator is
//! adding its module(s) and one line in that list.
//!
//! State is in memory and deterministic; faults can be switched on per endpoint
//! ([`Faults`], posted to the shared `/_control/faults`) to exercise error paths.
//! [`Counters`] counts the calls of every simulator.

mod consent;
mod ga4;
pub mod ga4_data;
mod google;
mod meta;
pub mod meta_insights;
pub mod meta_webhook;
mod resend;
pub mod resend_events;
pub mod resend_send;
mod simulator;
mod state;

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::routing::post;
use serde::{Deserialize, Serialize};

pub use google::SANDBOX_USER_SUB as SANDBOX_GOOGLE_USER;
pub use meta::SANDBOX_USER_ID as SANDBOX_META_USER;
pub use simulator::Simulator;
pub use state::Counters;

/// Every provider's simulator, mounted in this order.
pub const SIMULATORS: &[&dyn Simulator] = &[&ga4::Ga4Sim, &meta::MetaSim, &resend::ResendSim];

/// The app credentials the sandbox accepts (the dev server uses these when no
/// real provider credentials are configured).
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    pub google_client_id: String,
    pub google_client_secret: String,
    pub meta_app_id: String,
    pub meta_app_secret: String,
    /// The token Meta's webhook endpoint check sends.
    pub meta_verify_token: String,
    /// Where the webhook control sends Meta deliveries (the dev server's
    /// `/v1/webhooks/meta`); `None`: nowhere.
    pub meta_webhook_url: Option<String>,
    /// The signing secret of the sandbox's Resend webhook endpoint.
    pub resend_webhook_secret: String,
    /// Where the outbox's delivery events go (the dev server's `/v1/webhooks/resend`).
    pub resend_webhook_url: Option<String>,
}

impl Default for SandboxConfig {
    fn default() -> Self {
        Self {
            google_client_id: "sandbox-google-client.apps.googleusercontent.com".into(),
            google_client_secret: "sandbox-google-secret".into(),
            meta_app_id: "100000000000001".into(),
            meta_app_secret: "sandbox-meta-secret".into(),
            meta_verify_token: "sandbox-verify-token".into(),
            meta_webhook_url: None,
            // base64 of "sandbox-resend-webhook-key!", as Resend shows it.
            resend_webhook_secret: "whsec_c2FuZGJveC1yZXNlbmQtd2ViaG9vay1rZXkh".into(),
            resend_webhook_url: None,
        }
    }
}

/// Switchable failures: an HTTP status an endpoint answers with instead of working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    #[serde(default)]
    pub google_token: Option<u16>,
    #[serde(default)]
    pub google_revoke: Option<u16>,
    #[serde(default)]
    pub ga4_admin: Option<u16>,
    /// `429_concurrent`, `429_hourly`, `429_daily`, `401`, `403`, `500` (each
    /// answered once, then the API works again) or `slow` (every call, 5 s).
    #[serde(default)]
    pub ga4_data: Option<String>,
    #[serde(default)]
    pub meta_graph: Option<u16>,
    /// The share (percent) of Meta's ads_insights limit the insights endpoint
    /// reports in `X-Business-Use-Case-Usage` (default 12).
    #[serde(default)]
    pub meta_usage: Option<u8>,
    /// Insights answer error #80000 with this `estimated_time_to_regain_access`
    /// (minutes) until the faults are reset.
    #[serde(default)]
    pub meta_throttle_minutes: Option<u32>,
    /// Plain insights reads over more days than this answer Meta's request
    /// timeout (code 100, subcode 1504018).
    #[serde(default)]
    pub meta_timeout_above_days: Option<u32>,
    /// Async report runs over more days than this end in "Job Failed".
    #[serde(default)]
    pub meta_report_fail_above_days: Option<u32>,
    /// Async report runs never get past 0%.
    #[serde(default)]
    pub meta_report_stall: Option<bool>,
    #[serde(default)]
    pub resend: Option<u16>,
    /// Resend's team limit in requests per second (default 5).
    #[serde(default)]
    pub resend_rate_limit: Option<u32>,
    /// `daily` or `monthly`: sends answer that quota's 429.
    #[serde(default)]
    pub resend_quota: Option<String>,
    /// The next this-many sends are accepted but their answer is lost (504).
    #[serde(default)]
    pub resend_lose_answers: Option<u32>,
    /// Every provider endpoint answers this many milliseconds late, as a
    /// provider across the internet does (the sync benchmark's 50 ms).
    #[serde(default)]
    pub latency_ms: Option<u64>,
}

#[derive(Clone)]
pub struct Sandbox {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    pub config: SandboxConfig,
    /// Each simulator's state (and the shared [`Counters`]) by its type.
    pub states: Mutex<HashMap<TypeId, Box<dyn Any + Send>>>,
    pub faults: Mutex<Faults>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                states: Mutex::new(HashMap::new()),
                faults: Mutex::new(Faults::default()),
            }),
        }
    }

    pub fn config(&self) -> &SandboxConfig {
        &self.inner.config
    }

    /// The app credentials it accepts, by the configuration names the providers
    /// read: what a deployment uses in place of real apps while it serves the
    /// sandbox.
    pub fn app_credentials(&self) -> Vec<(String, String)> {
        SIMULATORS
            .iter()
            .flat_map(|sim| sim.app_credentials(self.config()))
            .map(|(k, v)| (k.to_owned(), v))
            .collect()
    }

    pub fn set_faults(&self, faults: Faults) {
        let lose = faults.resend_lose_answers.unwrap_or(0);
        self.with(|s: &mut resend::ResendState| s.lose_answers = lose);
        *self
            .inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = faults;
    }

    pub(crate) fn faults(&self) -> Faults {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// How often each simulated endpoint was called.
    pub fn counters(&self) -> Counters {
        self.with(|c: &mut Counters| c.clone())
    }

    /// Runs `f` on the state of type `S` (a simulator's own, or the shared
    /// [`Counters`]), created with its `Default` on first use. Every state is
    /// behind one lock: `f` must not call `with` again (it would deadlock).
    pub(crate) fn with<S: Default + Send + 'static, T>(&self, f: impl FnOnce(&mut S) -> T) -> T {
        let mut states = self
            .inner
            .states
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let entry = states
            .entry(TypeId::of::<S>())
            .or_insert_with(|| Box::<S>::default());
        match entry.downcast_mut::<S>() {
            Some(state) => f(state),
            // Unreachable: an entry is keyed by its own type's id.
            None => {
                let mut state = S::default();
                let out = f(&mut state);
                *entry = Box::new(state);
                out
            }
        }
    }

    /// The routes, relative to where they are mounted (the dev server: `/sandbox`):
    /// every simulator's provider routes (delayed under the latency fault),
    /// and their control routes with `/_control/faults` (never delayed).
    pub fn router(&self) -> Router {
        let providers = SIMULATORS
            .iter()
            .fold(Router::new(), |router, sim| router.merge(sim.routes()))
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                simulated_latency,
            ));
        let controls = SIMULATORS
            .iter()
            .fold(Router::new(), |router, sim| {
                router.merge(sim.control_routes())
            })
            .route("/_control/faults", post(set_faults_route));
        // The provider routes are merged into the control routes, not the other
        // way round: of two default fallbacks `merge` keeps the merged-in one,
        // and the delayed one must stay (an unknown path answers its 404 late
        // under the latency fault, as a provider far away does).
        controls.merge(providers).with_state(self.clone())
    }

    /// Serves the sandbox alone on a free loopback port (tests). Returns the
    /// base URL; the server runs until the runtime ends.
    pub async fn serve(&self) -> std::io::Result<String> {
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let addr = listener.local_addr()?;
        let router = self.router();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(format!("http://{addr}"))
    }
}

/// The round trip of a provider far away (`Faults::latency_ms`); the control
/// routes are not delayed.
async fn simulated_latency(
    axum::extract::State(sandbox): axum::extract::State<Sandbox>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if let Some(ms) = sandbox.faults().latency_ms.filter(|ms| *ms > 0) {
        tokio::time::sleep(std::time::Duration::from_millis(ms)).await;
    }
    next.run(request).await
}

async fn set_faults_route(
    axum::extract::State(sandbox): axum::extract::State<Sandbox>,
    axum::Json(faults): axum::Json<Faults>,
) -> axum::http::StatusCode {
    sandbox.set_faults(faults);
    axum::http::StatusCode::NO_CONTENT
}
