//! OAuth 2.0 pieces shared by the providers: PKCE (RFC 7636), random state values,
//! token responses and RFC 6749 error bodies.

use base64::Engine as _;
use chrono::{DateTime, Duration, Utc};
use kpi_core::credentials::OAuthTokens;
use kpi_core::{Error, Result};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::SecretString;
use serde::Deserialize;

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

/// A PKCE verifier and its S256 challenge.
pub struct Pkce {
    pub verifier: String,
    pub challenge: String,
}

impl Pkce {
    pub fn generate() -> Result<Self> {
        // 32 random bytes: a 43-character verifier of [A-Za-z0-9_-].
        Ok(Self::from_verifier(random_token(32)?))
    }

    pub fn from_verifier(verifier: String) -> Self {
        let challenge = sha256_b64(&verifier);
        Self {
            verifier,
            challenge,
        }
    }
}

/// A token endpoint's success body (Google and Meta share these fields).
#[derive(Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub expires_in: Option<i64>,
    #[serde(default)]
    pub refresh_token: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

impl TokenResponse {
    /// Tokens with absolute expiry; `scope` is space-delimited (RFC 6749).
    pub fn into_tokens(self, now: DateTime<Utc>) -> OAuthTokens {
        OAuthTokens {
            access_token: SecretString::from(self.access_token),
            refresh_token: self.refresh_token.map(SecretString::from),
            expires_at: self.expires_in.map(|s| now + Duration::seconds(s)),
            scopes: self
                .scope
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
        }
    }
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenResponse([REDACTED])")
    }
}

/// RFC 6749 §5.2 error body.
#[derive(Debug, Deserialize)]
pub struct TokenError {
    pub error: String,
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Maps a token endpoint failure. `during` says what was attempted, for the
/// message shown to the user or operator.
pub fn token_error(provider: &str, during: &str, status: u16, body: &[u8]) -> Error {
    let parsed: Option<TokenError> = serde_json::from_slice(body).ok();
    let code = parsed.as_ref().map(|e| e.error.as_str()).unwrap_or("");
    match (status, code) {
        (_, "invalid_grant") => Error::reauth(format!(
            "{provider} no longer accepts this connection ({during}): the grant expired or was revoked \
             (apps in Google's Testing mode expire after 7 days). Reconnect the integration."
        )),
        (_, "invalid_client" | "unauthorized_client") => Error::config(format!(
            "{provider} rejected the app credentials ({during}); an operator must check the client id and secret"
        )),
        (_, "redirect_uri_mismatch") => Error::config(format!(
            "{provider} rejected the redirect URI ({during}); check KPI_PUBLIC_URL and the app's registered URIs"
        )),
        (429, _) => Error::rate_limited(None, format!("{provider} is rate limiting ({during})")),
        (s, _) if s >= 500 => Error::transient(format!("{provider} failed ({during}); try again")),
        _ => Error::validation(
            "code",
            format!("{provider} refused the authorization ({during}); try connecting again"),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_matches_rfc_7636_appendix_b() {
        let p = Pkce::from_verifier("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into());
        assert_eq!(p.challenge, "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM");
        let fresh = Pkce::generate().unwrap();
        assert_eq!(fresh.verifier.len(), 43);
        assert!(
            fresh
                .verifier
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        );
    }

    #[test]
    fn token_errors_follow_the_taxonomy() {
        let e = token_error("Google", "refresh", 400, br#"{"error":"invalid_grant","error_description":"Token has been expired or revoked."}"#);
        assert_eq!(e.code(), "reauth_required");
        assert!(e.message().contains("7 days"));
        let e = token_error("Google", "refresh", 401, br#"{"error":"invalid_client"}"#);
        assert_eq!(e.code(), "configuration");
        assert_eq!(token_error("Google", "x", 503, b"oops").code(), "transient");
    }
}
