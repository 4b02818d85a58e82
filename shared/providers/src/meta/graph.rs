//! The Meta Graph API: the long-lived token exchange, permissions, ad accounts,
//! revocation, and Graph error bodies mapped into the taxonomy.

use chrono::{DateTime, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{Reply, read, send_error};
use crate::oauth::TokenResponse;

const NAME: &str = "Meta";
/// Read insights; `business_management` lets accounts owned by a business show.
pub const SCOPES: &str = "ads_read,business_management";
pub const REQUIRED_PERMISSION: &str = "ads_read";

#[derive(Clone)]
pub struct MetaClient {
    pub http: reqwest::Client,
    pub app_id: String,
    pub app_secret: SecretString,
    /// `https://graph.facebook.com`
    pub graph_url: Url,
    /// `v25.0`
    pub version: String,
    pub policy: super::report::ReportPolicy,
}

#[derive(Deserialize)]
struct MetaErrorBody {
    error: MetaError,
}

#[derive(Deserialize)]
struct MetaError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    code: i64,
    #[serde(default)]
    error_subcode: Option<i64>,
    #[serde(default)]
    is_transient: bool,
}

/// Maps a Graph API error (`{"error": {message, type, code, error_subcode}}`).
pub fn api_error(reply: &Reply) -> Error {
    let parsed = serde_json::from_slice::<MetaErrorBody>(&reply.body)
        .ok()
        .map(|b| b.error);
    let (code, subcode, message, transient) = parsed
        .map(|e| {
            (
                e.code,
                e.error_subcode,
                e.message.chars().take(300).collect::<String>(),
                e.is_transient,
            )
        })
        .unwrap_or((0, None, String::new(), false));
    match (code, subcode) {
        (190, _) | (102, _) => Error::reauth(format!(
            "Meta no longer accepts this connection ({}); reconnect the integration",
            match subcode {
                Some(463) => "the connection expired",
                Some(460) => "the Facebook password was changed",
                Some(458) => "the app was removed from the Facebook account",
                Some(459) => "the Facebook account is checkpointed",
                Some(464) => "the Facebook account is not confirmed",
                _ => "the access was revoked or is no longer valid",
            }
        )),
        (4 | 17 | 32 | 613 | 80000..=80014, _) => {
            // Meta's own estimate (the usage header's minutes) before ours.
            let usage = super::usage::read(&reply.headers);
            let wait = reply.retry_after.unwrap_or_default().max(usage.wait());
            Error::rate_limited(Some(wait), format!("Meta rate limit: {message}"))
        }
        (1 | 2, _) => Error::transient(format!("Meta had a temporary problem: {message}")),
        _ if transient => Error::transient(format!("Meta had a temporary problem: {message}")),
        (100, Some(1_504_018)) => Error::transient("Meta timed out; try a smaller window"),
        (10 | 200..=299, _) => Error::config(format!("Meta denied permission: {message}")),
        _ if reply.status >= 500 => Error::transient(format!("Meta failed: {message}")),
        _ => Error::config(format!("Meta rejected the request: {message}")),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdAccount {
    /// `act_<account_id>`
    pub id: String,
    #[serde(default)]
    pub account_id: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub account_status: Option<i64>,
    /// The account's reporting time zone (its insights' days are in it).
    #[serde(default)]
    pub timezone_name: Option<String>,
}

#[derive(Deserialize)]
pub(crate) struct Paged<T> {
    #[serde(default = "Vec::new")]
    pub(crate) data: Vec<T>,
    #[serde(default)]
    paging: Option<Paging>,
}

impl<T> Paged<T> {
    /// The cursor of the following page, when Meta says there is one.
    pub(crate) fn next_cursor(self) -> Option<String> {
        let paging = self.paging?;
        paging.next.as_ref()?;
        paging.cursors?.after
    }
}

#[derive(Deserialize)]
struct Paging {
    #[serde(default)]
    cursors: Option<Cursors>,
    #[serde(default)]
    next: Option<String>,
}

#[derive(Deserialize)]
struct Cursors {
    #[serde(default)]
    after: Option<String>,
}

#[derive(Deserialize)]
struct Permission {
    permission: String,
    status: String,
}

impl MetaClient {
    /// `{graph_url}/{version}/{path…}`.
    pub fn endpoint(&self, path: &[&str]) -> Result<Url> {
        self.graph(path)
    }

    fn graph(&self, path: &[&str]) -> Result<Url> {
        let mut url = self.graph_url.clone();
        url.path_segments_mut()
            .map_err(|_| Error::config("META_GRAPH_URL cannot be a base URL"))?
            .pop_if_empty()
            .push(&self.version)
            .extend(path);
        Ok(url)
    }

    async fn get(&self, url: Url, token: Option<&SecretString>) -> Result<Reply> {
        let mut req = self.http.get(url);
        if let Some(t) = token {
            req = req.bearer_auth(t.expose_secret());
        }
        let resp = req.send().await.map_err(|e| send_error(NAME, e))?;
        read(NAME, resp).await
    }

    /// Short-lived token → long-lived token (about 60 days; Meta has no refresh
    /// tokens), then the permissions actually granted.
    pub async fn long_lived(
        &self,
        short: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<OAuthTokens> {
        let mut url = self.graph(&["oauth", "access_token"])?;
        url.query_pairs_mut()
            .append_pair("grant_type", "fb_exchange_token")
            .append_pair("client_id", &self.app_id)
            .append_pair("client_secret", self.app_secret.expose_secret())
            .append_pair("fb_exchange_token", short.expose_secret());
        let reply = self.get(url, None).await?;
        if !reply.is_success() {
            return Err(exchange_error(&reply));
        }
        let long: TokenResponse = reply.json(NAME)?;
        let mut tokens = long.into_tokens(now);
        tokens.scopes = self.granted_permissions(&tokens.access_token).await?;
        if !tokens.has_scope(REQUIRED_PERMISSION) {
            return Err(Error::validation(
                "scope",
                "Meta did not grant access to ad insights (ads_read). Connect again and allow it.",
            ));
        }
        Ok(tokens)
    }

    /// The app-scoped id of the token's user (`GET /me?fields=id`).
    pub async fn user_id(&self, token: &SecretString) -> Result<String> {
        let mut url = self.graph(&["me"])?;
        url.query_pairs_mut().append_pair("fields", "id");
        let reply = self.get(url, Some(token)).await?;
        if !reply.is_success() {
            return Err(api_error(&reply));
        }
        #[derive(Deserialize)]
        struct Me {
            id: String,
        }
        Ok(reply.json::<Me>(NAME)?.id)
    }

    pub async fn granted_permissions(&self, token: &SecretString) -> Result<Vec<String>> {
        let reply = self
            .get(self.graph(&["me", "permissions"])?, Some(token))
            .await?;
        if !reply.is_success() {
            return Err(api_error(&reply));
        }
        let page: Paged<Permission> = reply.json(NAME)?;
        Ok(page
            .data
            .into_iter()
            .filter(|p| p.status == "granted")
            .map(|p| p.permission)
            .collect())
    }

    /// Every ad account of the user, following `after` cursors (never a `next`
    /// URL, which could point anywhere).
    pub async fn ad_accounts(&self, token: &SecretString) -> Result<(Vec<AdAccount>, u32)> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        let mut calls = 0;
        loop {
            let mut url = self.graph(&["me", "adaccounts"])?;
            url.query_pairs_mut()
                .append_pair(
                    "fields",
                    "id,account_id,name,currency,account_status,timezone_name",
                )
                .append_pair("limit", "100");
            if let Some(a) = &after {
                url.query_pairs_mut().append_pair("after", a);
            }
            calls += 1;
            let reply = self.get(url, Some(token)).await?;
            if !reply.is_success() {
                return Err(api_error(&reply));
            }
            let mut page: Paged<AdAccount> = reply.json(NAME)?;
            out.append(&mut page.data);
            match page.next_cursor() {
                Some(a) if calls < 100 => after = Some(a),
                _ => return Ok((out, calls)),
            }
        }
    }

    /// Subscribes the app to the ad account's webhook events.
    pub async fn subscribe_app(&self, token: &SecretString, account: &str) -> Result<()> {
        let resp = self
            .http
            .post(self.graph(&[account, "subscribed_apps"])?)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if reply.is_success() {
            Ok(())
        } else {
            Err(api_error(&reply))
        }
    }

    /// Revokes every permission the user gave the app.
    pub async fn revoke(&self, token: &SecretString) -> Result<()> {
        let resp = self
            .http
            .delete(self.graph(&["me", "permissions"])?)
            .bearer_auth(token.expose_secret())
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if reply.is_success() {
            return Ok(());
        }
        match api_error(&reply) {
            // An expired or already revoked token has nothing left to revoke.
            e if e.is_reauth() => Ok(()),
            e => Err(e),
        }
    }
}

/// One `actions`/`action_values` entry.
#[derive(Debug, Clone, Deserialize)]
pub struct ActionStat {
    pub action_type: String,
    #[serde(default)]
    pub value: Option<String>,
}

/// One daily row of account-level insights. Meta leaves fields out when it
/// has nothing for them (no `cpc` without clicks, no `actions` without any).
#[derive(Debug, Clone, Deserialize)]
pub struct InsightRow {
    pub date_start: String,
    #[serde(default)]
    pub spend: Option<String>,
    #[serde(default)]
    pub impressions: Option<String>,
    #[serde(default)]
    pub clicks: Option<String>,
    #[serde(default)]
    pub reach: Option<String>,
    #[serde(default)]
    pub ctr: Option<String>,
    #[serde(default)]
    pub cpc: Option<String>,
    #[serde(default)]
    pub cpm: Option<String>,
    #[serde(default)]
    pub actions: Option<Vec<ActionStat>>,
    #[serde(default)]
    pub action_values: Option<Vec<ActionStat>>,
    #[serde(default)]
    pub account_currency: Option<String>,
}

/// The insights fields a sync reads.
pub const INSIGHT_FIELDS: &str =
    "spend,impressions,clicks,reach,ctr,cpc,cpm,actions,action_values,account_currency";

/// Errors of the code exchange: a used or expired code is the user's to retry.
pub fn exchange_error(reply: &Reply) -> Error {
    let e = api_error(reply);
    match e.kind() {
        kpi_core::ErrorKind::Config if reply.status == 400 => Error::validation(
            "code",
            "Meta refused the authorization code (used or expired); try connecting again",
        ),
        _ => e,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kpi_core::ErrorKind;

    fn reply(status: u16, body: &str, headers: &[(&'static str, &str)]) -> Reply {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        Reply {
            status,
            retry_after: None,
            headers: map,
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn graph_errors_map_into_the_taxonomy() {
        // Reference payloads: expired session, password changed, app removed.
        for (subcode, says) in [(463, "expired"), (460, "password"), (458, "removed")] {
            let body = format!(
                r#"{{"error":{{"message":"Error validating access token","type":"OAuthException","code":190,"error_subcode":{subcode}}}}}"#
            );
            let e = api_error(&reply(400, &body, &[]));
            assert!(e.is_reauth(), "{subcode}");
            assert!(e.message().contains(says), "{}", e.message());
            assert!(!e.message().contains("validating"), "our words, not Meta's");
        }
        let throttled = reply(
            400,
            r#"{"error":{"message":"(#80000) There have been too many calls from this ad-account.","type":"OAuthException","code":80000,"error_subcode":2446079}}"#,
            &[(
                "x-business-use-case-usage",
                r#"{"123":[{"type":"ads_insights","call_count":100,"total_cputime":20,"total_time":20,"estimated_time_to_regain_access":7}]}"#,
            )],
        );
        match api_error(&throttled).kind() {
            ErrorKind::RateLimited { retry_after } => {
                assert_eq!(*retry_after, Some(std::time::Duration::from_secs(420)))
            }
            other => panic!("{other:?}"),
        }
        let permission = api_error(&reply(
            403,
            r#"{"error":{"message":"(#200) Requires business_management permission to manage the object","code":200}}"#,
            &[],
        ));
        assert_eq!(permission.code(), "configuration");
        assert!(permission.message().contains("business_management"));
        for body in [
            r#"{"error":{"message":"(#2) Service temporarily unavailable","code":2,"is_transient":true}}"#,
            r#"{"error":{"message":"Something odd","code":100,"is_transient":true}}"#,
        ] {
            assert_eq!(
                api_error(&reply(400, body, &[])).code(),
                "transient",
                "{body}"
            );
        }
        assert_eq!(
            api_error(&reply(
                500,
                r#"{"error":{"message":"An unknown error occurred","code":1,"error_subcode":99}}"#,
                &[]
            ))
            .code(),
            "transient"
        );
        assert_eq!(api_error(&reply(502, "<html>", &[])).code(), "transient");
    }
}
