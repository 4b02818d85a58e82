//! Google OAuth 2.0: consent page, token endpoint (code with PKCE, refresh),
//! revocation. Errors are RFC 6749 bodies as Google sends them.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;

use crate::Sandbox;
use crate::consent;
use crate::state::{AuthCode, CODE_TTL, Counters, Token, random};

/// The state of the GA4 simulator: Google's authorization codes and tokens,
/// and the GA4 Data API's quota use (that API checks Google access tokens).
#[derive(Default)]
pub(crate) struct GoogleState {
    pub codes: HashMap<String, AuthCode>,
    pub access: HashMap<String, Token>,
    pub refresh: HashMap<String, Token>,
    /// GA4 core tokens used per property.
    pub ga4_tokens: HashMap<String, i64>,
}

pub const ANALYTICS_READONLY: &str = "https://www.googleapis.com/auth/analytics.readonly";

#[derive(Deserialize)]
pub struct AuthorizeParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    response_type: Option<String>,
    scope: Option<String>,
    state: Option<String>,
    access_type: Option<String>,
    prompt: Option<String>,
    code_challenge: Option<String>,
    code_challenge_method: Option<String>,
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({"error": error, "error_description": description})),
    )
        .into_response()
}

fn bad_request_page(message: &str) -> Response {
    (
        StatusCode::BAD_REQUEST,
        axum::response::Html(format!(
            "<!doctype html><title>Error 400</title><h1>400. That's an error.</h1><p>{}</p>",
            consent::escape(message)
        )),
    )
        .into_response()
}

pub async fn authorize(
    State(sandbox): State<Sandbox>,
    Query(p): Query<AuthorizeParams>,
) -> Response {
    let config = sandbox.config();
    if p.client_id.as_deref() != Some(config.google_client_id.as_str()) {
        return bad_request_page("Error 401: invalid_client. The OAuth client was not found.");
    }
    let Some(redirect_uri) = p.redirect_uri.filter(|r| r.starts_with("http")) else {
        return bad_request_page("Error 400: redirect_uri_mismatch");
    };
    if p.response_type.as_deref() != Some("code") {
        return bad_request_page("Error 400: unsupported_response_type");
    }
    if p.code_challenge.is_some() && p.code_challenge_method.as_deref() != Some("S256") {
        return bad_request_page("Error 400: only S256 code challenges are accepted here");
    }
    let scope = p.scope.unwrap_or_default();
    let offline = p.access_type.as_deref() == Some("offline");
    let prompt = p.prompt.unwrap_or_default();
    consent::page(
        "Google",
        "consent",
        &[
            ("client_id", &config.google_client_id),
            ("redirect_uri", &redirect_uri),
            ("state", p.state.as_deref().unwrap_or_default()),
            ("scope", &scope),
            ("offline", if offline { "1" } else { "0" }),
            ("prompt", &prompt),
            (
                "code_challenge",
                p.code_challenge.as_deref().unwrap_or_default(),
            ),
        ],
        &scope.split_whitespace().collect::<Vec<_>>(),
        Some((
            "grant_analytics",
            "See and download your Google Analytics data",
        )),
    )
    .into_response()
}

#[derive(Deserialize)]
pub struct ConsentForm {
    decision: String,
    client_id: String,
    redirect_uri: String,
    #[serde(default)]
    state: String,
    #[serde(default)]
    scope: String,
    #[serde(default)]
    offline: String,
    #[serde(default)]
    code_challenge: String,
    #[serde(default)]
    grant_analytics: Option<String>,
}

