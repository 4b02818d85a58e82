//! The provider port: everything provider-specific, behind one trait.
//!
//! A provider is a [`ProviderDescriptor`] (its data: id, name, auth kind,
//! scopes, settings, metrics, windows, queue) and a [`ProviderAdapter`] (its
//! behaviour: authorize, connect, options, settings, health, sync, refresh,
//! disconnect). The registry ([`crate::registry::Registry`]) holds one adapter
//! per provider; the API, the OAuth routes, the workers and the scheduler reach
//! providers only through it.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::credentials::ConnectionCredentials;
use crate::error::{Error, ErrorKind, Result};
use crate::integration::Integration;
use crate::kpi::{DateRange, KpiPoint};
use crate::metric::MetricSpec;
use crate::provider::{AuthMode, Provider};

/// Integration settings as stored: a JSON object, read only by its provider.
pub type Settings = Map<String, Value>;

/// One setting a user chooses for an integration.
#[derive(Debug, Clone, Copy)]
pub struct SettingSpec {
    /// Key in the settings object (`property`).
    pub key: &'static str,
    /// What a person calls it (`GA4 property`).
    pub label: &'static str,
    /// The expected form, shown in validation errors (`a GA4 property such as properties/123`).
    pub expected: &'static str,
    /// Needed before the integration can sync.
    pub required: bool,
    /// The options endpoint lists the choices for this setting.
    pub from_options: bool,
    /// A value must be one of the live options (an account the connected user can read).
    pub must_be_an_option: bool,
}

/// A provider's data, in one block (what Nango keeps per provider).
#[derive(Debug, Clone)]
pub struct ProviderDescriptor {
    pub id: Provider,
    pub display_name: &'static str,
    pub auth: AuthMode,
    /// OAuth scopes asked for (empty for API keys).
    pub scopes: &'static [&'static str],
    pub settings: &'static [SettingSpec],
    pub metrics: &'static [MetricSpec],
    /// The one metric that sums the integration up at a glance (the settings
    /// page's sparkline); one of `metrics`.
    pub headline_metric: &'static str,
    /// Days re-read on every incremental sync, because the provider revises
    /// recent numbers (GA4 processing delay, Meta attribution windows).
    pub lookback_days: u32,
    /// Longest window one `sync` call covers; longer backfills are chunked.
    pub max_window_days: u32,
    /// How far back the provider keeps data, in months: older days are
    /// refused before a job is made.
    pub history_months: u32,
    /// The configuration name of its work queue's URL (`KPI_QUEUE_URL_GA4`).
    pub queue_url_variable: &'static str,
    /// The setting naming the provider resource whose webhook events sync an
    /// integration (Meta's `ad_account`); `None` when no event triggers a sync.
    pub webhook_resource: Option<&'static str>,
    /// The webhooks it sends us; `None` when it sends none.
    pub webhook: Option<WebhookSpec>,
    /// Its mark on the pages: an inline SVG of our own drawing (32×32,
    /// `class="logo"`, `aria-hidden`), inserted as is.
    pub mark: &'static str,
}

/// How a provider's webhooks reach us: `/v1/webhooks/{path}` for the
/// deployment's own endpoint, `/v1/webhooks/{path}/{integration}` for a
/// connection's own endpoint.
#[derive(Debug, Clone, Copy)]
pub struct WebhookSpec {
    /// The path name under `/v1/webhooks/` (`meta` for Meta Ads).
    pub path: &'static str,
    /// Whether the provider checks the endpoint with a `GET` first (Meta's
    /// `hub.challenge`).
    pub challenge: bool,
    /// Whether a connection registers an endpoint of its own, whose
    /// deliveries are signed with a secret its credentials hold.
    pub per_connection: bool,
    /// What of a delivery is refused before any secret is known: a
    /// signature header missing or malformed, a timestamp outside the replay
    /// window (`Unauthenticated`). A function still fetching its secret
    /// answers such a delivery at once; the webhook routes apply it first
    /// either way, so the answer is the same.
    pub screen: fn(&WebhookDelivery<'_>) -> Result<()>,
}

impl ProviderDescriptor {
    pub fn setting(&self, key: &str) -> Option<&SettingSpec> {
        self.settings.iter().find(|s| s.key == key)
    }

