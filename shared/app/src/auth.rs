//! Identity: verifying the caller's JWT and turning it into a [`Principal`].
//!
//! Production tokens are RS256/ES256, verified with keys from `KPI_AUTH_JWKS_URL`
//! (cached by `kid`; refetched when an unknown `kid` arrives or the keys are an
//! hour old, at most every [`JWKS_MIN_REFRESH`] and with a growing back-off
//! while the issuer fails, never while holding the cache lock; known keys keep
//! being served during an outage), with issuer, audience (a string or a list),
//! expiry and not-before checked with a small leeway. The dev server can also
//! accept HS256 tokens signed with `KPI_AUTH_DEV_SECRET` (issuer
//! [`DEV_ISSUER`], audience [`DEV_AUDIENCE`]); production refuses that setting
//! at start-up.
//!
//! Identity providers name custom claims their own way (Auth0 wants them
//! namespaced, Cognito's custom attributes are `custom:…` strings), so the
//! workspaces and operator claims of production tokens are read under the
//! names [`ClaimNames`] holds (`KPI_AUTH_WORKSPACES_CLAIM`,
//! `KPI_AUTH_ADMIN_CLAIM`). A token without `aud` passes when its
//! `client_id` is the audience: Cognito's access tokens carry only that.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kpi_core::{Error, Principal, Result, WorkspaceId};
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use tokio::sync::RwLock;
use url::Url;

/// Leeway on `exp` and `nbf`, for clock skew between issuer and us.
pub const LEEWAY_SECONDS: u64 = 30;
/// Unknown `kid`s trigger a JWKS refetch at most this often.
pub const JWKS_MIN_REFRESH: Duration = Duration::from_secs(30);
/// Known keys are refetched after this long anyway (key rotation).
pub const JWKS_MAX_AGE: Duration = Duration::from_secs(3600);
/// Longest wait between fetch attempts while the issuer keeps failing.
pub const JWKS_MAX_BACKOFF: Duration = Duration::from_secs(300);

pub const DEV_ISSUER: &str = "kpi-integrations-dev";
pub const DEV_AUDIENCE: &str = "kpi-integrations";

/// The default name of the claim listing the workspaces a user may manage.
pub const DEFAULT_WORKSPACES_CLAIM: &str = "workspaces";
/// The default name of the claim that makes a user an operator.
pub const DEFAULT_ADMIN_CLAIM: &str = "platform_admin";

/// Where a token keeps the workspaces and the operator flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    pub workspaces: String,
    pub admin: String,
}

impl Default for ClaimNames {
    fn default() -> Self {
        Self {
            workspaces: DEFAULT_WORKSPACES_CLAIM.into(),
            admin: DEFAULT_ADMIN_CLAIM.into(),
        }
    }
}

/// What a dev token carries (the claim names are the defaults: we issue them).
#[derive(Debug, Serialize)]
struct DevClaims<'a> {
    sub: &'a str,
    workspaces: Vec<String>,
    platform_admin: bool,
    exp: u64,
    iss: &'a str,
    aud: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    email: Option<&'a str>,
    /// The dev sign-in vouches for the address it was given.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    email_verified: bool,
}

/// A verified token's claims, read by name: the standard ones are checked by
/// `jsonwebtoken` before this sees them.
struct Claims(serde_json::Map<String, serde_json::Value>);

impl Claims {
    fn str(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(serde_json::Value::as_str)
    }

    /// `aud` (a string or a list) contains `audience`; without `aud`, the
    /// `client_id` is `audience` (Cognito access tokens).
    fn is_for(&self, audience: &str) -> bool {
        match self.0.get("aud") {
            Some(serde_json::Value::String(aud)) => aud == audience,
            Some(serde_json::Value::Array(auds)) => {
                auds.iter().any(|a| a.as_str() == Some(audience))
            }
            Some(_) => false,
            None => self.str("client_id") == Some(audience),
        }
    }

