//! Credentials of a provider connection. Plaintext exists only here, in memory,
//! inside redacting secret types: `Debug` prints `[REDACTED]` and there is no
//! `Serialize` outside [`ConnectionCredentials::to_plaintext_json`], which only the
//! vault calls to encrypt it.

use chrono::{DateTime, Utc};
use secrecy::{ExposeSecret, SecretBox, SecretString};
use serde::{Deserialize, Serialize};

use crate::error::Error;

#[derive(Debug, Clone)]
pub enum ConnectionCredentials {
    OAuth(OAuthTokens),
    ApiKey {
        key: SecretString,
        /// The endpoint the connection registered at the provider for its
        /// own webhook events (Resend), with the secret they are signed with.
        webhook: Option<ProviderWebhook>,
    },
}

/// A webhook endpoint registered at the provider for one connection.
#[derive(Debug, Clone)]
pub struct ProviderWebhook {
    /// The provider's id of the endpoint (to delete it on disconnect).
    pub id: String,
    pub signing_secret: SecretString,
}

#[derive(Debug, Clone)]
pub struct OAuthTokens {
    pub access_token: SecretString,
    pub refresh_token: Option<SecretString>,
    pub expires_at: Option<DateTime<Utc>>,
    pub scopes: Vec<String>,
}

impl OAuthTokens {
    /// True when the access token expires within `margin` of `now` (or has).
    pub fn expires_within(&self, now: DateTime<Utc>, margin: chrono::Duration) -> bool {
        self.expires_at.is_some_and(|at| at <= now + margin)
    }

    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }
}

/// The wire shape inside the vault's ciphertext. Private so nothing else can
/// serialize credentials by accident.
#[derive(Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum Plain {
    Oauth {
        access_token: String,
        #[serde(default)]
        refresh_token: Option<String>,
        #[serde(default)]
        expires_at: Option<DateTime<Utc>>,
        #[serde(default)]
        scopes: Vec<String>,
    },
    ApiKey {
        key: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        webhook_secret: Option<String>,
    },
}

impl ConnectionCredentials {
    pub fn api_key(key: impl Into<String>) -> Self {
        Self::ApiKey {
            key: SecretString::from(key.into()),
            webhook: None,
        }
    }

    /// JSON bytes for the vault to encrypt, wrapped so they are zeroed on drop.
    pub fn to_plaintext_json(&self) -> SecretBox<Vec<u8>> {
        let plain = match self {
            Self::OAuth(t) => Plain::Oauth {
                access_token: t.access_token.expose_secret().to_owned(),
                refresh_token: t
                    .refresh_token
                    .as_ref()
                    .map(|r| r.expose_secret().to_owned()),
                expires_at: t.expires_at,
                scopes: t.scopes.clone(),
            },
            Self::ApiKey { key, webhook } => Plain::ApiKey {
                key: key.expose_secret().to_owned(),
                webhook_id: webhook.as_ref().map(|w| w.id.clone()),
                webhook_secret: webhook
                    .as_ref()
                    .map(|w| w.signing_secret.expose_secret().to_owned()),
            },
        };
        // Serializing this enum of strings cannot fail.
        let bytes = serde_json::to_vec(&plain).unwrap_or_default();
        drop_plain(plain);
        SecretBox::new(Box::new(bytes))
    }

    /// Parses what [`Self::to_plaintext_json`] produced, after decryption.
    pub fn from_plaintext_json(bytes: &[u8]) -> Result<Self, Error> {
        let plain: Plain = serde_json::from_slice(bytes)
            .map_err(|_| Error::internal("stored credentials have an unknown format"))?;
        Ok(match plain {
            Plain::Oauth {
                access_token,
                refresh_token,
                expires_at,
                scopes,
            } => Self::OAuth(OAuthTokens {
                access_token: SecretString::from(access_token),
                refresh_token: refresh_token.map(SecretString::from),
                expires_at,
                scopes,
            }),
            Plain::ApiKey {
                key,
                webhook_id,
                webhook_secret,
            } => Self::ApiKey {
                key: SecretString::from(key),
                webhook: webhook_id
                    .zip(webhook_secret)
                    .map(|(id, secret)| ProviderWebhook {
                        id,
                        signing_secret: SecretString::from(secret),
                    }),
            },
        })
    }
}

/// Zero the temporary copies before their memory is released.
fn drop_plain(plain: Plain) {
    use secrecy::zeroize::Zeroize;
    match plain {
        Plain::Oauth {
            mut access_token,
            refresh_token,
            ..
        } => {
            access_token.zeroize();
            if let Some(mut r) = refresh_token {
                r.zeroize();
            }
        }
        Plain::ApiKey {
            mut key,
            webhook_secret,
            ..
        } => {
            key.zeroize();
            if let Some(mut s) = webhook_secret {
                s.zeroize();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_secret() {
        let creds = ConnectionCredentials::OAuth(OAuthTokens {
            access_token: SecretString::from("ya29.secret-access".to_owned()),
            refresh_token: Some(SecretString::from("1//secret-refresh".to_owned())),
            expires_at: None,
            scopes: vec!["analytics.readonly".into()],
        });
        let shown = format!("{creds:?}");
        assert!(!shown.contains("secret-access"), "{shown}");
        assert!(!shown.contains("secret-refresh"), "{shown}");
        let key = ConnectionCredentials::api_key("re_123_secret");
        assert!(!format!("{key:?}").contains("re_123_secret"));
    }

    #[test]
    fn plaintext_round_trip() {
        let now = Utc::now();
        let creds = ConnectionCredentials::OAuth(OAuthTokens {
            access_token: SecretString::from("a".to_owned()),
            refresh_token: None,
            expires_at: Some(now),
            scopes: vec!["s1".into(), "s2".into()],
        });
        let bytes = creds.to_plaintext_json();
        match ConnectionCredentials::from_plaintext_json(bytes.expose_secret()).unwrap() {
            ConnectionCredentials::OAuth(t) => {
                assert_eq!(t.access_token.expose_secret(), "a");
                assert!(t.refresh_token.is_none());
                assert_eq!(t.expires_at, Some(now));
                assert!(t.has_scope("s2"));
                assert!(t.expires_within(now, chrono::Duration::zero()));
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(ConnectionCredentials::from_plaintext_json(b"{\"type\":\"x\"}").is_err());
    }
}
