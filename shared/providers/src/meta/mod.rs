//! Meta Ads: the provider plug-in. Facebook Login (manual code flow on the
//! `oauth2` crate, then Meta's own long-lived token exchange), the ad-account
//! picker, typed settings (ad account, attribution windows), health and
//! revocation through the Graph API.

pub mod graph;
pub mod insights;
pub mod report;
pub mod usage;
pub mod webhook;

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use kpi_core::config::ConfigError;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::metric::{MetricSpec, Unit};
use kpi_core::ports::provider::{
    Authorization, AuthorizationRequest, ConnectOutcome, ConnectRequest, OptionItem,
    ProviderAdapter, ProviderDescriptor, ProviderOptions, SettingSpec, Settings, SyncRequest,
    SyncResult, WebhookDelivery, WebhookEvents, WebhookSpec,
};
use kpi_core::provider::AuthMode;
use kpi_core::registry::Plugin;
use kpi_core::{Error, Integration, Provider, Result};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, RedirectUrl, TokenResponse as _, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use graph::{AdAccount, MetaClient, REQUIRED_PERMISSION, SCOPES};

use crate::oauth::{OAuthHttp, token_request_error};
use crate::plugin::BuildContext;
use crate::settings;

pub const METRICS: [MetricSpec; 10] = [
    MetricSpec::new("meta.spend", Unit::Currency),
    MetricSpec::new("meta.impressions", Unit::Count),
    MetricSpec::new("meta.clicks", Unit::Count),
    MetricSpec::new("meta.reach", Unit::Count),
    // Ratios over a range come from their parts' sums.
    MetricSpec::ratio(
        "meta.ctr",
        Unit::Ratio,
        "meta.clicks",
        "meta.impressions",
        1,
    ),
    MetricSpec::ratio("meta.cpc", Unit::Currency, "meta.spend", "meta.clicks", 1),
    MetricSpec::ratio(
        "meta.cpm",
        Unit::Currency,
        "meta.spend",
        "meta.impressions",
        1000,
    ),
    MetricSpec::new("meta.purchases", Unit::Count),
    MetricSpec::new("meta.purchase_value", Unit::Currency),
    MetricSpec::ratio(
        "meta.roas",
        Unit::Ratio,
        "meta.purchase_value",
        "meta.spend",
        1,
    ),
];

/// This provider's id in routes, records and configuration.
pub const ID: Provider = Provider::new("meta_ads");

pub const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ID,
    display_name: "Meta Ads",
    auth: AuthMode::OAuth,
    scopes: &["ads_read", "business_management"],
    settings: &[
        SettingSpec {
            key: "ad_account",
            label: "Ad account",
            expected: "a Meta ad account such as act_1234567890",
            required: true,
            from_options: true,
            must_be_an_option: true,
        },
        SettingSpec {
            key: "attribution_windows",
            label: "Attribution windows",
            expected: "a list of 1d_click, 7d_click, 28d_click, 1d_view or 1d_ev",
            required: false,
            from_options: false,
            must_be_an_option: false,
        },
    ],
    metrics: &METRICS,
    headline_metric: "meta.spend",
    // Meta restates up to 28 days back (attribution windows).
    lookback_days: 28,
    // Longer windows run as async report runs (see `report`); a year a job
    // keeps one attempt well inside a worker's time.
    max_window_days: 366,
    // The Insights API answers for the last 37 months.
    history_months: 37,
    queue_url_variable: "KPI_QUEUE_URL_META_ADS",
    // Ad-account webhook events sync the integrations of that ad account.
    webhook_resource: Some("ad_account"),
    // `/v1/webhooks/meta`: the endpoint check, then signed deliveries for
    // the deployment's Meta app.
    webhook: Some(WebhookSpec {
        path: "meta",
        challenge: true,
        per_connection: false,
        screen: webhook::screen,
    }),
    // A loop of our own drawing (no trademarked artwork).
    mark: r##"<svg class="logo" viewBox="0 0 32 32" width="32" height="32" aria-hidden="true" focusable="false"><path d="M4 21c0-6 3-11 6-11 4 0 8 12 12 12 3 0 5-3 5-6s-2-6-5-6c-4 0-8 12-12 12-3 0-6-3-6-1z" fill="none" stroke="#1d4ed8" stroke-width="3.2" stroke-linecap="round"/></svg>"##,
};

/// The Graph API version used when `META_GRAPH_VERSION` is not set.
pub const DEFAULT_GRAPH_VERSION: &str = "v25.0";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Builds the Meta plug-in from configuration: the Meta app, or the sandbox.
pub fn plugin(ctx: &BuildContext<'_>) -> Result<Plugin, ConfigError> {
    plugin_with(ctx, report::ReportPolicy::default())
}