    /// A list claim: an array of strings, or one string of items separated by
    /// spaces or commas (how Cognito's custom attributes and OAuth scopes look).
    fn list(&self, name: &str) -> Vec<String> {
        match self.0.get(name) {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|i| i.as_str().map(str::to_owned))
                .collect(),
            Some(serde_json::Value::String(text)) => text
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|i| !i.is_empty())
                .map(str::to_owned)
                .collect(),
            _ => Vec::new(),
        }
    }

    /// A flag claim: `true`, or the string `"true"` (string-typed attributes).
    fn flag(&self, name: &str) -> bool {
        match self.0.get(name) {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }

    fn into_principal(self, names: &ClaimNames) -> Result<Principal> {
        let sub = self.str("sub").unwrap_or_default();
        if sub.is_empty() {
            return Err(Error::unauthenticated("the token has no subject"));
        }
        Ok(Principal {
            sub: sub.to_owned(),
            // Ids that could not be ours are ignored rather than failing the token.
            workspaces: self
                .list(&names.workspaces)
                .iter()
                .filter_map(|w| WorkspaceId::parse(w).ok())
                .collect(),
            platform_admin: self.flag(&names.admin),
            email: self
                .str("email")
                .map(kpi_core::ports::store::normalize_address)
                .filter(|e| kpi_core::email::is_address(e)),
            email_verified: self.flag("email_verified"),
        })
    }
}

/// Who a verified token's claims name, with the workspaces and operator
/// claims read under `names` (the pages' sign-in reads ID tokens with it).
pub fn principal_from_claims(
    claims: serde_json::Map<String, serde_json::Value>,
    names: &ClaimNames,
) -> Result<Principal> {
    Claims(claims).into_principal(names)
}

pub struct JwksSettings {
    pub url: Url,
    pub issuer: String,
    pub audience: String,
    pub claims: ClaimNames,
}

impl JwksSettings {
    /// The production verification settings, when all three are configured.
    pub fn from_config(auth: &crate::config::AuthConfig) -> Option<Self> {
        match (&auth.jwks_url, &auth.issuer, &auth.audience) {
            (Some(url), Some(issuer), Some(audience)) => Some(
                Self::new(url.clone(), issuer.clone(), audience.clone())
                    .with_claims(auth.claims.clone()),
            ),
            _ => None,
        }
    }

    pub fn new(url: Url, issuer: String, audience: String) -> Self {
        Self {
            url,
            issuer,
            audience,
            claims: ClaimNames::default(),
        }
    }

    /// Reads the workspaces and operator claims under these names.
    pub fn with_claims(mut self, claims: ClaimNames) -> Self {
        self.claims = claims;
        self
    }
}

struct KeyCache {
    keys: HashMap<String, (DecodingKey, Algorithm)>,
    /// Last successful fetch.
    fetched: Option<Instant>,
    /// Last attempt, successful or not: fetches are spaced from it.
    attempted: Option<Instant>,
    /// Failed attempts in a row.
    failures: u32,
}

impl KeyCache {
    /// Whether a fetch may start now: at most every `min_refresh`, doubling
    /// per failure in a row up to [`JWKS_MAX_BACKOFF`].
    fn may_fetch(&self, min_refresh: Duration) -> bool {
        let wait = min_refresh
            .saturating_mul(1 << self.failures.min(10))
            .min(JWKS_MAX_BACKOFF.max(min_refresh));
        self.attempted.is_none_or(|t| t.elapsed() >= wait)
    }
}

pub struct Authenticator {
    dev_secret: Option<SecretString>,
    jwks: Option<(JwksSettings, reqwest::Client)>,
    cache: RwLock<KeyCache>,
    min_refresh: Duration,
    max_age: Duration,
}

fn invalid() -> Error {
    Error::unauthenticated("the access token is missing, invalid or expired")
}

