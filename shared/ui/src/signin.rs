//! Signing in to the pages at the dashboard's identity provider: an OpenID
//! Connect relying party (authorization code with PKCE S256, a single-use
//! state bound to the browser, a nonce), configured by `KPI_OIDC_ISSUER`,
//! `KPI_OIDC_CLIENT_ID`, `KPI_OIDC_CLIENT_SECRET` and `KPI_OIDC_SCOPES`.
//!
//! * `GET /auth/login?return_to=` stores the attempt (under the hash of its
//!   state: the nonce, the PKCE verifier, where to go back, the hash of a
//!   browser-binding cookie) and sends the browser to the provider.
//! * `GET /auth/callback` takes the attempt once, checks the binding cookie,
//!   exchanges the code, verifies the ID token (signature through the
//!   provider's JWKS, `iss`, `aud`, `exp`, `nonce`: the `openidconnect`
//!   crate), reads the workspaces and operator claims under their configured
//!   names, and starts this service's own session ([`kpi_app::session`]).
//!   No provider token outlives the request.
//! * `POST /auth/logout` (the session's CSRF token in the form) ends the
//!   session, and the provider's too when it offers `end_session_endpoint`.
//!
//! Whatever goes wrong answers a page that says what to do, and creates no
//! session.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use kpi_app::AppState;
use kpi_app::config::OidcConfig;
use kpi_app::http::extract::{CSRF_COOKIE, constant_time_eq, cookie};
use kpi_app::session;
use kpi_core::{Error, Result};
use kpi_providers::oauth::{OAuthHttp, random_token, sha256_b64};
use openidconnect::core::{CoreAuthenticationFlow, CoreClient};
use openidconnect::{
    AuthorizationCode, ClientId, ClientSecret, CsrfToken, IssuerUrl, Nonce, PkceCodeChallenge,
    PkceCodeVerifier, PostLogoutRedirectUrl, ProviderMetadataWithLogout, RedirectUrl, Scope,
    TokenResponse as _,
};
use serde::{Deserialize, Serialize};
use tokio::sync::Mutex;

use crate::page::PageError;

/// How long a sign-in attempt may take at the provider.
const ATTEMPT_LIFETIME: chrono::Duration = chrono::Duration::minutes(10);
/// How long the provider's discovery document and keys are trusted.
const DISCOVERY_MAX_AGE: Duration = Duration::from_secs(600);
/// The cookie that binds an attempt to the browser that started it.
const BINDING_COOKIE: &str = "kpi_signin";
const CALLBACK_PATH: &str = "/auth/callback";
const SIGNED_OUT_PATH: &str = "/auth/signed-out";

/// What the store keeps of an attempt, under the hash of its state.
#[derive(Serialize, Deserialize)]
struct Attempt {
    nonce: String,
    pkce_verifier: String,
    return_to: String,
    /// Hash of the binding cookie's value.
    binding: String,
}

struct Discovered {
    issuer: String,
    at: Instant,
    metadata: Arc<ProviderMetadataWithLogout>,
}

static DISCOVERED: Mutex<Option<Discovered>> = Mutex::const_new(None);

fn http() -> Result<OAuthHttp> {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    let client = match CLIENT.get() {
        Some(c) => c.clone(),
        None => {
            let c = kpi_app::providers::http_client()?;
            CLIENT.get_or_init(|| c).clone()
        }
    };
    Ok(OAuthHttp {
        http: client,
        provider: "the identity provider",
        on_error: None,
    })
}