/// [`plugin`] with another way of reading insights (page size, polling).
pub fn plugin_with(
    ctx: &BuildContext<'_>,
    policy: report::ReportPolicy,
) -> Result<Plugin, ConfigError> {
    let own = ctx.vars.get("META_APP_ID").is_some() && ctx.vars.get("META_APP_SECRET").is_some();
    let source = ctx.source(own);
    let version = source
        .vars
        .get("META_GRAPH_VERSION")
        .unwrap_or_else(|| DEFAULT_GRAPH_VERSION.into());
    let version_ok = version
        .strip_prefix('v')
        .and_then(|rest| rest.split_once('.'))
        .is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        });
    if !version_ok {
        return Err(ConfigError::new(
            "META_GRAPH_VERSION",
            format!("expected a version such as v25.0, got {version:.20}"),
        ));
    }
    let auth_url = source.url(
        "META_AUTH_URL",
        &format!("https://www.facebook.com/{version}/dialog/oauth"),
        "meta/dialog/oauth",
    )?;
    let graph_url = source.url("META_GRAPH_URL", "https://graph.facebook.com", "meta/graph")?;
    let (Some(app_id), Some(app_secret)) = (
        source.vars.get("META_APP_ID"),
        source.vars.secret("META_APP_SECRET"),
    ) else {
        return Ok(Plugin::Unconfigured {
            descriptor: &DESCRIPTOR,
            why: "META_APP_ID and META_APP_SECRET are not set".into(),
        });
    };
    let graph = MetaClient {
        http: ctx.http.clone(),
        app_id: app_id.clone(),
        app_secret: app_secret.clone(),
        graph_url,
        version,
        policy,
    };
    let token_url = graph
        .endpoint(&["oauth", "access_token"])
        .map_err(|_| ConfigError::new("META_GRAPH_URL", "cannot be a base URL"))?;
    let client = BasicClient::new(ClientId::new(app_id))
        .set_client_secret(ClientSecret::new(app_secret.expose_secret().to_owned()))
        .set_auth_uri(AuthUrl::from_url(auth_url))
        .set_token_uri(TokenUrl::from_url(token_url))
        .set_auth_type(AuthType::RequestBody);
    Ok(Plugin::Ready {
        adapter: Arc::new(MetaAdapter {
            verify_token: source.vars.secret("META_WEBHOOK_VERIFY_TOKEN"),
            client,
            oauth_http: OAuthHttp {
                http: ctx.http.clone(),
                provider: "Meta",
                // Graph errors are not RFC 6749 bodies.
                on_error: Some(graph::exchange_error),
            },
            graph,
        }),
        sandbox: source.is_sandbox(),
    })
}

/// A Meta ad account id, `act_<digits>`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AdAccountId(String);

impl TryFrom<String> for AdAccountId {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        settings::checked(
            value,
            |v| settings::prefixed_number(v, "act_"),
            "a Meta ad account such as act_1234567890",
        )
        .map(Self)
    }
}

impl AdAccountId {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An attribution window the Insights API still offers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub struct AttributionWindow(String);

/// Used when the integration chooses none.
pub const DEFAULT_ATTRIBUTION_WINDOWS: [&str; 2] = ["7d_click", "1d_view"];

/// The windows Meta still serves (7-day and 28-day view were retired on 2026-01-12).
pub const ATTRIBUTION_WINDOWS: [&str; 5] =
    ["1d_click", "7d_click", "28d_click", "1d_view", "1d_ev"];

impl TryFrom<String> for AttributionWindow {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        if ATTRIBUTION_WINDOWS.contains(&value.as_str()) {
            return Ok(Self(value));
        }
        if value == "7d_view" || value == "28d_view" {
            return Err(format!(
                "{value} is no longer offered by Meta (retired on 2026-01-12); use 1d_view"
            ));
        }
        Err(format!("must be one of {}", ATTRIBUTION_WINDOWS.join(", ")))
    }
}

impl AttributionWindow {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Meta's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetaSettings {
    #[serde(default)]
    pub ad_account: Option<AdAccountId>,
    #[serde(default)]
    pub attribution_windows: Option<Vec<AttributionWindow>>,
}

pub struct MetaAdapter {
    /// Answers Meta's webhook endpoint check; without it the check fails.
    verify_token: Option<SecretString>,
    client: Client,
    oauth_http: OAuthHttp,
    pub graph: MetaClient,
}

fn access_token(credentials: &ConnectionCredentials) -> Result<&SecretString> {
    match credentials {
        ConnectionCredentials::OAuth(t) => Ok(&t.access_token),
        ConnectionCredentials::ApiKey { .. } => Err(Error::config("Meta needs OAuth credentials")),
    }
}

