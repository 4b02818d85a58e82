//! OAuth 2.0 pieces shared by the OAuth providers. Authorization URLs, PKCE and
//! token requests are the `oauth2` crate's; it borrows this project's HTTP
//! client ([`OAuthHttp`]) instead of bringing its own. Here too: random state
//! values, the hash the store keeps of them, and the mapping of token-endpoint
//! failures (RFC 6749 §5.2) into the error taxonomy.

use std::future::Future;
use std::pin::Pin;

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::{Error, Result};
use oauth2::RequestTokenError;
use oauth2::basic::{BasicErrorResponse, BasicErrorResponseType};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use serde::Deserialize;

use crate::http::{Reply, read, send_error};

fn b64url(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// `bytes` of randomness, base64url: 32 bytes give 256 bits in 43 characters.
pub fn random_token(bytes: usize) -> Result<String> {
    let mut buf = vec![0u8; bytes];
    SystemRandom::new()
        .fill(&mut buf)
        .map_err(|_| Error::internal("no randomness available"))?;
    Ok(b64url(&buf))
}

/// SHA-256 of `value`, base64url: how OAuth states and browser bindings are kept
/// in the store (the raw values are never stored).
pub fn sha256_b64(value: &str) -> String {
    b64url(ring::digest::digest(&ring::digest::SHA256, value.as_bytes()).as_ref())
}

/// This project's HTTP client, lent to the `oauth2` crate. 429 and 5xx answers
/// become taxonomy errors here (the crate would only see an unreadable body);
/// a provider whose token errors are not RFC 6749 bodies reads them itself
/// through `on_error`.
#[derive(Clone)]
pub struct OAuthHttp {
    pub http: reqwest::Client,
    pub provider: &'static str,
    pub on_error: Option<fn(&Reply) -> Error>,
}

type HttpFuture<'c> = Pin<Box<dyn Future<Output = Result<oauth2::HttpResponse>> + Send + 'c>>;

impl<'c> oauth2::AsyncHttpClient<'c> for OAuthHttp {
    type Error = Error;
    type Future = HttpFuture<'c>;

    fn call(&'c self, request: oauth2::HttpRequest) -> Self::Future {
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let response = self
                .http
                .request(parts.method, parts.uri.to_string())
                .headers(parts.headers)
                .body(body)
                .send()
                .await
                .map_err(|e| send_error(self.provider, e))?;
            let reply = read(self.provider, response).await?;
            if reply.status == 429 {
                return Err(Error::rate_limited(
                    reply.retry_after,
                    format!(
                        "{} is rate limiting sign-ins; try again shortly",
                        self.provider
                    ),
                ));
            }
            if reply.status >= 500 {
                return Err(Error::transient(format!(
                    "{} failed to answer; try again",
                    self.provider
                )));
            }
            if let Some(on_error) = self.on_error.filter(|_| !reply.is_success()) {
                return Err(on_error(&reply));
            }
            let mut builder = oauth2::http::Response::builder().status(reply.status);
            for (name, value) in &reply.headers {
                builder = builder.header(name, value);
            }
            builder
                .body(reply.body)
                .map_err(|e| Error::internal("unreadable token response").with_source(e))
        })
    }
}

/// Tokens with absolute expiry from the crate's typed token response.
pub fn tokens_from(response: &impl oauth2::TokenResponse, now: DateTime<Utc>) -> OAuthTokens {
    OAuthTokens {
        access_token: SecretString::from(response.access_token().secret().to_owned()),
        refresh_token: response
            .refresh_token()
            .map(|r| SecretString::from(r.secret().to_owned())),
        expires_at: response
            .expires_in()
            .and_then(|d| Duration::from_std(d).ok())
            .map(|d| now + d),
        scopes: response
            .scopes()
            .map(|s| s.iter().map(|s| s.to_string()).collect())
            .unwrap_or_default(),
    }
}

/// Maps a failed token request. `during` says what was attempted, for the
/// message shown to the user or operator.
pub fn token_request_error(
    provider: &str,
    during: &str,
    error: RequestTokenError<Error, BasicErrorResponse>,
) -> Error {
    match error {
        RequestTokenError::Request(e) => e,
        RequestTokenError::ServerResponse(body) => {
            let code = match body.error() {
                BasicErrorResponseType::InvalidGrant => "invalid_grant",
                BasicErrorResponseType::InvalidClient => "invalid_client",
                BasicErrorResponseType::UnauthorizedClient => "unauthorized_client",
                BasicErrorResponseType::Extension(other) => other.as_str(),
                _ => "",
            };
            token_error(provider, during, code)
        }
        RequestTokenError::Parse(e, _) => Error::transient(format!(
            "{provider} sent a token response we could not read ({during})"
        ))
        .with_source(e),
        RequestTokenError::Other(_) => token_error(provider, during, ""),
    }
}

/// The taxonomy of RFC 6749 token error codes.
pub fn token_error(provider: &str, during: &str, code: &str) -> Error {
    match code {
        "invalid_grant" => Error::reauth(format!(
            "{provider} no longer accepts this connection ({during}): the grant expired or was revoked \
             (apps in Google's Testing mode expire after 7 days). Reconnect the integration."
        )),
        "invalid_client" | "unauthorized_client" => Error::config(format!(
            "{provider} rejected the app credentials ({during}); an operator must check the client id and secret"
        )),
        "redirect_uri_mismatch" => Error::config(format!(
            "{provider} rejected the redirect URI ({during}); check KPI_PUBLIC_URL and the app's registered URIs"
        )),
        _ => Error::validation(
            "code",
            format!("{provider} refused the authorization ({during}); try connecting again"),
        ),
    }
}

/// A token endpoint's success body read by hand, for provider steps outside
/// OAuth 2.0 proper (Meta's long-lived exchange).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
}

impl TokenResponse {
    pub fn into_tokens(self, now: DateTime<Utc>) -> OAuthTokens {
        OAuthTokens {
            access_token: SecretString::from(self.access_token),
            refresh_token: None,
            expires_at: self.expires_in.map(|s| now + Duration::seconds(s)),
            scopes: Vec::new(),
        }
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse([REDACTED])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use oauth2::{PkceCodeChallenge, PkceCodeVerifier};

    #[test]
    fn the_crates_pkce_matches_rfc_7636_appendix_b() {
        let verifier =
            PkceCodeVerifier::new("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned());
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        assert_eq!(
            challenge.as_str(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert_eq!(challenge.method().as_str(), "S256");
    }

    #[test]
    fn token_errors_follow_the_taxonomy() {
        let e = token_error("Google", "refresh", "invalid_grant");
        assert!(e.is_reauth());
        assert!(e.message().contains("7 days"));
        assert!(token_error("Google", "refresh", "invalid_client").is_config());
        assert!(token_error("Google", "x", "invalid_request").is_validation());
        let e = token_request_error("Google", "x", RequestTokenError::Other("empty".into()));
        assert!(e.is_validation());
    }
}