/// The provider's metadata and keys, by discovery, cached for a while
/// (`fresh`: fetched again whatever the cache holds, for a key rotation).
async fn discover(oidc: &OidcConfig, fresh: bool) -> Result<Arc<ProviderMetadataWithLogout>> {
    let issuer = oidc.issuer.clone();
    let mut cache = DISCOVERED.lock().await;
    if let Some(d) = cache.as_ref()
        && d.issuer == issuer
        && d.at.elapsed() < DISCOVERY_MAX_AGE
        && !(fresh && d.at.elapsed() > Duration::from_secs(30))
    {
        return Ok(d.metadata.clone());
    }
    let issuer_url =
        IssuerUrl::new(issuer.clone()).map_err(|_| Error::config("KPI_OIDC_ISSUER: not a URL"))?;
    let metadata = ProviderMetadataWithLogout::discover_async(issuer_url, &http()?)
        .await
        .map_err(|e| {
            Error::transient("the identity provider's discovery document could not be read")
                .with_source(DiscoveryError(e.to_string()))
        })?;
    let metadata = Arc::new(metadata);
    *cache = Some(Discovered {
        issuer,
        at: Instant::now(),
        metadata: metadata.clone(),
    });
    Ok(metadata)
}

#[derive(Debug)]
struct DiscoveryError(String);
impl std::fmt::Display for DiscoveryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for DiscoveryError {}

fn oidc(state: &AppState) -> std::result::Result<&OidcConfig, PageError> {
    state.config.oidc.as_ref().ok_or(PageError::NotFound)
}

fn public(state: &AppState, path: &str) -> String {
    format!(
        "{}{path}",
        state.config.public_url.as_str().trim_end_matches('/')
    )
}

fn refused(detail: &str) -> PageError {
    PageError::Domain(Error::validation("sign-in", detail.to_owned()))
}

fn redirect(location: &str, cookies: &[String]) -> Response {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        if let Ok(v) = HeaderValue::from_str(c) {
            headers.append(header::SET_COOKIE, v);
        }
    }
    response
}

fn binding_cookie(state: &AppState, value: &str, max_age: i64) -> String {
    format!(
        "{}={value}; Path={CALLBACK_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
        state.config.scoped_cookie_name(BINDING_COOKIE),
        state.config.cookie_secure_attr()
    )
}

#[derive(Deserialize)]
pub struct LoginQuery {
    return_to: Option<String>,
}

/// `GET /auth/login`: to the provider, to come back to `return_to`.
pub async fn login(
    State(state): State<AppState>,
    Query(query): Query<LoginQuery>,
) -> std::result::Result<Response, PageError> {
    let oidc = oidc(&state)?;
    let return_to = match query.return_to.as_deref() {
        Some(raw) => kpi_app::http::return_to::resolve(&state.config.public_url, raw)
            .map_err(|_| {
                refused("return_to must be a page of this site, such as /settings/integrations")
            })?
            .to_string(),
        None => public(&state, "/settings/integrations"),
    };
    let metadata = discover(oidc, false).await?;
    let client = client(&state, oidc, &metadata)?;
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let state_token = random_token(32)?;
    let nonce = random_token(32)?;
    let mut request = client
        .authorize_url(
            CoreAuthenticationFlow::AuthorizationCode,
            {
                let s = state_token.clone();
                move || CsrfToken::new(s)
            },
            {
                let n = nonce.clone();
                move || Nonce::new(n)
            },
        )
        .set_pkce_challenge(challenge);
    for scope in oidc.scopes.iter().filter(|s| *s != "openid") {
        request = request.add_scope(Scope::new(scope.clone()));
    }
    let (url, _, _) = request.url();
    let binding = random_token(32)?;
    let attempt = Attempt {
        nonce,
        pkce_verifier: verifier.secret().clone(),
        return_to,
        binding: sha256_b64(&binding),
    };
    let body = serde_json::to_value(&attempt)
        .map_err(|e| Error::internal("cannot encode a sign-in").with_source(e))?;
    state
        .store
        .put_ephemeral(
            &session::store_key("signin", &state_token),
            &body,
            state.clock.now() + ATTEMPT_LIFETIME,
        )
        .await?;
    Ok(redirect(
        url.as_str(),
        &[binding_cookie(
            &state,
            &binding,
            ATTEMPT_LIFETIME.num_seconds(),
        )],
    ))
}

type Client = openidconnect::core::CoreClient<
    openidconnect::EndpointSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointNotSet,
    openidconnect::EndpointMaybeSet,
    openidconnect::EndpointMaybeSet,
>;

