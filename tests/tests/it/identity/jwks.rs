//! Bearer tokens verified with keys from a JWKS endpoint.

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