    /// Whether every required setting has a value.
    pub fn settings_complete(&self, settings: &Settings) -> bool {
        self.settings
            .iter()
            .filter(|s| s.required)
            .all(|s| settings.get(s.key).is_some_and(|v| !v.is_null()))
    }
}

/// Where an OAuth authorization starts.
#[derive(Debug, Clone)]
pub struct AuthorizationRequest<'a> {
    /// The single-use `state` value (its hash is what the store keeps).
    pub state: &'a str,
    /// `{KPI_PUBLIC_URL}/v1/oauth/{provider}/callback`, exactly as registered.
    pub redirect_uri: &'a str,
}

/// The provider's consent URL, and the PKCE verifier to keep for the exchange.
pub struct Authorization {
    pub url: String,
    pub pkce_verifier: Option<String>,
}

impl std::fmt::Debug for Authorization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorization").finish_non_exhaustive()
    }
}

/// What a connect step starts from.
pub enum ConnectRequest<'a> {
    /// An API key typed by the user.
    ApiKey { key: secrecy::SecretString },
    /// The authorization code of an OAuth callback.
    OAuthCode {
        code: &'a str,
        redirect_uri: &'a str,
        pkce_verifier: Option<&'a str>,
        now: DateTime<Utc>,
    },
}

/// The adapter's verdict on fresh credentials.
#[derive(Debug, Clone)]
pub struct ConnectOutcome {
    /// The credentials to store (after provider steps such as a long-lived exchange).
    pub credentials: ConnectionCredentials,
    /// Settings the provider decided itself (e.g. what an API key may do).
    pub settings: Settings,
    /// Whether the user still has to choose something (property, ad account).
    pub needs_configuration: bool,
    /// The provider's id of the account that granted access (Google user,
    /// Facebook user), when revoking would end that account's access for
    /// every integration it connected.
    pub account: Option<String>,
}

/// The choices for a setting, fetched live from the provider.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct ProviderOptions {
    /// The settings key the chosen option goes to (`property`, `ad_account`, `domain`).
    pub setting: String,
    pub options: Vec<OptionItem>,
    pub note: Option<String>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Serialize)]
pub struct OptionItem {
    pub id: String,
    pub name: String,
    /// A heading to group by (the GA4 account, the Meta business).
    pub group: Option<String>,
    /// Whether it may be chosen (a disabled or closed ad account is listed,
    /// with its status in `details`, but cannot be).
    pub selectable: bool,
    #[cfg_attr(feature = "openapi", schema(value_type = Object))]
    pub details: Map<String, Value>,
}

/// One sync of one integration over one window of reporting days.
#[derive(Clone)]
pub struct SyncRequest<'a> {
    pub integration: &'a Integration,
    pub credentials: &'a ConnectionCredentials,
    pub window: DateRange,
    /// What this system recorded itself, for providers whose numbers come
    /// from it (Resend's deliveries); the engine always passes it.
    pub records: Option<&'a dyn SentEmails>,
}

impl std::fmt::Debug for SyncRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SyncRequest")
            .field("integration", &self.integration.id)
            .field("window", &self.window)
            .field("records", &self.records.is_some())
            .finish_non_exhaustive()
    }
}

