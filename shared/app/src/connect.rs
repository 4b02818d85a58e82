//! What the API does with each provider: settings it accepts, options it offers,
//! how its health is checked and how it is revoked. Provider calls go through
//! the clients of `kpi-providers`.

use chrono::Utc;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::ports::CredentialContext;
use kpi_core::{Error, Integration, Provider, Result};
use kpi_providers::resend::KeyAccess;
use secrecy::SecretString;
use serde_json::{Map, Value, json};

use crate::http::views::{HealthView, OptionItem, OptionsView};
use crate::state::AppState;

/// The one setting each provider needs before it can sync.
pub fn required_setting(provider: Provider) -> Option<&'static str> {
    match provider {
        Provider::Ga4 => Some("property"),
        Provider::MetaAds => Some("ad_account"),
        Provider::Resend => None,
    }
}

fn allowed_settings(provider: Provider) -> &'static [&'static str] {
    match provider {
        Provider::Ga4 => &["property"],
        Provider::MetaAds => &["ad_account"],
        Provider::Resend => &["domain"],
    }
}

/// Checks the shape of settings (not yet whether the account may use them).
pub fn validate_settings(provider: Provider, settings: &Map<String, Value>) -> Result<()> {
    for (key, value) in settings {
        if !allowed_settings(provider).contains(&key.as_str()) {
            return Err(Error::validation(
                format!("settings.{key}"),
                format!("{provider} has no setting named {key:.40}"),
            ));
        }
        let Some(text) = value.as_str() else {
            return Err(Error::validation(
                format!("settings.{key}"),
                "must be a string",
            ));
        };
        let ok = match key.as_str() {
            "property" => text.strip_prefix("properties/").is_some_and(|n| {
                !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit())
            }),
            "ad_account" => text.strip_prefix("act_").is_some_and(|n| {
                !n.is_empty() && n.len() <= 20 && n.bytes().all(|b| b.is_ascii_digit())
            }),
            "domain" => !text.is_empty() && text.len() <= 253 && text.contains('.'),
            _ => false,
        };
        if !ok {
            let expected = match key.as_str() {
                "property" => "a GA4 property such as properties/123456789",
                "ad_account" => "a Meta ad account such as act_1234567890",
                _ => "a domain name",
            };
            return Err(Error::validation(
                format!("settings.{key}"),
                format!("must be {expected}"),
            ));
        }
    }
    Ok(())
}

pub fn settings_complete(integration: &Integration) -> bool {
    required_setting(integration.provider).is_none_or(|k| integration.settings.contains_key(k))
}

pub async fn open_credentials(
    state: &AppState,
    integration: &Integration,
) -> Result<ConnectionCredentials> {
    let sealed = integration
        .credentials
        .as_ref()
        .ok_or_else(|| Error::reauth("the integration has no credentials; connect it again"))?;
    state
        .vault
        .open(&CredentialContext::of(integration), sealed)
        .await
}

fn access_token(creds: &ConnectionCredentials) -> Result<&SecretString> {
    match creds {
        ConnectionCredentials::OAuth(t) => Ok(&t.access_token),
        ConnectionCredentials::ApiKey { key } => Ok(key),
    }
}

fn unavailable(provider: Provider) -> Error {
    Error::config(format!(
        "{} is not configured in this deployment",
        provider.display_name()
    ))
}

