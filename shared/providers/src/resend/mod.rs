//! Resend: the provider plug-in. Connects with an API key (a sending-only key
//! is valid), offers the account's domains, and keeps the sender settings.

pub mod client;
pub mod delivery;
pub mod send;
pub mod svix;
pub mod webhook;

use std::sync::Arc;

use async_trait::async_trait;
use kpi_core::config::ConfigError;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::metric::{MetricSpec, Unit};
use kpi_core::ports::provider::{
    ConnectOutcome, ConnectRequest, OptionItem, ProviderAdapter, ProviderDescriptor,
    ProviderOptions, SettingSpec, Settings, SyncRequest, SyncResult, WebhookDelivery,
    WebhookEvents, WebhookSpec,
};
use kpi_core::provider::AuthMode;
use kpi_core::registry::Plugin;
use kpi_core::{Error, Integration, Provider, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use client::{Domain, KeyAccess, ResendClient};

use crate::plugin::BuildContext;
use crate::settings;

pub const METRICS: [MetricSpec; 5] = [
    MetricSpec::new("resend.sent", Unit::Count),
    MetricSpec::new("resend.delivered", Unit::Count),
    MetricSpec::new("resend.bounced", Unit::Count),
    MetricSpec::new("resend.complained", Unit::Count),
    MetricSpec::ratio(
        "resend.delivery_rate",
        Unit::Ratio,
        "resend.delivered",
        "resend.sent",
        1,
    ),
];

const fn free_text(key: &'static str, label: &'static str, expected: &'static str) -> SettingSpec {
    SettingSpec {
        key,
        label,
        expected,
        required: false,
        from_options: false,
        must_be_an_option: false,
    }
}

/// This provider's id in routes, records and configuration.
pub const ID: Provider = Provider::new("resend");

pub const DESCRIPTOR: ProviderDescriptor = ProviderDescriptor {
    id: ID,
    display_name: "Resend",
    auth: AuthMode::ApiKey,
    scopes: &[],
    settings: &[
        // Sending-only keys cannot list domains, so any domain may be typed.
        SettingSpec {
            key: "domain",
            label: "Sending domain",
            expected: "a domain name",
            required: false,
            from_options: true,
            must_be_an_option: false,
        },
        free_text("from_address", "From address", "an email address"),
        free_text("from_name", "From name", "1 to 100 printable characters"),
        free_text("reply_to", "Reply-to address", "an email address"),
    ],
    metrics: &METRICS,
    headline_metric: "resend.delivered",
    lookback_days: 3,
    max_window_days: 90,
    // Delivery numbers are kept for a year here.
    history_months: 12,
    queue_url_variable: "KPI_QUEUE_URL_RESEND",
    webhook_resource: None,
    // `/v1/webhooks/resend` for the platform's account (RESEND_WEBHOOK_SECRET),
    // `/v1/webhooks/resend/{integration}` for each connection's own endpoint.
    webhook: Some(WebhookSpec {
        path: "resend",
        challenge: false,
        per_connection: true,
        screen: webhook::screen,
    }),
    // An envelope of our own drawing (no trademarked artwork).
    mark: r##"<svg class="logo" viewBox="0 0 32 32" width="32" height="32" aria-hidden="true" focusable="false"><rect x="3" y="7" width="26" height="18" rx="3" fill="#111827"/><path d="M5 10l11 8 11-8" fill="none" stroke="#f9fafb" stroke-width="2.4" stroke-linejoin="round"/></svg>"##,
};

/// Builds the Resend plug-in: Resend's API, or the sandbox's in development
/// when `RESEND_API_URL` points nowhere (keys belong to workspaces, so there
/// are no app credentials to tell).
pub fn plugin(ctx: &BuildContext<'_>) -> Result<Plugin, ConfigError> {
    let source = ctx.source(ctx.vars.get("RESEND_API_URL").is_some());
    let base = source.url("RESEND_API_URL", "https://api.resend.com", "resend")?;
    let webhook_key = match source.vars.secret("RESEND_WEBHOOK_SECRET") {
        Some(secret) if !secret.expose_secret().starts_with("whsec_") => {
            return Err(ConfigError::new(
                "RESEND_WEBHOOK_SECRET",
                "must start with whsec_",
            ));
        }
        Some(secret) => Some(svix::SigningKey::new(secret.expose_secret()).map_err(|_| {
            ConfigError::new(
                "RESEND_WEBHOOK_SECRET",
                "expected whsec_ followed by base64 (copy the signing secret from Resend)",
            )
        })?),
        None => None,
    };
    Ok(Plugin::Ready {
        adapter: Arc::new(ResendAdapter {
            client: Arc::new(ResendClient::new(ctx.http.clone(), base)),
            webhook_key,
        }),
        sandbox: source.is_sandbox(),
    })
}

use kpi_core::email::{is_address as email_address, is_domain as domain_name};

macro_rules! text_setting {
    ($name:ident, $check:expr, $expected:literal) => {
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
        #[serde(try_from = "String")]
        pub struct $name(String);

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(value: String) -> Result<Self, String> {
                settings::checked(value, $check, $expected).map(Self)
            }
        }

        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
    };
}

