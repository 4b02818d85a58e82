//! Google Analytics 4 Admin API: the property picker.

use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{Reply, read, send_error};

const NAME: &str = "Google Analytics";

/// One property a user can pick, with its account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PropertyOption {
    /// `properties/123456789`
    pub property: String,
    pub display_name: String,
    pub account: String,
    pub account_name: String,
    pub property_type: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountSummaries {
    #[serde(default)]
    account_summaries: Vec<AccountSummary>,
    #[serde(default)]
    next_page_token: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AccountSummary {
    #[serde(default)]
    account: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    property_summaries: Vec<PropertySummary>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PropertySummary {
    property: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    property_type: Option<String>,
}

/// Google API error body: `{"error": {"code", "message", "status", "details"}}`.
#[derive(Deserialize)]
struct GoogleErrorBody {
    error: GoogleError,
}

#[derive(Deserialize)]
struct GoogleError {
    #[serde(default)]
    message: String,
    #[serde(default)]
    status: String,
}

/// Maps a Google API error reply into the taxonomy.
pub fn api_error(reply: &Reply) -> Error {
    let parsed: Option<GoogleErrorBody> = serde_json::from_slice(&reply.body).ok();
    let (status, message) = parsed
        .map(|b| (b.error.status, b.error.message))
        .unwrap_or_default();
    let message: String = message.chars().take(300).collect();
    match reply.status {
        401 => Error::reauth("Google no longer accepts this connection; reconnect the integration"),
        403 => Error::config(format!("Google Analytics refused access: {message}")),
        404 => Error::config(format!("Google Analytics could not find it: {message}")),
        429 => Error::rate_limited(
            reply.retry_after,
            format!("Google Analytics quota: {message}"),
        ),
        s if s >= 500 => Error::transient(format!("Google Analytics failed ({status}); try again")),
        _ => Error::config(format!(
            "Google Analytics rejected the request ({status}): {message}"
        )),
    }
}

pub struct AdminApi {
    pub http: reqwest::Client,
    /// `https://analyticsadmin.googleapis.com/v1beta`
    pub base: Url,
}

impl AdminApi {
    /// Every property the token can read, across all pages of `accountSummaries`.
    pub async fn properties(
        &self,
        access_token: &SecretString,
    ) -> Result<(Vec<PropertyOption>, u32)> {
        let mut out = Vec::new();
        let mut page_token: Option<String> = None;
        let mut calls = 0u32;
        loop {
            let mut url = self.base.clone();
            url.path_segments_mut()
                .map_err(|_| Error::config("GA4_ADMIN_API_URL cannot be a base URL"))?
                .pop_if_empty()
                .push("accountSummaries");
            url.query_pairs_mut().append_pair("pageSize", "200");
            if let Some(t) = &page_token {
                url.query_pairs_mut().append_pair("pageToken", t);
            }
            calls += 1;
            let resp = self
                .http
                .get(url)
                .bearer_auth(access_token.expose_secret())
                .send()
                .await
                .map_err(|e| send_error(NAME, e))?;
            let reply = read(NAME, resp).await?;
            if !reply.is_success() {
                return Err(api_error(&reply));
            }
            let page: AccountSummaries = reply.json(NAME)?;
            for account in page.account_summaries {
                for p in account.property_summaries {
                    out.push(PropertyOption {
                        property: p.property,
                        display_name: p.display_name,
                        account: account.account.clone(),
                        account_name: account.display_name.clone(),
                        property_type: p.property_type,
                    });
                }
            }
            match page.next_page_token.filter(|t| !t.is_empty()) {
                Some(t) if calls < 100 => page_token = Some(t),
                _ => return Ok((out, calls)),
            }
        }
    }
}
