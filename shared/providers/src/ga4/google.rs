//! Google OAuth 2.0 (web-server flow with PKCE), for GA4, on the `oauth2` crate.
//! Google's own parameters live here: `access_type=offline` (a refresh token)
//! and `prompt=consent` (a new refresh token on every reconnect).

use std::borrow::Cow;

use chrono::{DateTime, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::ports::provider::Authorization;
use kpi_core::{Error, Result};
use oauth2::basic::{
    BasicErrorResponse, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken, EndpointNotSet,
    EndpointSet, ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RefreshToken,
    Scope, StandardRevocableToken, StandardTokenResponse, TokenUrl,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

use crate::http::{read, send_error};
use crate::oauth::{OAuthHttp, token_request_error, tokens_from};

pub const ANALYTICS_READONLY: &str = "https://www.googleapis.com/auth/analytics.readonly";
/// Asked for so the token response names the Google user (`sub` of the ID
/// token): revoking ends that user's grant for every integration it connected.
pub const OPENID: &str = "openid";
const NAME: &str = "Google";

/// Google's token response: the standard fields and, with `openid`, an ID token.
#[derive(Clone, Default, Deserialize, Serialize)]
pub struct IdTokenField {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}

impl std::fmt::Debug for IdTokenField {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IdTokenField([REDACTED])")
    }
}

impl ExtraTokenFields for IdTokenField {}

type TokenResponse = StandardTokenResponse<IdTokenField, BasicTokenType>;

/// The client before its endpoints are set.
type NewClient = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
>;

type Client = oauth2::Client<
    BasicErrorResponse,
    TokenResponse,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;

/// The `sub` of an ID token received straight from Google's token endpoint
/// over TLS (OpenID Connect Core 3.1.3.7: the TLS server check stands in for
/// the signature check there).
fn id_token_subject(id_token: &str) -> Option<String> {
    use base64::Engine as _;
    let payload = id_token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    #[derive(Deserialize)]
    struct Claims {
        sub: String,
    }
    serde_json::from_slice::<Claims>(&bytes)
        .ok()
        .map(|c| c.sub)
        .filter(|s| !s.is_empty() && s.len() <= 255)
}

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
        let client = NewClient::new(ClientId::new(client_id))
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
            .add_scope(Scope::new(OPENID.to_owned()))
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
    /// access to Analytics (users can untick it on the consent screen). Also
    /// returns the Google user's id when Google sent an ID token.
    pub async fn exchange_code(
        &self,
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        now: DateTime<Utc>,
    ) -> Result<(OAuthTokens, Option<String>)> {
        let response = self
            .client
            .exchange_code(AuthorizationCode::new(code.to_owned()))
            .set_redirect_uri(Cow::Owned(redirect(redirect_uri)?))
            .set_pkce_verifier(PkceCodeVerifier::new(code_verifier.to_owned()))
            .request_async(&self.http)
            .await
            .map_err(|e| token_request_error(NAME, "code exchange", e))?;
        let tokens = tokens_from(&response, now);
        let user = response
            .extra_fields()
            .id_token
            .as_deref()
            .and_then(id_token_subject);
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
        Ok((tokens, user))
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