/// Why a dev token was refused, in words a person scripting against the dev
/// server can act on (dev tokens exist only in development).
fn dev_token_refused(e: &jsonwebtoken::errors::Error) -> Error {
    use jsonwebtoken::errors::ErrorKind as K;
    let why = match e.kind() {
        K::InvalidIssuer => format!("its iss claim must be \"{DEV_ISSUER}\""),
        K::InvalidAudience => format!("its aud claim must be \"{DEV_AUDIENCE}\""),
        K::ExpiredSignature => "it has expired (exp)".to_owned(),
        K::ImmatureSignature => "it is not valid yet (nbf)".to_owned(),
        K::MissingRequiredClaim(c) => format!("it has no {c} claim"),
        K::InvalidSignature => "its signature does not match KPI_AUTH_DEV_SECRET".to_owned(),
        _ => "it is not a well-formed HS256 JWT".to_owned(),
    };
    Error::unauthenticated(format!(
        "the dev token was refused: {why} (claims: sub, workspaces, platform_admin, exp, iss, aud)"
    ))
}

impl Authenticator {
    pub fn new(
        dev_secret: Option<SecretString>,
        jwks: Option<JwksSettings>,
        http: reqwest::Client,
    ) -> Self {
        Self {
            dev_secret,
            jwks: jwks.map(|j| (j, http)),
            cache: RwLock::new(KeyCache {
                keys: HashMap::new(),
                fetched: None,
                attempted: None,
                failures: 0,
            }),
            min_refresh: JWKS_MIN_REFRESH,
            max_age: JWKS_MAX_AGE,
        }
    }

    /// How long known keys are used before a refetch (tests shorten it).
    pub fn with_max_age(mut self, max_age: Duration) -> Self {
        self.max_age = max_age;
        self
    }

    /// How often an unknown `kid` may trigger a JWKS refetch (tests shorten it).
    pub fn with_min_refresh(mut self, min_refresh: Duration) -> Self {
        self.min_refresh = min_refresh;
        self
    }

    pub fn has_dev_secret(&self) -> bool {
        self.dev_secret.is_some()
    }

