//! The provider sandbox: a simulator of the Google authorization and token
//! endpoints, the GA4 Admin API, Facebook Login and the Graph API, and Resend,
//! speaking their wire formats (including their error bodies) so the real
//! adapters can run against it. The dev server mounts it under `/sandbox` when
//! `KPI_SANDBOX` is on; tests start it alone on a free port with [`Sandbox::serve`].
//!
//! State is in memory and deterministic; faults can be switched on per endpoint
//! ([`Faults`]) to exercise error paths.

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
mod state;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::routing::{get, post};
use serde::{Deserialize, Serialize};

pub use google::SANDBOX_USER_SUB as SANDBOX_GOOGLE_USER;
pub use meta::SANDBOX_USER_ID as SANDBOX_META_USER;
pub use state::Counters;

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
    pub state: Mutex<state::State>,
    pub faults: Mutex<Faults>,
}

impl Sandbox {
    pub fn new(config: SandboxConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(state::State::default()),
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
        let c = self.config();
        [
            ("GOOGLE_CLIENT_ID", &c.google_client_id),
            ("GOOGLE_CLIENT_SECRET", &c.google_client_secret),
            ("META_APP_ID", &c.meta_app_id),
            ("META_APP_SECRET", &c.meta_app_secret),
            ("META_WEBHOOK_VERIFY_TOKEN", &c.meta_verify_token),
            ("RESEND_WEBHOOK_SECRET", &c.resend_webhook_secret),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.clone()))
        .collect()
    }

    pub fn set_faults(&self, faults: Faults) {
        let lose = faults.resend_lose_answers.unwrap_or(0);
        self.with_state(|s| s.resend_lose_answers = lose);
        *self.inner.faults.lock().unwrap_or_else(|e| e.into_inner()) = faults;
    }

    pub(crate) fn faults(&self) -> Faults {
        self.inner
            .faults
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Sets an outbox email's last event without sending a webhook (as when
    /// Resend's webhook never arrives).
    pub fn set_resend_last_event(&self, id: &str, event: &str) {
        self.with_state(|s| {
            if let Some(e) = s.resend_outbox.iter_mut().find(|e| e.id == id) {
                e.last_event = event.to_owned();
            }
        });
    }

    /// Every email the Resend endpoints accepted, oldest first.
    /// The endpoints registered through Resend's webhooks API.
    pub fn resend_webhooks(&self) -> Vec<resend::Webhook> {
        self.with_state(|s| s.resend_webhooks.clone())
    }

    pub fn resend_outbox(&self) -> Vec<resend_send::OutboxEmail> {
        self.with_state(|s| s.resend_outbox.clone())
    }

    /// Ad accounts the app was subscribed to through `subscribed_apps`.
    pub fn meta_subscriptions(&self) -> Vec<String> {
        self.with_state(|s| s.meta_subscribed.clone())
    }

    /// How often each simulated endpoint was called.
    pub fn counters(&self) -> Counters {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .counters
            .clone()
    }

    pub(crate) fn with_state<T>(&self, f: impl FnOnce(&mut state::State) -> T) -> T {
        f(&mut self.inner.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// The routes, relative to where they are mounted (the dev server: `/sandbox`).
    pub fn router(&self) -> Router {
        Router::new()
            .route("/google/auth", get(google::authorize))
            .route("/google/consent", post(google::consent))
            .route("/google/token", post(google::token))
            .route("/google/revoke", post(google::revoke))
            .route(
                "/ga4/admin/v1beta/accountSummaries",
                get(ga4::account_summaries),
            )
            .route(
                "/ga4/data/v1beta/properties/{target}",
                post(ga4_data::batch_run_reports),
            )
            .route("/meta/dialog/oauth", get(meta::authorize))
            .route("/meta/dialog/consent", post(meta::consent))
            .route(
                "/meta/graph/{version}/oauth/access_token",
                get(meta::access_token).post(meta::access_token_form),
            )
            .route("/meta/graph/{version}/me", get(meta::me))
            .route(
                "/meta/graph/{version}/me/permissions",
                get(meta::permissions).delete(meta::revoke),
            )
            .route(
                "/meta/graph/{version}/{object}/insights",
                get(meta_insights::insights).post(meta_insights::create_report_run),
            )
            .route(
                "/meta/graph/{version}/{object}",
                get(meta_insights::report_run_status),
            )
            .route(
                "/meta/graph/{version}/{object}/subscribed_apps",
                post(meta::subscribe_app),
            )
            .route(
                "/meta/graph/{version}/me/adaccounts",
                get(meta::ad_accounts),
            )
            .route("/resend/domains", get(resend::domains))
            .route(
                "/resend/webhooks",
                post(resend::create_webhook).get(resend::list_webhooks),
            )
            .route(
                "/resend/webhooks/{id}",
                axum::routing::delete(resend::delete_webhook),
            )
            .route("/resend/emails", post(resend_send::send))
            .route("/resend/emails/batch", post(resend_send::send_batch))
            .route("/resend/emails/{id}", get(resend_send::get_email))
            .route("/resend/outbox", get(resend_send::outbox))
            .route("/resend/outbox/{id}", get(resend_send::outbox_email))
            .route(
                "/resend/outbox/{id}/event",
                post(resend_events::send_from_page),
            )
            .layer(axum::middleware::from_fn_with_state(
                self.clone(),
                simulated_latency,
            ))
            .route("/_control/resend/events", post(resend_events::send))
            .route("/_control/faults", post(set_faults_route))
            .route("/_control/meta/webhook", post(meta_webhook::send))
            .with_state(self.clone())
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

impl Sandbox {
    /// A long-lived Meta user token with `ads_read`, as if the user had just
    /// connected (benchmarks and tools that skip the login dialog).
    pub fn meta_token(&self) -> String {
        let token = state::random("EAAsbxLong");
        self.with_state(|s| {
            s.meta_long.insert(
                token.clone(),
                state::Token {
                    grant: state::random("grant-"),
                    scopes: vec!["ads_read".into(), "business_management".into()],
                    expires: std::time::Instant::now() + std::time::Duration::from_secs(5_183_944),
                    revoked: false,
                },
            )
        });
        token
    }

    /// Revokes every Google grant (the user removed the app's access in their
    /// Google account): access and refresh tokens stop working.
    pub fn revoke_all_google_grants(&self) {
        self.with_state(|s| {
            for t in s
                .google_access
                .values_mut()
                .chain(s.google_refresh.values_mut())
            {
                t.revoked = true;
            }
        });
    }
}
