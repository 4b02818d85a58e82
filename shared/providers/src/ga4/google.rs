//! Google OAuth 2.0 (web-server flow with PKCE), for GA4, on the `oauth2` crate.
//! Google's own parameters live here: `access_type=offline` (a refresh token)
//! and `prompt=consent` (a new refresh token on every reconnect).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::ports::provider::Authorization;
use kpi_core::{Error, Result};
use oauth2::basic::BasicClient;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken, Scope, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::http::{read, send_error};
use crate::oauth::{OAuthHttp, token_request_error, tokens_from};

pub const ANALYTICS_READONLY: &str = "https://www.googleapis.com/auth/analytics.readonly";
const NAME: &str = "Google";

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

#[derive(Clone)]
pub struct GoogleOAuth {
    client: Client,
    http: OAuthHttp,
    revoke_url: Url,
}

fn redirect(uri: &str) -> Result<RedirectUrl> {
    RedirectUrl::new(uri.to_owned())
        .map_err(|_| Error::config("the OAuth redirect URI is not a URL; check KPI_PUBLIC_URL"))
}

impl GoogleOAuth {
    pub fn new(
        http: reqwest::Client,
        client_id: String,
        client_secret: SecretString,
        auth_url: Url,
        token_url: Url,
        revoke_url: Url,
    ) -> Self {
        let client = BasicClient::new(ClientId::new(client_id))
            .set_client_secret(ClientSecret::new(client_secret.expose_secret().to_owned()))
            .set_auth_uri(AuthUrl::from_url(auth_url))
            .set_token_uri(TokenUrl::from_url(token_url))
            // Credentials in the form body, as Google's own libraries send them.
            .set_auth_type(AuthType::RequestBody);
        Self {
            client,
            http: OAuthHttp {
                http,
                provider: NAME,
                on_error: None,
            },
            revoke_url,
        }
    }

    /// The consent URL: offline access, consent forced, PKCE S256.
    pub fn authorize(&self, state: &str, redirect_uri: &str) -> Result<Authorization> {
        let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
        let state = state.to_owned();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .set_redirect_uri(Cow::Owned(redirect(redirect_uri)?))
            .add_scope(Scope::new(ANALYTICS_READONLY.to_owned()))
            .add_extra_param("access_type", "offline")
            .add_extra_param("prompt", "consent")
            .add_extra_param("include_granted_scopes", "true")
            .set_pkce_challenge(challenge)
            .url();
        Ok(Authorization {
            url: url.to_string(),
            pkce_verifier: Some(verifier.secret().to_owned()),
        })
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
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect(redirect_uri)?))
            .set_pkce_verifier(PkceCodeVerifier::new(code_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| token_request_error(NAME, "code exchange", e))?;
        let tokens = tokens_from(&response, now);
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
        let token = RefreshToken::new(refresh_token.expose_secret().to_owned());
        let response = self
            .client
            .exchange_refresh_token(&token)
            .request_async(&self.http)
            .await
            .map_err(|e| token_request_error(NAME, "token refresh", e))?;
        Ok(tokens_from(&response, now))
    }

    /// Revokes the grant (a refresh token revokes all of it). An already invalid
    /// token counts as revoked.
    pub async fn revoke(&self, token: &SecretString) -> Result<()> {
        let resp = self
            .http
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