/// The emails an integration sent, as recorded here (with the newest status
/// its webhooks reported).
#[async_trait]
pub trait SentEmails: Send + Sync {
    /// Emails `integration` sent with `created_at` in `[from, to)`.
    async fn sent_by(
        &self,
        integration: &Integration,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<crate::ports::store::EmailRecord>>;
}

#[derive(Debug, Clone, Default)]
pub struct SyncResult {
    pub points: Vec<KpiPoint>,
    pub provider_calls: u32,
    /// Smallest share of any provider quota left after the sync, in `[0, 1]`.
    pub quota_remaining: Option<Decimal>,
    /// Credentials the adapter refreshed during the sync, to be stored.
    pub refreshed_credentials: Option<ConnectionCredentials>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum HealthStatus {
    Healthy,
    NeedsReauth { message: String },
    NoAccess { message: String },
    QuotaExhausted { until: Option<DateTime<Utc>> },
    Unavailable { message: String },
}

impl HealthStatus {
    /// The one reading of a live check's outcome.
    pub fn from_check(result: Result<()>, now: DateTime<Utc>) -> Self {
        let Err(e) = result else {
            return Self::Healthy;
        };
        let message = e.message().to_owned();
        match e.kind() {
            ErrorKind::Reauth | ErrorKind::Unauthenticated => Self::NeedsReauth { message },
            ErrorKind::Config | ErrorKind::Validation { .. } => Self::NoAccess { message },
            ErrorKind::RateLimited { retry_after } => Self::QuotaExhausted {
                until: retry_after
                    .and_then(|d| chrono::Duration::from_std(d).ok())
                    .map(|d| now + d),
            },
            _ => Self::Unavailable { message },
        }
    }

    pub fn state(&self) -> &'static str {
        match self {
            Self::Healthy => "healthy",
            Self::NeedsReauth { .. } => "needs_reauth",
            Self::NoAccess { .. } => "no_access",
            Self::QuotaExhausted { .. } => "quota_exhausted",
            Self::Unavailable { .. } => "unavailable",
        }
    }

    pub fn message(&self) -> Option<&str> {
        match self {
            Self::NeedsReauth { message }
            | Self::NoAccess { message }
            | Self::Unavailable { message } => Some(message),
            Self::QuotaExhausted { .. } => Some("the provider's quota is used up for now"),
            Self::Healthy => None,
        }
    }
}

/// A webhook delivery as received: the raw body (signatures cover these exact
/// bytes) and the headers, names in lower case.
pub struct WebhookDelivery<'a> {
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
    pub now: DateTime<Utc>,
}

impl WebhookDelivery<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What a verified delivery asks of us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WebhookEvents {
    /// Identifies the delivery, to act on a redelivery once.
    pub delivery: String,
    /// Provider resources (values of the descriptor's `webhook_resource`
    /// setting) whose integrations should sync their recent days.
    pub resources: Vec<String>,
    /// What happened to emails we sent (an email provider's deliveries).
    pub emails: Vec<EmailEvent>,
}

/// One thing that happened to one email we sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailEvent {
    /// The provider's id of the email (what its send call answered).
    pub provider_message_id: String,
    pub kind: EmailEventKind,
    pub at: DateTime<Utc>,
    pub recipients: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EmailEventKind {
    Sent,
    Delivered,
    DeliveryDelayed,
    /// `permanent`: the address will not take mail (hard bounce).
    Bounced {
        permanent: bool,
        sub_type: String,
    },
    Complained,
    Failed {
        reason: String,
    },
    Suppressed,
    Opened,
    Clicked,
}

impl EmailEventKind {
    /// The status a send record takes (`delivered`, `bounced`, …).
    pub fn status(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Delivered => "delivered",
            Self::DeliveryDelayed => "delivery_delayed",
            Self::Bounced { .. } => "bounced",
            Self::Complained => "complained",
            Self::Failed { .. } => "failed",
            Self::Suppressed => "suppressed",
            Self::Opened => "opened",
            Self::Clicked => "clicked",
        }
    }

    /// Why the address is to be suppressed, when this event calls for it:
    /// a hard bounce or a complaint (a soft bounce does not).
    pub fn suppression_reason(&self) -> Option<String> {
        match self {
            Self::Bounced {
                permanent: true,
                sub_type,
            } => Some(if sub_type.is_empty() {
                "bounced".to_owned()
            } else {
                format!("bounced ({sub_type})")
            }),
            Self::Complained => Some("complained (marked as spam)".to_owned()),
            _ => None,
        }
    }
}

/// Everything one provider does. Implemented once per provider.
#[async_trait]
pub trait ProviderAdapter: Send + Sync {
    fn descriptor(&self) -> &ProviderDescriptor;

    fn provider(&self) -> Provider {
        self.descriptor().id
    }