text_setting!(DomainName, domain_name, "a domain name");
text_setting!(EmailAddress, email_address, "an email address");
text_setting!(
    FromName,
    |v: &str| !v.trim().is_empty() && v.chars().count() <= 100 && !v.chars().any(char::is_control),
    "1 to 100 printable characters"
);

/// What the connected key may do, decided at connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyScope {
    Full,
    SendingOnly,
}

/// Resend's settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResendSettings {
    #[serde(default)]
    pub domain: Option<DomainName>,
    #[serde(default)]
    pub from_address: Option<EmailAddress>,
    #[serde(default)]
    pub from_name: Option<FromName>,
    #[serde(default)]
    pub reply_to: Option<EmailAddress>,
    /// Set by connect, not by users.
    #[serde(default)]
    pub key_access: Option<KeyScope>,
}

pub struct ResendAdapter {
    pub client: Arc<ResendClient>,
    /// Checks Resend's (Svix) webhook signatures; without it deliveries are refused.
    webhook_key: Option<svix::SigningKey>,
}

fn key(credentials: &ConnectionCredentials) -> Result<&SecretString> {
    match credentials {
        ConnectionCredentials::ApiKey { key, .. } => Ok(key),
        ConnectionCredentials::OAuth(_) => Err(Error::config("Resend needs an API key")),
    }
}

#[async_trait]
impl ProviderAdapter for ResendAdapter {
    fn descriptor(&self) -> &ProviderDescriptor {
        &DESCRIPTOR
    }

    async fn connect(&self, request: ConnectRequest<'_>) -> Result<ConnectOutcome> {
        let ConnectRequest::ApiKey { key } = request else {
            return Err(Error::validation(
                "provider",
                "Resend connects with an API key, not with OAuth",
            ));
        };
        let access = self.client.check_key(&key).await?;
        let mut settings = Settings::new();
        settings.insert(
            "key_access".into(),
            match access {
                KeyAccess::Full { .. } => "full",
                KeyAccess::SendingOnly => "sending_only",
            }
            .into(),
        );
        Ok(ConnectOutcome {
            credentials: ConnectionCredentials::ApiKey { key, webhook: None },
            settings,
            needs_configuration: false,
            account: None,
        })
    }

