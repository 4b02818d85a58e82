//! Identity providers for the sign-in tests.
//!
//! * [`OidcProvider`]: a real OpenID Provider (the npm `oidc-provider`,
//!   `tests/oidc/provider.mjs`), started on a free port the way moto is.
//! * [`ForgingProvider`]: a provider of our own that answers the code
//!   exchange with an ID token made wrong on purpose (another nonce, audience
//!   or issuer, expired, unsigned, signed by a key outside its JWKS), which no
//!   real provider would send.
//!
//! And [`sign_in`]: a browser (a cookie-keeping client) walking through the
//! provider's login and consent forms.

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

/// The pages' client at the test providers.
pub const CLIENT_ID: &str = "kpi-pages";
pub const CLIENT_SECRET: &str = "kpi-pages-client-secret-7f3a";

/// `oidc-provider` in a Node.js process, killed on drop.
pub struct OidcProvider {
    pub issuer: String,
    child: Child,
    _stdin: ChildStdin,
}

impl Drop for OidcProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The provider started, waiting for its clients (they name the app, which
/// needs the issuer first).
pub struct StartingProvider {
    pub issuer: String,
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<std::process::ChildStdout>,
}

impl OidcProvider {
    /// Starts the provider (`make deps` installs it into `tests/oidc`).
    pub fn start() -> StartingProvider {
        let dir = crate::template::root().join("tests/oidc");
        assert!(
            dir.join("node_modules/oidc-provider").exists(),
            "oidc-provider is not installed: run `make deps` (npm ci --prefix tests/oidc)"
        );
        // Its own complaints go to a file, read when a test fails.
        let log =
            std::env::temp_dir().join(format!("kpi-oidc-provider-{}.log", std::process::id()));
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(
                std::fs::File::create(&log)
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start node tests/oidc/provider.mjs");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout
            .read_line(&mut line)
            .expect("the provider's first line");
        let issuer = serde_json::from_str::<Value>(&line)
            .ok()
            .and_then(|v| v["issuer"].as_str().map(str::to_owned))
            .unwrap_or_else(|| panic!("the provider said {line:?}"));
        StartingProvider {
            issuer,
            child,
            stdin,
            stdout,
        }
    }
}

impl StartingProvider {
    /// Registers the pages' client of the app at `app_base` (and `public`
    /// clients: their ids, no secret) and the accounts, then serves.
    pub fn serve(mut self, app_bases: &[&str], accounts: Value) -> OidcProvider {
        let clients: Vec<Value> = app_bases
            .iter()
            .enumerate()
            .map(|(n, base)| {
                json!({
                    "client_id": if n == 0 { CLIENT_ID.to_owned() } else { format!("{CLIENT_ID}-{n}") },
                    "client_secret": CLIENT_SECRET,
                    "redirect_uris": [format!("{base}/auth/callback")],
                    "post_logout_redirect_uris": [format!("{base}/auth/signed-out")],
                    "grant_types": ["authorization_code"],
                    "response_types": ["code"],
                })
            })
            .collect();
        let config = json!({ "clients": clients, "accounts": accounts });
        writeln!(self.stdin, "{config}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the provider said {line:?}");
        OidcProvider {
            issuer: self.issuer,
            child: self.child,
            _stdin: self.stdin,
        }
    }
}

/// The hidden and named fields and the action of the first form in `html`.
fn form(html: &str) -> Option<(String, Vec<(String, String)>)> {
    let start = html.find("<form")?;
    let html = &html[start..];
    let attr = |tag: &str, name: &str| -> Option<String> {
        let key = format!("{name}=\"");
        let at = tag.find(&key)? + key.len();
        Some(tag[at..].split('"').next()?.replace("&amp;", "&"))
    };
    let action = attr(&html[..html.find('>')?], "action")?;
    let end = html.find("</form>").unwrap_or(html.len());
    let mut fields = Vec::new();
    for input in html[..end].split("<input").skip(1) {
        let tag = &input[..input.find('>').unwrap_or(input.len())];
        if let (Some(name), Some(value)) = (attr(tag, "name"), attr(tag, "value")) {
            fields.push((name, value));
        }
    }
    Some((action, fields))
}

/// Where a redirect goes, absolute.
pub fn location(response: &reqwest::Response) -> Option<String> {
    let to = response.headers().get("location")?.to_str().ok()?;
    Some(response.url().join(to).ok()?.to_string())
}

/// Follows redirects from `url` until a page answers, or until a redirect
/// would leave for a URL that starts with `stop_at` (returned unvisited).
pub async fn follow(
    browser: &reqwest::Client,
    url: &str,
    stop_at: &str,
) -> (String, reqwest::Response) {
    let mut url = url.to_owned();
    for _ in 0..20 {
        let response = browser.get(&url).send().await.unwrap();
        match location(&response) {
            Some(next) if response.status().is_redirection() => {
                if next.starts_with(stop_at) {
                    return (next, response);
                }
                url = next;
            }
            _ => return (url, response),
        }
    }
    panic!("too many redirects from {url}");
}

/// What [`sign_in`] ended with.
pub struct SignedIn {
    /// The app's callback URL the provider sent the browser to.
    pub callback: String,
    /// How many of the provider's forms the browser filled in (none when the
    /// provider still had a session).
    pub forms: usize,
}

/// Starts a sign-in at the app, signs in at the provider as `login` (and
/// consents, when asked), and stops at the app's callback (not visited).
/// `consent: false` cancels at the provider instead.
pub async fn sign_in(
    browser: &reqwest::Client,
    app_base: &str,
    return_to: &str,
    login: &str,
    consent: bool,
) -> SignedIn {
    let start = url::Url::parse_with_params(
        &format!("{app_base}/auth/login"),
        [("return_to", return_to)],
    )
    .unwrap()
    .to_string();
    let callback_prefix = format!("{app_base}/auth/callback");
    let (mut url, mut page) = follow(browser, &start, &callback_prefix).await;
    for forms in 0..6 {
        if url.starts_with(&callback_prefix) {
            return SignedIn {
                callback: url,
                forms,
            };
        }
        let html = page.text().await.unwrap();
        let (action, mut fields) =
            form(&html).unwrap_or_else(|| panic!("no form at {url}: {html:.400}"));
        let prompt = fields
            .iter()
            .find(|(k, _)| k == "prompt")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if !consent {
            let abort = format!("{}/abort", action.trim_end_matches('/'));
            let (next, response) = follow(browser, &abort, &callback_prefix).await;
            url = next;
            page = response;
            continue;
        }
        if prompt == "login" {
            fields.push(("login".into(), login.into()));
            fields.push(("password".into(), "any password".into()));
        }
        let response = browser.post(&action).form(&fields).send().await.unwrap();
        let next =
            location(&response).unwrap_or_else(|| panic!("the {prompt} form did not redirect"));
        let (n, p) = follow(browser, &next, &callback_prefix).await;
        if n.starts_with(&callback_prefix) {
            return SignedIn {
                callback: n,
                forms: forms + 1,
            };
        }
        url = n;
        page = p;
    }
    panic!("the provider never sent the browser back");
}

/// The session cookie a response sets (`kpi_session`, whatever its prefix).
pub fn session_cookie(response: &reqwest::Response) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.contains("kpi_session=") && !c.contains("Max-Age=0"))
        .map(str::to_owned)
}