fn redirect(uri: &str) -> Result<RedirectUrl> {
    RedirectUrl::new(uri.to_owned())
        .map_err(|_| Error::config("the OAuth redirect URI is not a URL; check KPI_PUBLIC_URL"))
}

#[async_trait]
impl ProviderAdapter for MetaAdapter {
    fn descriptor(&self) -> &ProviderDescriptor {
        &DESCRIPTOR
    }

    fn authorize(&self, request: &AuthorizationRequest<'_>) -> Result<Authorization> {
        let state = request.state.to_owned();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect(request.redirect_uri)?))
            // Meta's scope list is comma-separated.
            .add_extra_param("scope", SCOPES)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            pkce_verifier: None,
        })
    }

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        let ConnectRequest::OAuthCode {
            code,
            redirect_uri,
            now,
            ..
        } = request
        else {
            return Err(Error::validation(
                "provider",
                "Meta Ads connects with Facebook Login, not with an API key",
            ));
        };
        let short = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect(redirect_uri)?))
            .request_async(&self.oauth_http)
            .await
            .map_err(|e| token_request_error("Meta", "code exchange", e))?;
        let short = SecretString::from(short.access_token().secret().to_owned());
        let tokens = self.graph.long_lived(&short, now).await?;
        // Revoking removes the app from this Facebook user altogether.
        let account = self.graph.user_id(&tokens.access_token).await?;
        Ok(ConnectOutcome {
            credentials: ConnectionCredentials::OAuth(tokens),
            settings: Settings::new(),
            needs_configuration: true,
            account: Some(account),
        })
    }

    async fn options(
        &self,
        _: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions> {
        let (accounts, _) = self.graph.ad_accounts(access_token(credentials)?).await?;
        Ok(ProviderOptions {
            setting: "ad_account".into(),
            options: accounts
                .into_iter()
                .map(|a| OptionItem {
                    // Only an active account (status 1) delivers ads to sync.
                    selectable: a.account_status == Some(1),
                    id: a.id,
                    name: a.name,
                    group: None,
                    details:
                        serde_json::json!({"currency": a.currency, "timezone_name": a.timezone_name,
                        "account_status": a.account_status})
                        .as_object()
                        .cloned()
                        .unwrap_or_default(),
                })
                .collect(),
            note: None,
        })
    }

    fn validate_settings(&self, settings: &Settings) -> Result<()> {
        settings::parse::<MetaSettings>(settings).map(|_| ())
    }

    async fn health(&self, _: &Integration, credentials: &ConnectionCredentials) -> Result<()> {
        let granted = self
            .graph
            .granted_permissions(access_token(credentials)?)
            .await?;
        if granted.iter().any(|g| g == REQUIRED_PERMISSION) {
            Ok(())
        } else {
            Err(Error::config(
                "the ads_read permission was removed; reconnect",
            ))
        }
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        let settings: MetaSettings =
            settings::parse(&request.integration.settings).map_err(|e| {
                Error::config(format!(
                    "the Meta Ads settings are not valid: {}",
                    e.message()
                ))
            })?;
        let account = settings
            .ad_account
            .ok_or_else(|| Error::config("no ad account chosen for this integration"))?;
        let windows: Vec<&str> = match &settings.attribution_windows {
            Some(w) if !w.is_empty() => w.iter().map(AttributionWindow::as_str).collect(),
            _ => DEFAULT_ATTRIBUTION_WINDOWS.to_vec(),
        };
        let fetched = self
            .graph
            .insights(
                access_token(request.credentials)?,
                account.as_str(),
                request.window,
                &windows,
            )
            .await?;
        let usage = fetched.usage;
        Ok(SyncResult {
            points: insights::points(request.integration, &request.window, &fetched.rows)?,
            provider_calls: fetched.calls,
            quota_remaining: rust_decimal::Decimal::from_f64_retain(
                (100.0 - usage.highest_pct).clamp(0.0, 100.0) / 100.0,
            )
            .map(|d| d.round_dp(4)),
            refreshed_credentials: None,
        })
    }

    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()> {
        self.graph.revoke(access_token(credentials)?).await
    }

    fn webhook_challenge(&self, params: &[(String, String)]) -> Result<String> {
        webhook::challenge(self.verify_token.as_ref(), params)
    }

    fn read_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
        webhook::read(&self.graph.app_secret, delivery)
    }

    async fn subscribe_webhooks(
        &self,
        integration: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<()> {
        let settings: MetaSettings = settings::parse(&integration.settings)?;
        let Some(account) = settings.ad_account else {
            return Ok(());
        };
        self.graph
            .subscribe_app(access_token(credentials)?, account.as_str())
            .await
    }
}
