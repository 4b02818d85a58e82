//! Google OAuth 2.0 (web-server flow with PKCE), for GA4.

use chrono::{DateTime, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::{Error, Result};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::http::{read, send_error};
use crate::oauth::{TokenResponse, token_error};

pub const ANALYTICS_READONLY: &str = "https://www.googleapis.com/auth/analytics.readonly";
const NAME: &str = "Google";

#[derive(Clone)]
pub struct GoogleOAuth {
    pub http: reqwest::Client,
    pub client_id: String,
    pub client_secret: SecretString,
    pub auth_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
}

impl GoogleOAuth {
    /// The consent URL: offline access (a refresh token), consent forced so a
    /// reconnect yields a new refresh token, PKCE S256.
    pub fn authorization_url(&self, state: &str, code_challenge: &str, redirect_uri: &str) -> Url {
        let mut url = self.auth_url.clone();
        url.query_pairs_mut()
            .append_pair("client_id", &self.client_id)
            .append_pair("redirect_uri", redirect_uri)
            .append_pair("response_type", "code")
            .append_pair("scope", ANALYTICS_READONLY)
            .append_pair("access_type", "offline")
            .append_pair("prompt", "consent")
            .append_pair("include_granted_scopes", "true")
            .append_pair("state", state)
            .append_pair("code_challenge", code_challenge)
            .append_pair("code_challenge_method", "S256");
        url
    }

    async fn token_request(&self, during: &str, form: &[(&str, &str)]) -> Result<TokenResponse> {
        let resp = self
            .http
            .post(self.token_url.clone())
            .form(form)
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        if !reply.is_success() {
            return Err(token_error(NAME, during, reply.status, &reply.body));
        }
        reply.json(NAME)
    }

    /// Exchanges an authorization code; the granted scopes must include read
    /// access to Analytics (users can untick it on the consent screen).
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<OAuthTokens> {
        let secret = self.client_secret.expose_secret();
        let tokens = self
            .token_request(
                "code exchange",
                &[
                    ("grant_type", "authorization_code"),
                    ("code", code),
                    ("client_id", &self.client_id),
                    ("client_secret", secret),
                    ("redirect_uri", redirect_uri),
                    ("code_verifier", code_verifier),
                ],
            )
            .await?
            .into_tokens(now);
        if !tokens.has_scope(ANALYTICS_READONLY) {
            return Err(Error::validation(
                "scope",
                "Google did not grant read access to Analytics. Connect again and allow \"See and download your Google Analytics data\".",
            ));
        }
        if tokens.refresh_token.is_none() {
            return Err(Error::validation(
                "scope",
                "Google returned no refresh token, so syncing could not continue after an hour. Connect again.",
            ));
        }
        Ok(tokens)
    }

    /// A new access token. Google usually keeps the refresh token; when it sends
    /// a new one (rotation), the caller must store it.
    pub async fn refresh(
        &self,
        refresh_token: &SecretString,
        now: DateTime<Utc>,
    ) -> Result<OAuthTokens> {
        let secret = self.client_secret.expose_secret();
        Ok(self
            .token_request(
                "token refresh",
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token.expose_secret()),
                    ("client_id", &self.client_id),
                    ("client_secret", secret),
                ],
            )
            .await?
            .into_tokens(now))
    }

    /// Revokes the grant (a refresh token revokes all of it). An already invalid
    /// token counts as revoked.
    pub async fn revoke(&self, token: &SecretString) -> Result<()> {
        let resp = self
            .http
            .post(self.revoke_url.clone())
            .form(&[("token", token.expose_secret())])
            .send()
            .await
            .map_err(|e| send_error(NAME, e))?;
        let reply = read(NAME, resp).await?;
        match reply.status {
            200..=299 => Ok(()),
            400 => Ok(()), // invalid_token: nothing left to revoke
            s if s >= 500 || s == 429 => {
                Err(Error::transient("Google could not revoke the token now"))
            }
            _ => Err(Error::config("Google refused to revoke the token")),
        }
    }
}