/// The choices for the integration's setting, fetched live from the provider.
pub async fn options(state: &AppState, integration: &Integration) -> Result<OptionsView> {
    let creds = open_credentials(state, integration).await?;
    let token = access_token(&creds)?;
    let p = &state.providers;
    Ok(match integration.provider {
        Provider::Ga4 => {
            let (props, _) = p.ga4_admin.properties(token).await?;
            OptionsView {
                setting: "property".into(),
                options: props
                    .into_iter()
                    .map(|o| OptionItem {
                        id: o.property,
                        name: o.display_name,
                        group: Some(o.account_name),
                        details: json!({"account": o.account, "property_type": o.property_type})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                note: None,
            }
        }
        Provider::MetaAds => {
            let meta = p.meta.as_ref().ok_or_else(|| unavailable(Provider::MetaAds))?;
            let (accounts, _) = meta.ad_accounts(token).await?;
            OptionsView {
                setting: "ad_account".into(),
                options: accounts
                    .into_iter()
                    .map(|a| OptionItem {
                        id: a.id,
                        name: a.name,
                        group: None,
                        details: json!({"currency": a.currency, "account_status": a.account_status})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                note: None,
            }
        }
        Provider::Resend => match p.resend.check_key(token).await? {
            KeyAccess::Full { domains } => OptionsView {
                setting: "domain".into(),
                options: domains
                    .into_iter()
                    .map(|d| OptionItem {
                        id: d.name.clone(),
                        name: d.name,
                        group: None,
                        details: json!({"status": d.status, "region": d.region})
                            .as_object()
                            .cloned()
                            .unwrap_or_default(),
                    })
                    .collect(),
                note: None,
            },
            KeyAccess::SendingOnly => OptionsView {
                setting: "domain".into(),
                options: vec![],
                note: Some("This key can only send emails, so its domains cannot be listed; type the sending domain instead.".into()),
            },
        },
    })
}

/// Whether `value` is among the live options (a property or ad account the
/// connected user can actually read).
pub async fn check_choice(
    state: &AppState,
    integration: &Integration,
    key: &str,
    value: &str,
) -> Result<()> {
    if integration.provider == Provider::Resend {
        return Ok(()); // sending-only keys cannot list domains; any domain may be typed
    }
    let view = options(state, integration).await?;
    if view.options.iter().any(|o| o.id == value) {
        Ok(())
    } else {
        Err(Error::validation(
            format!("settings.{key}"),
            "the connected account has no access to this choice; pick one from the options",
        ))
    }
}

/// A cheap live call that tells whether syncing could work now.
pub async fn health(state: &AppState, integration: &Integration) -> HealthView {
    let checked_at = Utc::now();
    let result = async {
        let creds = open_credentials(state, integration).await?;
        let token = access_token(&creds)?;
        let p = &state.providers;
        match integration.provider {
            Provider::Ga4 => p.ga4_admin.properties(token).await.map(|_| ()),
            Provider::MetaAds => {
                let meta = p
                    .meta
                    .as_ref()
                    .ok_or_else(|| unavailable(Provider::MetaAds))?;
                let granted = meta.granted_permissions(token).await?;
                if granted
                    .iter()
                    .any(|g| g == kpi_providers::meta::REQUIRED_PERMISSION)
                {
                    Ok(())
                } else {
                    Err(Error::config(
                        "the ads_read permission was removed; reconnect",
                    ))
                }
            }
            Provider::Resend => p.resend.check_key(token).await.map(|_| ()),
        }
    }
    .await;
    let (state_name, message) = match result {
        Ok(()) => ("healthy", None),
        Err(e) => match e.kind() {
            kpi_core::ErrorKind::Reauth | kpi_core::ErrorKind::Unauthenticated => {
                ("needs_reauth", Some(e.message().to_owned()))
            }
            kpi_core::ErrorKind::Config | kpi_core::ErrorKind::Validation { .. } => {
                ("no_access", Some(e.message().to_owned()))
            }
            kpi_core::ErrorKind::RateLimited { .. } => {
                ("quota_exhausted", Some(e.message().to_owned()))
            }
            _ => ("unavailable", Some(e.message().to_owned())),
        },
    };
    HealthView {
        state: state_name.into(),
        message,
        checked_at,
    }
}

/// Revokes at the provider where that is possible. Callers erase the stored
/// credentials whatever this returns.
pub async fn revoke(state: &AppState, integration: &Integration) -> Result<()> {
    let creds = open_credentials(state, integration).await?;
    let p = &state.providers;
    match (integration.provider, &creds) {
        (Provider::Ga4, ConnectionCredentials::OAuth(t)) => {
            let google = p
                .google
                .as_ref()
                .ok_or_else(|| unavailable(Provider::Ga4))?;
            // Revoking the refresh token revokes the whole grant.
            google
                .revoke(t.refresh_token.as_ref().unwrap_or(&t.access_token))
                .await
        }
        (Provider::MetaAds, ConnectionCredentials::OAuth(t)) => {
            let meta = p
                .meta
                .as_ref()
                .ok_or_else(|| unavailable(Provider::MetaAds))?;
            meta.revoke(&t.access_token).await
        }
        // Resend keys are created and deleted by the user in Resend.
        _ => Ok(()),
    }
}