/// How the forging provider answers the code exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Forgery {
    /// A correct ID token (the control: it must sign in).
    None,
    WrongNonce,
    OtherAudience,
    OtherIssuer,
    Expired,
    Unsigned,
    ForeignKey,
}

struct Forger {
    issuer: String,
    mode: Mutex<Forgery>,
    /// The nonce of the attempt under way (read from the authorization URL).
    nonce: Mutex<String>,
    sub_claims: Value,
    key: EncodingKey,
    foreign: EncodingKey,
    jwk: Value,
}

/// A provider that signs what the test asks it to.
pub struct ForgingProvider {
    pub issuer: String,
    forger: Arc<Forger>,
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

fn ec_key() -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]),
        "kid": "forger-1", "alg": "ES256", "use": "sig"});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

impl ForgingProvider {
    /// Serves discovery, its JWKS and a token endpoint on a free port; the
    /// ID tokens name `claims` besides the standard ones.
    pub async fn start(claims: Value) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let issuer = format!("http://{}", listener.local_addr().unwrap());
        let (key, jwk) = ec_key();
        let (foreign, _) = ec_key();
        let forger = Arc::new(Forger {
            issuer: issuer.clone(),
            mode: Mutex::new(Forgery::None),
            nonce: Mutex::new(String::new()),
            sub_claims: claims,
            key,
            foreign,
            jwk,
        });
        let f = forger.clone();
        let discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256"],
        });
        let app = axum::Router::new()
            .route(
                "/.well-known/openid-configuration",
                axum::routing::get(move || {
                    let d = discovery.clone();
                    async move { axum::Json(d) }
                }),
            )
            .route(
                "/jwks",
                axum::routing::get({
                    let f = f.clone();
                    move || {
                        let jwk = f.jwk.clone();
                        async move { axum::Json(json!({ "keys": [jwk] })) }
                    }
                }),
            )
            .route(
                "/token",
                axum::routing::post(move || {
                    let f = f.clone();
                    async move {
                        axum::Json(json!({
                            "access_token": "forged-access-token",
                            "token_type": "Bearer",
                            "expires_in": 300,
                            "id_token": f.id_token(),
                        }))
                    }
                }),
            );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { issuer, forger }
    }

    /// The next exchange answers with `mode`, for the attempt whose
    /// authorization URL was `authorize_url`.
    pub fn arm(&self, mode: Forgery, authorize_url: &str) {
        let url = url::Url::parse(authorize_url).unwrap();
        let nonce = url
            .query_pairs()
            .find(|(k, _)| k == "nonce")
            .map(|(_, v)| v.into_owned())
            .expect("the authorization URL has a nonce");
        *self.forger.nonce.lock().unwrap() = nonce;
        *self.forger.mode.lock().unwrap() = mode;
    }
}

