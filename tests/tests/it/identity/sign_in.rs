//! Signing in to the pages at an OpenID Connect provider, and what is refused.

// ---- Signing in to the pages (OpenID Connect) ----------------------------

use kpi_tests::app::TestApp;
use kpi_tests::oidc::{self, CLIENT_ID, CLIENT_SECRET, Forgery, ForgingProvider, OidcProvider};
use serde_json::{Value, json};

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