    /// OAuth providers: the consent URL (PKCE, scopes and the provider's own
    /// parameters). Others answer that they do not connect with OAuth.
    fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<Authorization> {
        let _ = request;
        Err(Error::not_found(format!(
            "{} does not connect with OAuth",
            self.descriptor().display_name
        )))
    }

    /// Validates an API key, or finishes an OAuth code exchange (with the
    /// provider's extra steps), and says whether a choice is still needed.
    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome>;

    /// The live choices for the integration's setting.
    async fn options(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions>;

    /// Parses settings into the provider's own type; a bad value is a 422
    /// naming its field (`settings.property`).
    fn validate_settings(&self, settings: &Settings) -> Result<()>;

    /// A cheap live call that tells whether syncing can work right now.
    async fn health(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()>;

    /// Fetches the window's KPI points with the fewest calls the API allows.
    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult>;

    /// New credentials for ones about to expire (OAuth refresh). Providers without
    /// refresh (API keys, Meta's long-lived tokens) return them unchanged. A
    /// provider that rotates refresh tokens returns the new one; one that does not
    /// may return none, and the caller keeps the old.
    async fn refresh(&self, credentials: &ConnectionCredentials) -> Result<ConnectionCredentials> {
        Ok(credentials.clone())
    }

    /// Revokes the credentials at the provider where it can. Callers erase the
    /// stored credentials whatever this returns.
    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()>;

    /// The answer to a webhook endpoint check (Meta's `hub.challenge`), or
    /// why not (a wrong verify token is `Unauthenticated`).
    fn webhook_challenge(&self, params: &[(String, String)]) -> Result<String> {
        let _ = params;
        Err(Error::not_found(format!(
            "{} sends no webhooks",
            self.descriptor().display_name
        )))
    }

    /// Verifies a webhook delivery's signature (before anything of it is
    /// read) and reads what it asks for. A bad or missing signature is
    /// `Unauthenticated`; unknown objects and fields ask for nothing.
    fn read_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
        let _ = delivery;
        Err(Error::not_found(format!(
            "{} sends no webhooks",
            self.descriptor().display_name
        )))
    }

    /// Registers an endpoint of ours for the connection's own webhook
    /// events, where the provider lets a key do so (Resend's webhooks API):
    /// the credentials to keep, now naming the endpoint and its signing
    /// secret; `Ok(None)` when this provider registers nothing. An error
    /// says why not (a sending-only key), for the user to act on.
    async fn register_webhook(
        &self,
        credentials: &ConnectionCredentials,
        endpoint: &str,
    ) -> Result<Option<ConnectionCredentials>> {
        let _ = (credentials, endpoint);
        Ok(None)
    }

    /// Credentials that hold a webhook signing secret the user copied from the
    /// provider (an endpoint they added by hand, where the key may not
    /// register one). A secret of the wrong shape is a validation error.
    fn with_webhook_secret(
        &self,
        credentials: &ConnectionCredentials,
        signing_secret: &str,
    ) -> Result<ConnectionCredentials> {
        let _ = (credentials, signing_secret);
        Err(Error::validation(
            "webhook_secret",
            format!(
                "{} takes no webhook signing secret",
                self.descriptor().display_name
            ),
        ))
    }

    /// Verifies a delivery to one connection's own endpoint with the secret
    /// its credentials hold, and reads it. A bad or missing signature, or no
    /// registered endpoint, is `Unauthenticated`.
    fn read_webhook_for(
        &self,
        credentials: &ConnectionCredentials,
        delivery: &WebhookDelivery<'_>,
    ) -> Result<WebhookEvents> {
        let _ = (credentials, delivery);
        Err(Error::unauthenticated(format!(
            "{} registers no webhooks per connection",
            self.descriptor().display_name
        )))
    }

    /// The provider's way of sending email, for providers that send it (Resend).
    fn mailer(&self) -> Option<std::sync::Arc<dyn crate::ports::Mailer>> {
        None
    }

    /// Asks the provider to send the integration's resource's webhook events
    /// to us (Meta: subscribe the app to the ad account). Best effort: the
    /// caller records the outcome and carries on.
    async fn subscribe_webhooks(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()> {
        let _ = (integration, credentials);
        Ok(())
    }
}