pub async fn consent(State(sandbox): State<Sandbox>, Form(f): Form<ConsentForm>) -> Response {
    let Ok(mut target) = url::Url::parse(&f.redirect_uri) else {
        return bad_request_page("Error 400: redirect_uri_mismatch");
    };
    if f.decision != "allow" {
        target
            .query_pairs_mut()
            .append_pair("error", "access_denied")
            .append_pair("state", &f.state);
        return Redirect::to(target.as_str()).into_response();
    }
    // Granular consent: the user may untick the Analytics scope.
    let scopes: Vec<String> = f
        .scope
        .split_whitespace()
        .filter(|s| *s != ANALYTICS_READONLY || f.grant_analytics.is_some())
        .map(str::to_owned)
        .collect();
    let code = random("4/0Sbx");
    sandbox.with(|s: &mut GoogleState| {
        s.codes.insert(
            code.clone(),
            AuthCode {
                grant: random("grant-"),
                client_id: f.client_id,
                redirect_uri: f.redirect_uri.clone(),
                code_challenge: Some(f.code_challenge).filter(|c| !c.is_empty()),
                scopes: scopes.clone(),
                offline: f.offline == "1",
                expires: Instant::now() + CODE_TTL,
            },
        )
    });
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &f.state)
        .append_pair("scope", &scopes.join(" "))
        .append_pair("authuser", "0")
        .append_pair("prompt", "consent");
    Redirect::to(target.as_str()).into_response()
}

#[derive(Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    code: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    redirect_uri: Option<String>,
    code_verifier: Option<String>,
    refresh_token: Option<String>,
}

/// `client_secret_basic`: credentials in an HTTP Basic header.
fn basic_credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get("authorization")?.to_str().ok()?;
    let encoded = value.strip_prefix("Basic ")?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (id, secret) = text.split_once(':')?;
    Some((id.to_owned(), secret.to_owned()))
}

fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(ring::digest::digest(
        &ring::digest::SHA256,
        verifier.as_bytes(),
    ))
}

/// The simulated Google user every sandbox consent belongs to.
pub const SANDBOX_USER_SUB: &str = "109876543210987654321";

/// An OpenID Connect ID token as the token endpoint returns it (the client
/// reads it straight from the endpoint, so the signature is a stand-in).
fn id_token(client_id: &str) -> String {
    use base64::Engine as _;
    let b64 = |v: &serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_secs();
    format!(
        "{}.{}.c2FuZGJveA",
        b64(&json!({"alg": "RS256", "kid": "sandbox", "typ": "JWT"})),
        b64(
            &json!({"iss": "https://accounts.google.com", "aud": client_id,
            "sub": SANDBOX_USER_SUB, "iat": now, "exp": now + 3600})
        ),
    )
}

pub async fn token(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Form(f): Form<TokenForm>,
) -> Response {
    if let Some(status) = sandbox.faults().google_token {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oauth_error(status, "internal_failure", "Backend Error");
    }
    let config = sandbox.config().clone();
    let (client_id, client_secret) = basic_credentials(&headers).unwrap_or((
        f.client_id.clone().unwrap_or_default(),
        f.client_secret.clone().unwrap_or_default(),
    ));
    if client_id != config.google_client_id {
        return oauth_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            "The OAuth client was not found.",
        );
    }
    if client_secret != config.google_client_secret {
        return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "Unauthorized");
    }
    match f.grant_type.as_deref() {
        Some("authorization_code") => {
            sandbox.with(|c: &mut Counters| c.google_code_exchanges += 1);
            sandbox.with(|s: &mut GoogleState| {
                let Some(code) = f.code.as_deref().and_then(|c| s.codes.remove(c)) else {
                    // Unknown, expired or already used: single use.
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
                };
                if code.expires < Instant::now() || code.client_id != client_id {
                    return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Bad Request");
                }
                if f.redirect_uri.as_deref() != Some(code.redirect_uri.as_str()) {
                    return oauth_error(
                        StatusCode::BAD_REQUEST,
                        "redirect_uri_mismatch",
                        "Bad Request",
                    );
                }
                if let Some(challenge) = &code.code_challenge {
                    let ok = f
                        .code_verifier
                        .as_deref()
                        .is_some_and(|v| s256(v) == *challenge);
                    if !ok {
                        return oauth_error(
                            StatusCode::BAD_REQUEST,
                            "invalid_grant",
                            "Bad Request",
                        );
                    }
                }
                let access = random("ya29.sbx-");
                s.access.insert(
                    access.clone(),
                    Token {
                        grant: code.grant.clone(),
                        scopes: code.scopes.clone(),
                        expires: Instant::now() + Duration::from_secs(3599),
                        revoked: false,
                    },
                );
                let mut body = json!({
                    "access_token": access,
                    "expires_in": 3599,
                    "scope": code.scopes.join(" "),
                    "token_type": "Bearer",
                });
                if code.scopes.iter().any(|s| s == "openid") {
                    body["id_token"] = id_token(&code.client_id).into();
                }
                if code.offline {
                    let refresh = random("1//sbx-");
                    s.refresh.insert(
                        refresh.clone(),
                        Token {
                            grant: code.grant,
                            scopes: code.scopes,
                            expires: Instant::now() + Duration::from_secs(365 * 86400),
                            revoked: false,
                        },
                    );
                    body["refresh_token"] = json!(refresh);
                }
                (StatusCode::OK, axum::Json(body)).into_response()
            })
        }
        Some("refresh_token") => {
            sandbox.with(|c: &mut Counters| c.google_refreshes += 1);
            sandbox.with(|s: &mut GoogleState| {
                let (grant, scopes) =
                    match f.refresh_token.as_deref().and_then(|r| s.refresh.get(r)) {
                        Some(t) if t.live() => (t.grant.clone(), t.scopes.clone()),
                        _ => {
                            return oauth_error(
                                StatusCode::BAD_REQUEST,
                                "invalid_grant",
                                "Token has been expired or revoked.",
                            );
                        }
                    };
                let access = random("ya29.sbx-");
                s.access.insert(
                    access.clone(),
                    Token {
                        grant,
                        scopes: scopes.clone(),
                        expires: Instant::now() + Duration::from_secs(3599),
                        revoked: false,
                    },
                );
                (
                    StatusCode::OK,
                    axum::Json(json!({
                        "access_token": access,
                        "expires_in": 3599,
                        "scope": scopes.join(" "),
                        "token_type": "Bearer",
                    })),
                )
                    .into_response()
            })
        }
        _ => oauth_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "Invalid grant_type",
        ),
    }
}