    async fn options(
        &self,
        _: &Integration,
        credentials: &ConnectionCredentials,
    ) -> Result<ProviderOptions> {
        Ok(match self.client.check_key(key(credentials)?).await? {
            KeyAccess::Full { domains } => ProviderOptions {
                setting: "domain".into(),
                options: domains
                    .into_iter()
                    .map(|d| OptionItem {
                        selectable: true,
                        id: d.name.clone(),
                        name: d.name,
                        group: None,
                        details: serde_json::json!({"status": d.status, "region": d.region})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                note: None,
            },
            KeyAccess::SendingOnly => ProviderOptions {
                setting: "domain".into(),
                options: vec![],
                note: Some("This key can only send emails, so its domains cannot be listed; type the sending domain instead.".into()),
            },
        })
    }

    fn validate_settings(&self, settings: &Settings) -> Result<()> {
        settings::parse::<ResendSettings>(settings).map(|_| ())
    }

    async fn health(&self, _: &Integration, credentials: &ConnectionCredentials) -> Result<()> {
        self.client.check_key(key(credentials)?).await.map(|_| ())
    }

    async fn sync(&self, request: SyncRequest<'_>) -> Result<SyncResult> {
        let records = request.records.ok_or_else(|| {
            Error::internal("Resend's numbers are counted from the sends recorded here")
        })?;
        let (points, provider_calls) = delivery::sync(
            &self.client,
            key(request.credentials)?,
            request.integration,
            &request.window,
            records,
        )
        .await?;
        Ok(SyncResult {
            points,
            provider_calls,
            quota_remaining: None,
            refreshed_credentials: None,
        })
    }

    async fn disconnect(&self, credentials: &ConnectionCredentials) -> Result<()> {
        // Resend keys are created and deleted by the user in Resend; the
        // webhook endpoint this connection registered goes with it.
        match credentials {
            ConnectionCredentials::ApiKey {
                key,
                webhook: Some(webhook),
            } if !webhook.id.is_empty() => self.client.delete_webhook(key, &webhook.id).await,
            _ => Ok(()),
        }
    }

    async fn register_webhook(
        &self,
        credentials: &ConnectionCredentials,
        endpoint: &str,
    ) -> Result<Option<ConnectionCredentials>> {
        let key = key(credentials)?;
        let (id, signing_secret) = self.client.create_webhook(key, endpoint).await?;
        Ok(Some(ConnectionCredentials::ApiKey {
            key: key.clone(),
            webhook: Some(kpi_core::credentials::ProviderWebhook { id, signing_secret }),
        }))
    }

    fn with_webhook_secret(
        &self,
        credentials: &ConnectionCredentials,
        signing_secret: &str,
    ) -> Result<ConnectionCredentials> {
        let signing_secret = signing_secret.trim();
        if !signing_secret.starts_with("whsec_") || svix::SigningKey::new(signing_secret).is_err() {
            return Err(Error::validation(
                "webhook_secret",
                "expected whsec_ followed by base64: copy the signing secret of the webhook in Resend",
            ));
        }
        Ok(ConnectionCredentials::ApiKey {
            key: key(credentials)?.clone(),
            // Added by hand: no id of ours to delete it by on disconnect.
            webhook: Some(kpi_core::credentials::ProviderWebhook {
                id: String::new(),
                signing_secret: SecretString::from(signing_secret.to_owned()),
            }),
        })
    }

    fn read_webhook_for(
        &self,
        credentials: &ConnectionCredentials,
        delivery: &WebhookDelivery<'_>,
    ) -> Result<WebhookEvents> {
        let ConnectionCredentials::ApiKey {
            webhook: Some(webhook),
            ..
        } = credentials
        else {
            return Err(Error::unauthenticated(
                "this Resend integration has no webhook endpoint of its own",
            ));
        };
        let key = svix::SigningKey::new(webhook.signing_secret.expose_secret())
            .map_err(|_| Error::unauthenticated("the endpoint's signing secret is unreadable"))?;
        webhook::read(&key, delivery)
    }

    fn mailer(&self) -> Option<Arc<dyn kpi_core::ports::Mailer>> {
        Some(self.client.clone())
    }

    fn read_webhook(&self, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
        let Some(key) = &self.webhook_key else {
            return Err(Error::unauthenticated(
                "Resend webhooks are off: RESEND_WEBHOOK_SECRET is not set",
            ));
        };
        webhook::read(key, delivery)
    }
}