    /// Verifies `token` and returns who it names.
    pub async fn verify(&self, token: &str) -> Result<Principal> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| invalid())?;
        match header.alg {
            Algorithm::HS256 => {
                let secret = self.dev_secret.as_ref().ok_or_else(invalid)?;
                let mut v = Validation::new(Algorithm::HS256);
                v.set_issuer(&[DEV_ISSUER]);
                v.set_audience(&[DEV_AUDIENCE]);
                v.leeway = LEEWAY_SECONDS;
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
                let claims = jsonwebtoken::decode::<serde_json::Map<_, _>>(
                    token,
                    &DecodingKey::from_secret(secret.expose_secret().as_bytes()),
                    &v,
                )
                .map_err(|e| dev_token_refused(&e))?
                .claims;
                Claims(claims).into_principal(&ClaimNames::default())
            }
            Algorithm::RS256 | Algorithm::ES256 => {
                let (settings, _) = self.jwks.as_ref().ok_or_else(invalid)?;
                let kid = header.kid.ok_or_else(invalid)?;
                let (key, alg) = self.key_for(&kid).await?;
                if alg != header.alg {
                    return Err(invalid());
                }
                let mut v = Validation::new(alg);
                v.set_issuer(&[settings.issuer.as_str()]);
                // `aud`, or `client_id` without it: checked below.
                v.validate_aud = false;
                v.leeway = LEEWAY_SECONDS;
                v.validate_nbf = true;
                v.set_required_spec_claims(&["exp", "sub", "iss"]);
                let claims = Claims(
                    jsonwebtoken::decode::<serde_json::Map<_, _>>(token, &key, &v)
                        .map_err(|_| invalid())?
                        .claims,
                );
                if !claims.is_for(&settings.audience) {
                    return Err(invalid());
                }
                claims.into_principal(&settings.claims)
            }
            _ => Err(invalid()),
        }
    }

    async fn key_for(&self, kid: &str) -> Result<(DecodingKey, Algorithm)> {
        let known = {
            let cache = self.cache.read().await;
            let fresh = cache.fetched.is_some_and(|t| t.elapsed() < self.max_age);
            let known = cache.keys.get(kid).cloned();
            if let Some(found) = &known
                && fresh
            {
                return Ok(found.clone());
            }
            if !cache.may_fetch(self.min_refresh) {
                // Stale keys still verify while fetching is paused.
                return known.ok_or_else(invalid);
            }
            known
        };
        {
            // Claim this attempt, so concurrent requests do not all fetch.
            let mut cache = self.cache.write().await;
            if !cache.may_fetch(self.min_refresh) {
                return cache.keys.get(kid).cloned().or(known).ok_or_else(invalid);
            }
            cache.attempted = Some(Instant::now());
        }
        // Fetched without holding the lock: requests with known keys go on.
        let fetched = self.fetch_keys().await;
        let mut cache = self.cache.write().await;
        match fetched {
            Ok(keys) => {
                cache.keys = keys;
                cache.fetched = Some(Instant::now());
                cache.failures = 0;
            }
            Err(e) => {
                cache.failures = cache.failures.saturating_add(1);
                tracing::warn!(error = %e.log_chain(), failures = cache.failures, "JWKS refresh failed; known keys stay in use");
                if cache.keys.is_empty() {
                    return Err(e);
                }
            }
        }
        cache.keys.get(kid).cloned().ok_or_else(invalid)
    }

    async fn fetch_keys(&self) -> Result<HashMap<String, (DecodingKey, Algorithm)>> {
        let (settings, http) = self.jwks.as_ref().ok_or_else(invalid)?;
        let resp = http
            .get(settings.url.clone())
            .send()
            .await
            .map_err(|e| kpi_providers::http::send_error("the identity provider", e))?;
        if !resp.status().is_success() {
            return Err(Error::transient(format!(
                "the identity provider's JWKS answered {}",
                resp.status()
            )));
        }
        let set: JwkSet = resp.json().await.map_err(|e| {
            Error::transient("the JWKS could not be read").with_source(e.without_url())
        })?;
        let mut keys = HashMap::new();
        for jwk in &set.keys {
            let Some(kid) = jwk.common.key_id.clone() else {
                continue;
            };
            let alg = match &jwk.algorithm {
                jsonwebtoken::jwk::AlgorithmParameters::RSA(_) => Algorithm::RS256,
                jsonwebtoken::jwk::AlgorithmParameters::EllipticCurve(_) => Algorithm::ES256,
                _ => continue,
            };
            if let Ok(key) = DecodingKey::from_jwk(jwk) {
                keys.insert(kid, (key, alg));
            }
        }
        Ok(keys)
    }

    /// Issues an HS256 token with the dev secret (dev login, tests, scripts).
    pub fn issue_dev_token(
        &self,
        sub: &str,
        workspaces: &[WorkspaceId],
        platform_admin: bool,
        email: Option<&str>,
        ttl: Duration,
    ) -> Result<String> {
        let secret = self
            .dev_secret
            .as_ref()
            .ok_or_else(|| Error::config("no KPI_AUTH_DEV_SECRET: dev tokens are off"))?;
        sign_dev_token_with_email(secret, sub, workspaces, platform_admin, email, ttl)
    }
}

/// Signs a dev token; separate so tests and tools can mint tokens for a server.
pub fn sign_dev_token(
    secret: &SecretString,
    sub: &str,
    workspaces: &[WorkspaceId],
    platform_admin: bool,
    ttl: Duration,
) -> Result<String> {
    sign_dev_token_with_email(secret, sub, workspaces, platform_admin, None, ttl)
}