#[derive(Deserialize)]
pub struct RevokeParams {
    token: Option<String>,
}

pub async fn revoke(
    State(sandbox): State<Sandbox>,
    Query(q): Query<RevokeParams>,
    body: axum::body::Bytes,
) -> Response {
    if let Some(status) = sandbox.faults().google_revoke {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return oauth_error(status, "internal_failure", "Backend Error");
    }
    // The token may come in the query or in a form body.
    let token = q
        .token
        .or_else(|| {
            url::form_urlencoded::parse(&body)
                .find(|(k, _)| k == "token")
                .map(|(_, v)| v.into_owned())
        })
        .unwrap_or_default();
    sandbox.with(|c: &mut Counters| c.google_revocations += 1);
    sandbox.with(|s: &mut GoogleState| {
        // Revoking a refresh token revokes the grant: its access tokens too.
        if let Some(r) = s.refresh.get_mut(&token) {
            r.revoked = true;
            let grant = r.grant.clone();
            for a in s.access.values_mut().filter(|a| a.grant == grant) {
                a.revoked = true;
            }
            return StatusCode::OK.into_response();
        }
        match s.access.get_mut(&token) {
            Some(a) if a.live() => {
                a.revoked = true;
                StatusCode::OK.into_response()
            }
            _ => oauth_error(
                StatusCode::BAD_REQUEST,
                "invalid_token",
                "Token expired or revoked",
            ),
        }
    })
}

/// The live access token of a `Bearer` header, with its scopes.
pub fn bearer_scopes(sandbox: &Sandbox, headers: &HeaderMap) -> Option<Vec<String>> {
    let token = headers
        .get("authorization")?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")?
        .to_owned();
    sandbox.with(|s: &mut GoogleState| {
        s.access
            .get(&token)
            .filter(|t| t.live())
            .map(|t| t.scopes.clone())
    })
}

impl Sandbox {
    /// Revokes every Google grant (the user removed the app's access in their
    /// Google account): access and refresh tokens stop working.
    pub fn revoke_all_google_grants(&self) {
        self.with(|s: &mut GoogleState| {
            for t in s.access.values_mut().chain(s.refresh.values_mut()) {
                t.revoked = true;
            }
        });
    }
}