fn client(
    state: &AppState,
    oidc: &OidcConfig,
    metadata: &ProviderMetadataWithLogout,
) -> Result<Client> {
    use secrecy::ExposeSecret as _;
    let redirect = RedirectUrl::new(public(state, CALLBACK_PATH))
        .map_err(|_| Error::config("KPI_PUBLIC_URL: not a URL"))?;
    Ok(CoreClient::from_provider_metadata(
        metadata.clone(),
        ClientId::new(oidc.client_id.clone()),
        oidc.client_secret
            .as_ref()
            .map(|s| ClientSecret::new(s.expose_secret().to_owned())),
    )
    .set_redirect_uri(redirect))
}

#[derive(Deserialize)]
pub struct CallbackQuery {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
}

/// `GET /auth/callback`: the provider's answer, turned into a session.
pub async fn callback(
    State(state): State<AppState>,
    parts: Parts,
    Query(query): Query<CallbackQuery>,
) -> std::result::Result<Response, PageError> {
    let oidc = oidc(&state)?;
    let clear_binding = binding_cookie(&state, "", 0);
    let Some(state_token) = query.state.as_deref().filter(|s| s.len() <= 128) else {
        return Err(refused(
            "This sign-in link is incomplete. Open the page again to sign in.",
        ));
    };
    // Taken once: a replayed or forged state finds nothing.
    let attempt: Attempt = match state
        .store
        .take_ephemeral(
            &session::store_key("signin", state_token),
            state.clock.now(),
        )
        .await?
    {
        Some(body) => serde_json::from_value(body)
            .map_err(|e| Error::internal("a stored sign-in is unreadable").with_source(e))?,
        None => {
            return Err(refused(
                "This sign-in has expired or was already used. Open the page again to sign in.",
            ));
        }
    };
    let bound = cookie(&parts, &state.config.scoped_cookie_name(BINDING_COOKIE))
        .is_some_and(|b| constant_time_eq(&sha256_b64(b), &attempt.binding));
    if !bound {
        return Err(refused(
            "This sign-in was started in another browser. Open the page again here to sign in.",
        ));
    }
    if let Some(error) = query.error.as_deref() {
        let detail = if error == "access_denied" {
            "Sign-in was cancelled at your identity provider. Open the page again to sign in."
        } else {
            "Your identity provider could not sign you in. Try again in a minute."
        };
        tracing::info!(error = %error.chars().take(64).collect::<String>(), "sign-in refused by the identity provider");
        return Err(refused(detail));
    }
    let Some(code) = query.code else {
        return Err(refused(
            "This sign-in link is incomplete. Open the page again to sign in.",
        ));
    };
    let principal = match verified_principal(&state, oidc, code, &attempt).await {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e.log_chain(), "sign-in refused");
            return Err(refused(
                "Your identity provider's answer could not be verified. Open the page again to sign in.",
            ));
        }
    };
    let (id, _) = session::create(&state, principal).await?;
    Ok(redirect(
        &attempt.return_to,
        &[
            session::cookie(&state, &id, session::SESSION_LIFETIME.num_seconds()),
            clear_binding,
        ],
    ))
}

