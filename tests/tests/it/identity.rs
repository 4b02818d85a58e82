//! JWT verification with keys from a JWKS endpoint: RS256 and ES256, issuer,
//! audience, expiry, unknown `kid` refetch, and algorithm confusion.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::response::IntoResponse as _;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use kpi_app::auth::{Authenticator, JwksSettings};
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair as _};
use serde_json::{Value, json};

const ISSUER: &str = "https://auth.example.test/";
const AUDIENCE: &str = "kpi-integrations";

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

struct Issuer {
    jwks: Arc<Mutex<Vec<Value>>>,
    fetches: Arc<AtomicUsize>,
    /// While set, the JWKS endpoint answers 503.
    down: Arc<AtomicBool>,
    url: String,
}

async fn jwks_server() -> Issuer {
    let jwks = Arc::new(Mutex::new(Vec::new()));
    let fetches = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let (keys, count, is_down) = (jwks.clone(), fetches.clone(), down.clone());
    let app = axum::Router::new().route(
        "/.well-known/jwks.json",
        axum::routing::get(move || {
            let (keys, count, is_down) = (keys.clone(), count.clone(), is_down.clone());
            async move {
                count.fetch_add(1, Ordering::SeqCst);
                if is_down.load(Ordering::SeqCst) {
                    return axum::http::StatusCode::SERVICE_UNAVAILABLE.into_response();
                }
                axum::Json(json!({ "keys": keys.lock().unwrap().clone() })).into_response()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Issuer {
        jwks,
        fetches,
        down,
        url: format!("http://{addr}/.well-known/jwks.json"),
    }
}

fn authenticator(issuer: &Issuer) -> Authenticator {
    Authenticator::new(
        None,
        Some(JwksSettings::new(
            issuer.url.parse().unwrap(),
            ISSUER.into(),
            AUDIENCE.into(),
        )),
        kpi_tests::client(),
    )
    .with_min_refresh(Duration::ZERO)
}

fn claims(iss: &str, aud: &str, exp_offset: i64) -> Value {
    json!({
        "sub": "user-42",
        "workspaces": ["acme", "not valid!"],
        "platform_admin": false,
        "iss": iss,
        "aud": aud,
        "exp": chrono::Utc::now().timestamp() + exp_offset,
    })
}

fn rsa_key() -> (EncodingKey, Value) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures");
    let der = std::fs::read(dir.join("rsa-test-key.der")).unwrap();
    let jwk: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("rsa-test-key.jwk.json")).unwrap())
            .unwrap();
    (EncodingKey::from_rsa_der(&der), jwk)
}

fn ec_key(kid: &str) -> (EncodingKey, Value) {
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..65]), "kid": kid, "alg": "ES256", "use": "sig"});
    (EncodingKey::from_ec_der(pkcs8.as_ref()), jwk)
}

fn sign(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

#[tokio::test]
async fn rs256_and_es256_tokens_from_the_jwks_are_accepted() {
    let issuer = jwks_server().await;
    let (rsa, rsa_jwk) = rsa_key();
    let (ec, ec_jwk) = ec_key("ec-1");
    *issuer.jwks.lock().unwrap() = vec![rsa_jwk, ec_jwk];
    let auth = authenticator(&issuer);

    let p = auth
        .verify(&sign(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            &claims(ISSUER, AUDIENCE, 300),
        ))
        .await
        .unwrap();
    assert_eq!(p.sub, "user-42");
    assert_eq!(p.workspaces.len(), 1, "invalid workspace ids are dropped");
    let p = auth
        .verify(&sign(
            Algorithm::ES256,
            "ec-1",
            &ec,
            &claims(ISSUER, AUDIENCE, 300),
        ))
        .await
        .unwrap();
    assert_eq!(p.workspaces[0].as_str(), "acme");
    for _ in 0..5 {
        auth.verify(&sign(
            Algorithm::ES256,
            "ec-1",
            &ec,
            &claims(ISSUER, AUDIENCE, 300),
        ))
        .await
        .unwrap();
    }
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1, "keys are cached");
}

