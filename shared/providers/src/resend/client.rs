//! Resend: API-key validation and domains.

use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{Reply, read, send_error};

const NAME: &str = "Resend";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Domain {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
}

/// What a valid key may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyAccess {
    Full {
        domains: Vec<Domain>,
    },
    /// A restricted key: it can send but not list domains.
    SendingOnly,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    message: String,
    #[serde(default)]
    name: String,
}

#[derive(Deserialize)]
struct DomainList {
    #[serde(default)]
    data: Vec<Domain>,
}

pub struct ResendClient {
    pub http: reqwest::Client,
    /// `https://api.resend.com`
    pub base: Url,
    /// Follows each team's `ratelimit-*` headers across calls.
    pub gate: std::sync::Arc<super::send::RateGate>,
}

impl ResendClient {
    pub fn new(http: reqwest::Client, base: Url) -> Self {
        Self {
            http,
            base,
            gate: Default::default(),
        }
    }
}

/// The `name` of a Resend error reply (`rate_limit_exceeded`, …).
pub fn error_name(reply: &Reply) -> String {
    parse_error(reply).0
}

fn parse_error(reply: &Reply) -> (String, String) {
    serde_json::from_slice::<ErrorBody>(&reply.body)
        .map(|b| (b.name, b.message))
        .unwrap_or_default()
}

/// Whether a Resend error means the key itself is bad (see the reference's
/// auth-failure rule; older and newer error catalogues both count).
fn is_bad_key(reply: &Reply) -> bool {
    let (name, message) = parse_error(reply);
    matches!(
        name.as_str(),
        "missing_api_key" | "invalid_api_key" | "suspended_api_key"
    ) || (name == "validation_error" && message.contains("API key is invalid"))
}

/// Maps a Resend error reply (`{statusCode, message, name}`).
pub fn api_error(reply: &Reply) -> Error {
    let (name, message) = parse_error(reply);
    let message: String = message.chars().take(300).collect();
    if is_bad_key(reply) {
        return Error::reauth("Resend rejected the API key; enter a valid key");
    }
    match (reply.status, name.as_str()) {
        // Not retried: sending resumes when Resend's day or month turns.
        (429, "daily_quota_exceeded") => {
            Error::config("Resend's daily sending quota is used up; emails go out again tomorrow")
        }
        (429, "monthly_quota_exceeded") => Error::config(
            "Resend's monthly sending quota is used up; emails go out again next month",
        ),
        (429, _) => Error::rate_limited(
            reply.retry_after.or_else(|| {
                reply
                    .headers
                    .get("ratelimit-reset")
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.trim().parse().ok())
                    .map(std::time::Duration::from_secs)
            }),
            "Resend rate limit",
        ),
        (409, "concurrent_idempotent_requests") => {
            Error::transient("Resend is still handling the same send; try again")
        }
        (s, _) if s >= 500 => Error::transient("Resend failed; try again"),
        _ => Error::config(format!("Resend rejected the request ({name}): {message}")),
    }
}

impl ResendClient {
    pub(crate) fn url(&self, path: &str) -> Result<Url> {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .map_err(|_| Error::config("RESEND_API_URL cannot be a base URL"))?
            .pop_if_empty()
            .extend(path.split('/'));
        Ok(url)
    }

    /// Validates a key with `GET /domains`. A bad key is a validation error the
    /// user can act on; a sending-only key is valid.
    pub async fn check_key(&self, key: &SecretString) -> Result<KeyAccess> {
        let resp = self
            .http
            .get(self.url("domains")?)
            .bearer_auth(key.expose_secret())
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if reply.is_success() {
            let list: DomainList = reply.json(NAME)?;
            return Ok(KeyAccess::Full { domains: list.data });
        }
        let (name, _) = parse_error(&reply);
        if reply.status == 401 && name == "restricted_api_key" {
            return Ok(KeyAccess::SendingOnly);
        }
        if is_bad_key(&reply) {
            return Err(Error::validation(
                "api_key",
                "Resend did not accept this API key. Copy a key from Resend → API Keys and try again.",
            ));
        }
        Err(api_error(&reply))
    }
}

/// The email events a registered endpoint asks for: every one the delivery
/// KPIs and the suppression list read.
pub const WEBHOOK_EVENTS: [&str; 8] = [
    "email.sent",
    "email.delivered",
    "email.delivery_delayed",
    "email.bounced",
    "email.complained",
    "email.failed",
    "email.suppressed",
    "email.opened",
];

#[derive(Deserialize)]
struct CreatedWebhook {
    id: String,
    signing_secret: String,
}

impl ResendClient {
    /// `POST /webhooks`: an endpoint for `endpoint` and [`WEBHOOK_EVENTS`];
    /// its id and signing secret. A sending-only key may not.
    pub async fn create_webhook(
        &self,
        key: &SecretString,
        endpoint: &str,
    ) -> Result<(String, SecretString)> {
        let resp = self
            .http
            .post(self.url("webhooks")?)
            .bearer_auth(key.expose_secret())
            .json(&serde_json::json!({ "endpoint": endpoint, "events": WEBHOOK_EVENTS }))
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if reply.is_success() {
            let created: CreatedWebhook = reply.json(NAME)?;
            if !created.signing_secret.starts_with("whsec_") {
                return Err(Error::transient(
                    "Resend answered a webhook without its signing secret",
                ));
            }
            return Ok((created.id, SecretString::from(created.signing_secret)));
        }
        let (name, _) = parse_error(&reply);
        if reply.status == 401 && name == "restricted_api_key" {
            return Err(Error::config(format!(
                "this Resend key may only send, so it cannot register a webhook: in Resend, \
                 add a webhook for {endpoint} with the email events"
            )));
        }
        Err(api_error(&reply))
    }

    /// `DELETE /webhooks/{id}`; one already gone is fine.
    pub async fn delete_webhook(&self, key: &SecretString, id: &str) -> Result<()> {
        let resp = self
            .http
            .delete(self.url(&format!("webhooks/{id}"))?)
            .bearer_auth(key.expose_secret())
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if reply.is_success() || reply.status == 404 {
            return Ok(());
        }
        Err(api_error(&reply))
    }
}
