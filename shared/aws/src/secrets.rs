use std::collections::HashMap;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_secretsmanager::Client;
use kpi_core::ports::AppSecrets;
use kpi_core::{Error, Result};
use secrecy::SecretString;
use tokio::sync::Mutex;

use crate::error::aws_error;

/// Application secrets from one Secrets Manager secret holding a JSON object whose
/// keys are the configuration names. Cached for `ttl` so a warm function does not
/// call Secrets Manager per request, yet picks up a rotation within minutes.
/// While Secrets Manager fails, the last copy keeps being served and the next
/// attempt waits [`STALE_RETRY`], so an outage costs no call per request.
/// How long a failed refresh waits before the next attempt, serving the last copy.
pub const STALE_RETRY: Duration = Duration::from_secs(30);

pub struct SecretsManagerSecrets {
    client: Client,
    secret_id: String,
    /// A second secret whose values apply where the first has none (the
    /// stack's generated link key), read alongside it.
    defaults_id: Option<String>,
    ttl: Duration,
    cache: Mutex<Option<(Instant, HashMap<String, String>)>>,
}

impl SecretsManagerSecrets {
    pub fn new(config: &SdkConfig, secret_id: impl Into<String>, ttl: Duration) -> Self {
        Self {
            client: Client::new(config),
            secret_id: secret_id.into(),
            defaults_id: None,
            ttl,
            cache: Mutex::new(None),
        }
    }

    /// Reads `defaults_id` too, for the names the secret leaves out.
    pub fn with_defaults_from(mut self, defaults_id: impl Into<String>) -> Self {
        self.defaults_id = Some(defaults_id.into());
        self
    }

    /// All values of the secret (cached), for building the configuration.
    pub async fn values(&self) -> Result<HashMap<String, String>> {
        let mut cache = self.cache.lock().await;
        if let Some((at, values)) = cache.as_ref()
            && at.elapsed() < self.ttl
        {
            return Ok(values.clone());
        }
        match self.fetch().await {
            Ok(values) => {
                *cache = Some((Instant::now(), values.clone()));
                Ok(values)
            }
            Err(e) => match cache.as_mut() {
                Some((at, values)) => {
                    tracing::warn!(error = %e.log_chain(), "the application secret could not be refreshed; its last copy stays in use");
                    // Due again STALE_RETRY from now (or at the TTL, if sooner).
                    *at = Instant::now()
                        .checked_sub(self.ttl.saturating_sub(STALE_RETRY))
                        .unwrap_or_else(Instant::now);
                    Ok(values.clone())
                }
                None => Err(e),
            },
        }
    }

    async fn fetch(&self) -> Result<HashMap<String, String>> {
        let Some(defaults_id) = &self.defaults_id else {
            return self.fetch_one(&self.secret_id).await;
        };
        let (values, defaults) =
            tokio::join!(self.fetch_one(&self.secret_id), self.fetch_one(defaults_id));
        let mut merged = defaults?;
        merged.extend(values?);
        Ok(merged)
    }

    async fn fetch_one(&self, secret_id: &str) -> Result<HashMap<String, String>> {
        let out = self
            .client
            .get_secret_value()
            .secret_id(secret_id)
            .send()
            .await
            .map_err(|e| aws_error("Secrets Manager GetSecretValue", e))?;
        let text = out
            .secret_string()
            .ok_or_else(|| Error::config("the application secret has no string value"))?;
        let parsed: HashMap<String, serde_json::Value> = serde_json::from_str(text)
            .map_err(|_| Error::config("the application secret is not a JSON object"))?;
        let values: HashMap<String, String> = parsed
            .into_iter()
            .filter_map(|(k, v)| match v {
                serde_json::Value::String(s) => Some((k, s)),
                serde_json::Value::Number(n) => Some((k, n.to_string())),
                serde_json::Value::Bool(b) => Some((k, b.to_string())),
                _ => None,
            })
            .collect();
        Ok(values)
    }
}

#[async_trait]
impl AppSecrets for SecretsManagerSecrets {
    async fn get(&self, name: &str) -> Result<Option<SecretString>> {
        Ok(self
            .values()
            .await?
            .remove(name)
            .filter(|v| !v.is_empty())
            .map(SecretString::from))
    }
}