#[tokio::test]
async fn wrong_issuer_audience_expiry_key_or_algorithm_is_refused() {
    let issuer = jwks_server().await;
    let (rsa, rsa_jwk) = rsa_key();
    *issuer.jwks.lock().unwrap() = vec![rsa_jwk];
    let auth = authenticator(&issuer);
    let bad = [
        sign(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            &claims("https://evil.example/", AUDIENCE, 300),
        ),
        sign(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            &claims(ISSUER, "another-app", 300),
        ),
        sign(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            &claims(ISSUER, AUDIENCE, -3600),
        ),
        // Signed by a key the issuer does not publish, under a published kid.
        sign(
            Algorithm::ES256,
            "rsa-1",
            &ec_key("x").0,
            &claims(ISSUER, AUDIENCE, 300),
        ),
        // HS256 with no dev secret configured (algorithm confusion).
        sign(
            Algorithm::HS256,
            "rsa-1",
            &EncodingKey::from_secret(b"public"),
            &claims(ISSUER, AUDIENCE, 300),
        ),
    ];
    for token in bad {
        assert_eq!(
            auth.verify(&token).await.unwrap_err().code(),
            "unauthenticated"
        );
    }
    // Within the leeway an expired token still passes.
    auth.verify(&sign(
        Algorithm::RS256,
        "rsa-1",
        &rsa,
        &claims(ISSUER, AUDIENCE, -10),
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn an_unknown_kid_triggers_one_refetch() {
    let issuer = jwks_server().await;
    let (old, old_jwk) = ec_key("old");
    *issuer.jwks.lock().unwrap() = vec![old_jwk.clone()];
    let auth = authenticator(&issuer);
    auth.verify(&sign(
        Algorithm::ES256,
        "old",
        &old,
        &claims(ISSUER, AUDIENCE, 300),
    ))
    .await
    .unwrap();
    // The issuer rotates in a new key.
    let (new, new_jwk) = ec_key("new");
    *issuer.jwks.lock().unwrap() = vec![old_jwk, new_jwk];
    let r = auth
        .verify(&sign(
            Algorithm::ES256,
            "new",
            &new,
            &claims(ISSUER, AUDIENCE, 300),
        ))
        .await;
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 2);
    r.unwrap();
    let (stray, _) = ec_key("stray");
    assert!(
        auth.verify(&sign(
            Algorithm::ES256,
            "stray",
            &stray,
            &claims(ISSUER, AUDIENCE, 300)
        ))
        .await
        .is_err()
    );
}

#[tokio::test]
async fn an_issuer_outage_is_ridden_out_on_known_keys_with_few_fetches() {
    let issuer = jwks_server().await;
    let (key, jwk) = ec_key("k1");
    *issuer.jwks.lock().unwrap() = vec![jwk];
    // Keys count as old at once, and refetches are spaced by at least 2 s.
    let auth = Arc::new(
        authenticator(&issuer)
            .with_min_refresh(Duration::from_secs(2))
            .with_max_age(Duration::ZERO),
    );
    let good = sign(Algorithm::ES256, "k1", &key, &claims(ISSUER, AUDIENCE, 300));
    auth.verify(&good).await.unwrap();
    assert_eq!(issuer.fetches.load(Ordering::SeqCst), 1);

    issuer.down.store(true, Ordering::SeqCst);
    // The issuer is down: known keys keep verifying; random kids are refused
    // without a fetch each.
    let mut checks = Vec::new();
    for n in 0..50 {
        let auth = auth.clone();
        let token = if n % 2 == 0 {
            good.clone()
        } else {
            sign(
                Algorithm::ES256,
                &format!("random-{n}"),
                &key,
                &claims(ISSUER, AUDIENCE, 300),
            )
        };
        checks.push(tokio::spawn(async move {
            (n, auth.verify(&token).await.is_ok())
        }));
    }
    for check in checks {
        let (n, ok) = check.await.unwrap();
        assert_eq!(ok, n % 2 == 0, "request {n}");
    }
    assert!(
        issuer.fetches.load(Ordering::SeqCst) <= 2,
        "one attempt per back-off period, not one per request: {}",
        issuer.fetches.load(Ordering::SeqCst)
    );
}

#[tokio::test]
async fn claim_names_are_configurable_and_lists_may_be_strings() {
    let issuer = jwks_server().await;
    let (rsa, rsa_jwk) = rsa_key();
    *issuer.jwks.lock().unwrap() = vec![rsa_jwk];
    // Cognito: custom attributes are strings; Auth0: namespaced claims.
    let auth = Authenticator::new(
        None,
        Some(
            JwksSettings::new(issuer.url.parse().unwrap(), ISSUER.into(), AUDIENCE.into())
                .with_claims(kpi_app::auth::ClaimNames {
                    workspaces: "custom:workspaces".into(),
                    admin: "https://kpi.example.com/operator".into(),
                }),
        ),
        kpi_tests::client(),
    )
    .with_min_refresh(Duration::ZERO);
    let exp = chrono::Utc::now().timestamp() + 300;
    for (workspaces, admin, want_ws, want_admin) in [
        (
            json!("acme, beta"),
            json!("true"),
            vec!["acme", "beta"],
            true,
        ),
        (json!("acme beta"), json!(true), vec!["acme", "beta"], true),
        (json!(["acme"]), json!(false), vec!["acme"], false),
        (json!("acme,,bad!"), json!("false"), vec!["acme"], false),
    ] {
        let token = sign(
            Algorithm::RS256,
            "rsa-1",
            &rsa,
            &json!({"sub": "u1", "iss": ISSUER, "aud": AUDIENCE, "exp": exp,
                "custom:workspaces": workspaces,
                "https://kpi.example.com/operator": admin,
                // The default names mean nothing here.
                "workspaces": ["other"], "platform_admin": true}),
        );
        let p = auth.verify(&token).await.unwrap();
        let got: Vec<&str> = p.workspaces.iter().map(|w| w.as_str()).collect();
        assert_eq!(got, want_ws, "{workspaces}");
        assert_eq!(p.platform_admin, want_admin, "{admin}");
    }
}

#[tokio::test]
async fn a_token_without_aud_passes_on_its_client_id_only() {
    let issuer = jwks_server().await;
    let (rsa, rsa_jwk) = rsa_key();
    *issuer.jwks.lock().unwrap() = vec![rsa_jwk];
    let auth = authenticator(&issuer);
    let exp = chrono::Utc::now().timestamp() + 300;
    // A Cognito access token: `client_id`, `token_use`, no `aud`.
    let access = json!({"sub": "u1", "iss": ISSUER, "client_id": AUDIENCE, "token_use": "access",
        "exp": exp, "workspaces": "acme"});
    let p = auth
        .verify(&sign(Algorithm::RS256, "rsa-1", &rsa, &access))
        .await
        .unwrap();
    assert_eq!(p.workspaces[0].as_str(), "acme");
    for claims in [
        // Another app's client.
        json!({"sub": "u1", "iss": ISSUER, "client_id": "another-app", "exp": exp}),
        // Neither.
        json!({"sub": "u1", "iss": ISSUER, "exp": exp}),
        // An `aud` that is not ours is not rescued by a matching client_id.
        json!({"sub": "u1", "iss": ISSUER, "aud": "another-app", "client_id": AUDIENCE, "exp": exp}),
        // Still no issuer check skipped.
        json!({"sub": "u1", "iss": "https://evil.example/", "client_id": AUDIENCE, "exp": exp}),
        // Nor expiry.
        json!({"sub": "u1", "iss": ISSUER, "client_id": AUDIENCE, "exp": exp - 3600}),
    ] {
        let e = auth
            .verify(&sign(Algorithm::RS256, "rsa-1", &rsa, &claims))
            .await
            .unwrap_err();
        assert_eq!(e.code(), "unauthenticated", "{claims}");
    }
}

// ---- Signing in to the pages (OpenID Connect) ----------------------------

use kpi_tests::app::TestApp;
use kpi_tests::oidc::{self, CLIENT_ID, CLIENT_SECRET, Forgery, ForgingProvider, OidcProvider};

/// The accounts of the test provider: a member of acme, and an operator
/// whose workspaces come as a Cognito-style string attribute.
fn accounts() -> Value {
    json!({
        "alice": {"workspaces": ["acme"], "email": "alice@acme.test", "email_verified": true},
        "olga": {"custom:workspaces": "acme, beta", "platform_admin": "true"},
    })
}

/// A client of the test provider for each app: ids `kpi-pages`, `kpi-pages-1`, ….
fn client_vars<'a>(
    issuer: &'a str,
    n: usize,
    extra: &[(&'a str, &'a str)],
) -> Vec<(String, String)> {
    let mut vars = vec![
        ("KPI_OIDC_ISSUER".to_owned(), issuer.to_owned()),
        (
            "KPI_OIDC_CLIENT_ID".to_owned(),
            if n == 0 {
                CLIENT_ID.to_owned()
            } else {
                format!("{CLIENT_ID}-{n}")
            },
        ),
        (
            "KPI_OIDC_CLIENT_SECRET".to_owned(),
            CLIENT_SECRET.to_owned(),
        ),
    ];
    vars.extend(
        extra
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    vars
}

fn borrowed(vars: &[(String, String)]) -> Vec<(&str, &str)> {
    vars.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[tokio::test]
async fn pages_sign_in_at_the_identity_provider_and_out_again() {
    // The apps need the issuer, the provider their redirect URIs: the apps
    // are made first with the issuer, the provider learns them after.
    let starting = OidcProvider::start();
    let issuer = starting.issuer.clone();
    let dev = TestApp::spawn_with(&borrowed(&client_vars(&issuer, 0, &[]))).await;
    let ui = TestApp::spawn_ui_function(&borrowed(&client_vars(&issuer, 1, &[]))).await;
    // Claims under configured names, the workspaces as one string (Cognito).
    let named = TestApp::spawn_with(&borrowed(&client_vars(
        &issuer,
        2,
        &[("KPI_AUTH_WORKSPACES_CLAIM", "custom:workspaces")],
    )))
    .await;
    let _provider = starting.serve(&[&dev.base, &ui.base, &named.base], accounts());

    for (name, app) in [("dev server", &dev), ("ui function", &ui)] {
        let browser = app.browser();
        // A page without a session sends the browser to sign in, and back.
        let page = browser
            .get(app.url("/settings/integrations?workspace=acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 303, "{name}");
        let to = oidc::location(&page).unwrap();
        assert!(
            to.starts_with(&app.url("/auth/login?return_to=")),
            "{name}: {to}"
        );

        let signed = oidc::sign_in(
            &browser,
            &app.base,
            "/settings/integrations?workspace=acme",
            "alice",
            true,
        )
        .await;
        let back = browser.get(&signed.callback).send().await.unwrap();
        assert_eq!(back.status(), 303, "{name}: {}", back.text().await.unwrap());
        assert_eq!(
            oidc::location(&back).unwrap(),
            app.url("/settings/integrations?workspace=acme"),
            "{name}"
        );
        let cookie = oidc::session_cookie(&back).expect("a session cookie");
        assert!(
            cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax"),
            "{cookie}"
        );
        // Only our own random id: no code, no token, no secret.
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        assert_eq!(value.len(), 43, "{cookie}");
        let code = url::Url::parse(&signed.callback)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "code")
            .unwrap()
            .1
            .into_owned();
        assert!(!cookie.contains(&code) && !cookie.contains(CLIENT_SECRET));

        // Signed in: the page of acme, with the session's CSRF token.
        let page = browser
            .get(app.url("/settings/integrations?workspace=acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{name}");
        assert!(page.text().await.unwrap().contains("name=\"csrf-token\""));
        // The session ends (its hour is up): the page sends the browser to the
        // provider, which still knows it: back without a form, signed in again.
        app.server
            .state
            .store
            .delete_ephemeral(&kpi_app::session::store_key("session", &value))
            .await
            .unwrap();
        let again = oidc::sign_in(
            &browser,
            &app.base,
            "/settings/integrations?workspace=acme",
            "alice",
            true,
        )
        .await;
        assert_eq!(again.forms, 0, "{name}: signed in again silently");
        let back = browser.get(&again.callback).send().await.unwrap();
        let cookie = oidc::session_cookie(&back).expect("a new session");
        let value = cookie
            .split(';')
            .next()
            .unwrap()
            .split_once('=')
            .unwrap()
            .1
            .to_owned();
        let page = browser
            .get(app.url("/settings/integrations?workspace=acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(page.status(), 200, "{name}");
        let html = page.text().await.unwrap();
        let csrf = html
            .split("name=\"csrf-token\" content=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .unwrap()
            .to_owned();
        // Another workspace is not alice's.
        let other = browser
            .get(app.url("/settings/integrations?workspace=beta"))
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), 404, "{name}");

        // A sign-out without the session's token (another site's form) changes nothing.
        let forged = browser
            .post(app.url("/auth/logout"))
            .form(&[("csrf", "not-the-token")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 401, "{name}");
        let still = browser
            .get(app.url("/settings/integrations?workspace=acme"))
            .send()
            .await
            .unwrap();
        assert_eq!(still.status(), 200, "{name}");

        // Sign out: the session ends here and at the provider.
        let out = browser
            .post(app.url("/auth/logout"))
            .form(&[("csrf", csrf.as_str())])
            .send()
            .await
            .unwrap();
        assert_eq!(out.status(), 200, "{name}");
        let cleared = out
            .headers()
            .get_all("set-cookie")
            .iter()
            .any(|c| c.to_str().unwrap().contains("kpi_session=;"));
        assert!(cleared, "{name}: the cookie is cleared");
        // On to the provider's end of session (a page, not a redirect: the
        // pages' CSP keeps a form's redirects on this origin).
        let html = out
            .text()
            .await
            .unwrap()
            .replace("&#x2f;", "/")
            .replace("&amp;", "&");
        let onward = format!("url={issuer}/session/end?");
        assert!(html.contains(&onward), "{name}: {html}");
        assert!(html.contains("post_logout_redirect_uri="), "{html}");
        let gone = app
            .browser()
            .get(app.url("/settings/integrations?workspace=acme"))
            .header("cookie", format!("kpi_session={value}"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            gone.status(),
            303,
            "{name}: a copied cookie ends with the session"
        );
    }

    // An operator whose workspaces come as one string under a configured name.
    let browser = named.browser();
    let signed = oidc::sign_in(&browser, &named.base, "/admin/sync-jobs", "olga", true).await;
    let back = browser.get(&signed.callback).send().await.unwrap();
    assert_eq!(
        oidc::location(&back).unwrap(),
        named.url("/admin/sync-jobs")
    );
    for path in ["/admin/sync-jobs", "/settings/integrations?workspace=beta"] {
        let page = browser.get(named.url(path)).send().await.unwrap();
        assert_eq!(page.status(), 200, "{path}");
    }
}

/// A refused sign-in: a 4xx page that says what to do, and no session.
async fn assert_refused(what: &str, response: reqwest::Response) {
    let status = response.status();
    let cookie = oidc::session_cookie(&response);
    let body = response.text().await.unwrap();
    assert!(status.is_client_error(), "{what}: {status} {body:.300}");
    assert!(cookie.is_none(), "{what}: a session was made");
    assert!(
        body.contains("sign in") || body.contains("Sign in") || body.contains("sign-in"),
        "{what}: {body:.400}"
    );
}

#[tokio::test]
async fn forged_replayed_foreign_and_cancelled_sign_ins_make_no_session() {
    let starting = OidcProvider::start();
    let issuer = starting.issuer.clone();
    let dev = TestApp::spawn_with(&borrowed(&client_vars(&issuer, 0, &[]))).await;
    let ui = TestApp::spawn_ui_function(&borrowed(&client_vars(&issuer, 1, &[]))).await;
    let _provider = starting.serve(&[&dev.base, &ui.base], accounts());

    for (name, app) in [("dev server", &dev), ("ui function", &ui)] {
        let what = |case: &str| format!("{name}: {case}");
        // A return_to off this site never reaches the provider.
        for evil in [
            "//evil.example",
            "https://evil.example/x",
            "/\\evil.example",
        ] {
            let r = app
                .browser()
                .get(
                    url::Url::parse_with_params(&app.url("/auth/login"), [("return_to", evil)])
                        .unwrap(),
                )
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 422, "{}", what(evil));
            assert!(r.headers().get("location").is_none());
        }

        // A forged state (never issued), and one without a code.
        let browser = app.browser();
        assert_refused(
            &what("forged state"),
            browser
                .get(app.url("/auth/callback?code=abc&state=forged-state-value"))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_refused(
            &what("no state"),
            browser
                .get(app.url("/auth/callback?code=abc"))
                .send()
                .await
                .unwrap(),
        )
        .await;

        // A real sign-in, then its callback replayed: the state is spent.
        let signed =
            oidc::sign_in(&browser, &app.base, "/settings/integrations", "alice", true).await;
        let first = browser.get(&signed.callback).send().await.unwrap();
        assert!(
            oidc::session_cookie(&first).is_some(),
            "{}",
            what("control")
        );
        assert_refused(
            &what("replayed code"),
            app.browser().get(&signed.callback).send().await.unwrap(),
        )
        .await;
        assert_refused(
            &what("replayed in the same browser"),
            browser.get(&signed.callback).send().await.unwrap(),
        )
        .await;

        // Finished in another browser (a link sent to a victim): refused, and
        // spent for the first browser too.
        let started_here = app.browser();
        let signed = oidc::sign_in(
            &started_here,
            &app.base,
            "/settings/integrations",
            "alice",
            true,
        )
        .await;
        assert_refused(
            &what("callback in another browser"),
            app.browser().get(&signed.callback).send().await.unwrap(),
        )
        .await;
        assert_refused(
            &what("then in its own"),
            started_here.get(&signed.callback).send().await.unwrap(),
        )
        .await;

        // Consent denied at the provider.
        let cancelled = app.browser();
        let signed = oidc::sign_in(
            &cancelled,
            &app.base,
            "/settings/integrations",
            "alice",
            false,
        )
        .await;
        assert!(
            signed.callback.contains("error=access_denied"),
            "{}",
            signed.callback
        );
        let r = cancelled.get(&signed.callback).send().await.unwrap();
        let body_has_cancelled = {
            let status = r.status();
            let cookie = oidc::session_cookie(&r);
            let body = r.text().await.unwrap();
            assert!(
                status.is_client_error() && cookie.is_none(),
                "{}",
                what("denied")
            );
            body.contains("cancelled")
        };
        assert!(
            body_has_cancelled,
            "{}",
            what("the page says it was cancelled")
        );
    }
}

#[tokio::test]
async fn id_tokens_with_the_wrong_nonce_audience_issuer_expiry_or_signature_are_refused() {
    let forger = ForgingProvider::start(json!({"workspaces": ["acme"]})).await;
    let dev = TestApp::spawn_with(&borrowed(&client_vars(&forger.issuer, 0, &[]))).await;
    let ui = TestApp::spawn_ui_function(&borrowed(&client_vars(&forger.issuer, 0, &[]))).await;
    for (name, app) in [("dev server", &dev), ("ui function", &ui)] {
        for mode in [
            Forgery::WrongNonce,
            Forgery::OtherAudience,
            Forgery::OtherIssuer,
            Forgery::Expired,
            Forgery::Unsigned,
            Forgery::ForeignKey,
            Forgery::None,
        ] {
            let browser = app.browser();
            let start = browser
                .get(app.url("/auth/login?return_to=/settings/integrations"))
                .send()
                .await
                .unwrap();
            let authorize = oidc::location(&start).unwrap();
            assert!(authorize.starts_with(&forger.issuer), "{authorize}");
            for pkce in [
                "code_challenge_method=S256",
                "code_challenge=",
                "nonce=",
                "state=",
            ] {
                assert!(authorize.contains(pkce), "{pkce}: {authorize}");
            }
            forger.arm(mode, &authorize);
            let state = url::Url::parse(&authorize)
                .unwrap()
                .query_pairs()
                .find(|(k, _)| k == "state")
                .unwrap()
                .1
                .into_owned();
            let callback = url::Url::parse_with_params(
                &app.url("/auth/callback"),
                [("code", "forged-code"), ("state", state.as_str())],
            )
            .unwrap();
            let answer = browser.get(callback).send().await.unwrap();
            if mode == Forgery::None {
                // The control: the same provider's honest token signs in.
                assert_eq!(answer.status(), 303, "{name}");
                assert!(oidc::session_cookie(&answer).is_some(), "{name}");
            } else {
                assert_refused(&format!("{name}: {mode:?}"), answer).await;
            }
        }
    }
}