/// [`sign_dev_token`] for a user with an email address.
pub fn sign_dev_token_with_email(
    secret: &SecretString,
    sub: &str,
    workspaces: &[WorkspaceId],
    platform_admin: bool,
    email: Option<&str>,
    ttl: Duration,
) -> Result<String> {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs()
        + ttl.as_secs();
    let claims = DevClaims {
        sub,
        workspaces: workspaces.iter().map(|w| w.to_string()).collect(),
        platform_admin,
        exp,
        iss: DEV_ISSUER,
        aud: DEV_AUDIENCE,
        email,
        email_verified: email.is_some(),
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.expose_secret().as_bytes()),
    )
    .map_err(|e| Error::internal("cannot sign a dev token").with_source(e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(secret: &str) -> Authenticator {
        Authenticator::new(
            Some(SecretString::from(secret.to_owned())),
            None,
            kpi_providers::http::client(Duration::from_secs(5)).unwrap(),
        )
    }

    #[tokio::test]
    async fn dev_tokens_round_trip_and_forgeries_fail() {
        let a = auth("dev-secret-1");
        let ws = WorkspaceId::parse("demo").unwrap();
        let token = a
            .issue_dev_token(
                "user-1",
                std::slice::from_ref(&ws),
                false,
                Some("User-1@Example.com"),
                Duration::from_secs(60),
            )
            .unwrap();
        let p = a.verify(&token).await.unwrap();
        assert_eq!(p.sub, "user-1");
        assert_eq!(
            p.email.as_deref(),
            Some("user-1@example.com"),
            "an email claim, normalised"
        );
        assert_eq!(p.workspaces, vec![ws.clone()]);
        assert!(!p.platform_admin);

        let other = auth("another-secret");
        assert_eq!(
            other.verify(&token).await.unwrap_err().code(),
            "unauthenticated"
        );
        let mut tampered = token.clone();
        tampered.insert(tampered.len() - 3, 'x');
        assert!(a.verify(&tampered).await.is_err());
        assert!(a.verify("not.a.jwt").await.is_err());
        assert!(a.verify("").await.is_err());

        // Expired beyond the leeway.
        let claims = DevClaims {
            sub: "u",
            workspaces: vec![],
            platform_admin: true,
            exp: 1_000,
            iss: DEV_ISSUER,
            aud: DEV_AUDIENCE,
            email: None,
            email_verified: false,
        };
        let old = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(b"dev-secret-1"),
        )
        .unwrap();
        assert!(a.verify(&old).await.is_err());
    }

    #[tokio::test]
    async fn a_refused_dev_token_says_which_claim_failed() {
        let a = auth("dev-secret-1");
        let now = chrono::Utc::now().timestamp();
        let sign = |claims: serde_json::Value, secret: &[u8]| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(secret),
            )
            .unwrap()
        };
        let base = serde_json::json!({"sub": "u", "workspaces": ["demo"], "exp": now + 60,
            "iss": DEV_ISSUER, "aud": DEV_AUDIENCE});
        let with = |k: &str, v: serde_json::Value| {
            let mut c = base.clone();
            c[k] = v;
            c
        };
        // `aud` may be a list that contains ours.
        a.verify(&sign(
            with("aud", serde_json::json!(["other", DEV_AUDIENCE])),
            b"dev-secret-1",
        ))
        .await
        .unwrap();
        for (token, says) in [
            (sign(with("iss", "someone".into()), b"dev-secret-1"), "iss"),
            (sign(with("aud", "other".into()), b"dev-secret-1"), "aud"),
            (
                sign(with("exp", (now - 3600).into()), b"dev-secret-1"),
                "expired",
            ),
            (
                sign(with("nbf", (now + 3600).into()), b"dev-secret-1"),
                "nbf",
            ),
            (sign(base.clone(), b"another-secret"), "KPI_AUTH_DEV_SECRET"),
        ] {
            let e = a.verify(&token).await.unwrap_err();
            assert_eq!(e.http_status(), 401);
            assert!(e.message().contains(says), "{says}: {}", e.message());
        }
        let mut no_iss = base.clone();
        no_iss.as_object_mut().unwrap().remove("iss");
        let e = a.verify(&sign(no_iss, b"dev-secret-1")).await.unwrap_err();
        assert!(e.message().contains("no iss claim"), "{}", e.message());
    }

    #[tokio::test]
    async fn hs256_is_refused_without_a_dev_secret() {
        let signer = auth("s");
        let token = signer
            .issue_dev_token("u", &[], false, None, Duration::from_secs(60))
            .unwrap();
        let production = Authenticator::new(
            None,
            None,
            kpi_providers::http::client(Duration::from_secs(5)).unwrap(),
        );
        assert!(production.verify(&token).await.is_err());
    }
}