impl Forger {
    fn id_token(&self) -> String {
        let mode = *self.mode.lock().unwrap();
        let now = chrono::Utc::now().timestamp();
        let mut claims = json!({
            "iss": self.issuer,
            "sub": "forged-user",
            "aud": CLIENT_ID,
            "iat": now,
            "exp": now + 300,
            "nonce": *self.nonce.lock().unwrap(),
        });
        for (k, v) in self.sub_claims.as_object().into_iter().flatten() {
            claims[k] = v.clone();
        }
        match mode {
            Forgery::None | Forgery::Unsigned | Forgery::ForeignKey => {}
            Forgery::WrongNonce => claims["nonce"] = json!("another-nonce"),
            Forgery::OtherAudience => claims["aud"] = json!("another-client"),
            Forgery::OtherIssuer => claims["iss"] = json!("https://evil.example"),
            Forgery::Expired => {
                claims["iat"] = json!(now - 7200);
                claims["exp"] = json!(now - 3600);
            }
        }
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some("forger-1".into());
        match mode {
            Forgery::Unsigned => {
                let head = b64(br#"{"alg":"none","typ":"JWT","kid":"forger-1"}"#);
                format!("{head}.{}.", b64(claims.to_string().as_bytes()))
            }
            Forgery::ForeignKey => jsonwebtoken::encode(&header, &claims, &self.foreign).unwrap(),
            _ => jsonwebtoken::encode(&header, &claims, &self.key).unwrap(),
        }
    }
}