/// The code exchanged, the ID token verified, its claims read.
async fn verified_principal(
    state: &AppState,
    oidc: &OidcConfig,
    code: String,
    attempt: &Attempt,
) -> Result<kpi_core::Principal> {
    let http = http()?;
    let metadata = discover(oidc, false).await?;
    let token = client(state, oidc, &metadata)?
        .exchange_code(AuthorizationCode::new(code))
        .map_err(|e| Error::config("the identity provider has no token endpoint").with_source(e))?
        .set_pkce_verifier(PkceCodeVerifier::new(attempt.pkce_verifier.clone()))
        .request_async(&http)
        .await
        .map_err(|e| {
            Error::unauthenticated("the code was not exchanged")
                .with_source(DiscoveryError(e.to_string()))
        })?;
    let id_token = token
        .id_token()
        .ok_or_else(|| Error::unauthenticated("the identity provider sent no ID token"))?;
    let nonce = Nonce::new(attempt.nonce.clone());
    let verify = |metadata: &ProviderMetadataWithLogout| -> Result<()> {
        let client = client(state, oidc, metadata)?;
        id_token
            .claims(&client.id_token_verifier(), &nonce)
            .map(|_| ())
            .map_err(|e| {
                Error::unauthenticated("the ID token was refused")
                    .with_source(DiscoveryError(e.to_string()))
            })
    };
    if verify(&metadata).is_err() {
        // A key the cached set does not have yet: one fresh look, then the verdict.
        verify(&*discover(oidc, true).await?)?;
    }
    // Verified above; its payload is read again for the claims this
    // deployment names (the crate types only the standard ones).
    let raw = id_token.to_string();
    let payload = raw
        .split('.')
        .nth(1)
        .and_then(|p| {
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(p)
                .ok()
        })
        .and_then(|b| serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&b).ok())
        .ok_or_else(|| Error::unauthenticated("the ID token is unreadable"))?;
    kpi_app::auth::principal_from_claims(payload, &state.config.auth.claims)
}

#[derive(Deserialize)]
pub struct LogoutForm {
    csrf: Option<String>,
}

/// `POST /auth/logout`: the session ends here, then at the provider.
pub async fn logout(
    State(state): State<AppState>,
    parts: Parts,
    axum::Form(form): axum::Form<LogoutForm>,
) -> std::result::Result<Response, PageError> {
    let presented = form
        .csrf
        .or_else(|| {
            parts
                .headers
                .get(kpi_app::http::extract::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default();
    let Some(cookie_value) = kpi_app::http::extract::session_cookie(&parts, &state)
        .map_err(|_| refused("Clear this site's cookies and sign in again."))?
    else {
        return Ok(redirect(&public(&state, SIGNED_OUT_PATH), &[]));
    };
    // A forged sign-out (another site's form) is refused: the token is the
    // session's own, or for a dev login the CSRF cookie's.
    let expected = if session::is_session_id(cookie_value) {
        session::find(&state, cookie_value).await?.map(|s| s.csrf)
    } else {
        cookie(&parts, &state.config.cookie_name(CSRF_COOKIE)).map(str::to_owned)
    };
    if !expected.is_some_and(|e| !presented.is_empty() && constant_time_eq(&presented, &e)) {
        return Err(PageError::Domain(Error::unauthenticated(
            "The sign-out did not come from this site's page. Use the Sign out button.",
        )));
    }
    session::end(&state, cookie_value).await?;
    let clear = session::cookie(&state, "", 0);
    let signed_out = public(&state, SIGNED_OUT_PATH);
    if let Some(oidc) = state.config.oidc.as_ref()
        && let Ok(metadata) = discover(oidc, false).await
        && let Some(end) = metadata.additional_metadata().end_session_endpoint.as_ref()
    {
        // The provider's session too (RP-initiated logout), coming back to
        // our signed-out page.
        let mut url = end.url().clone();
        url.query_pairs_mut()
            .append_pair("client_id", &oidc.client_id);
        if let Ok(back) = PostLogoutRedirectUrl::new(signed_out) {
            url.query_pairs_mut()
                .append_pair("post_logout_redirect_uri", back.as_str());
        }
        let mut page = crate::page::onward_page(
            "Signing you out",
            "You are signed out of KPI Integrations. Your identity provider signs you out next.",
            url.as_str(),
        );
        if let Ok(v) = HeaderValue::from_str(&clear) {
            page.headers_mut().append(header::SET_COOKIE, v);
        }
        return Ok(page);
    }
    Ok(redirect(&signed_out, &[clear]))
}

/// `GET /auth/signed-out`: where sign-out ends.
pub async fn signed_out(State(state): State<AppState>) -> Response {
    let sign_in = state.config.oidc.is_some();
    crate::page::message_page(
        StatusCode::OK,
        "You are signed out",
        "You signed out of KPI Integrations.",
        sign_in.then_some(("/auth/login", "Sign in again")),
    )
}
