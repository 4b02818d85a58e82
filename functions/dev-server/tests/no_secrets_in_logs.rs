//! A full session against the dev server binary — dev login, GA4 and Meta
//! connects through the sandbox, a Resend key, options, disconnects — with every
//! log line captured at the most verbose level, then searched for secrets.

use std::io::Read as _;
use std::process::{Command, Stdio};

use kpi_tests::flows::{consent, dev_login, finish, param};
use kpi_tests::moto::{remove_dir, temp_dir};
use serde_json::json;

const DEV_SECRET: &str = "dev-secret-canary-7f3a9b";
const RESEND_KEY: &str = "re_canary_5e1d2c3b4a";

#[tokio::test]
async fn no_secret_reaches_a_log_line_an_error_body_or_a_redirect() {
    let dir = temp_dir("kpi-logs");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dev-server"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KPI_LISTEN", format!("127.0.0.1:{port}"))
        .env("KPI_AUTH_DEV_SECRET", DEV_SECRET)
        .env("KPI_SANDBOX", "on")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until it answers.
    let http = kpi_tests::client();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    let browser = kpi_tests::client_builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    dev_login(&browser, &base, "demo").await;
    let mut seen_secrets: Vec<String> = vec![DEV_SECRET.into(), RESEND_KEY.into()];
    let mut bodies_and_redirects = String::new();

    for provider in ["ga4", "meta_ads"] {
        let back = consent(&browser, &base, provider, "workspace=demo", "allow", true).await;
        let url = url::Url::parse(&back.callback).unwrap();
        for (k, v) in url.query_pairs() {
            if k == "code" || k == "state" {
                seen_secrets.push(v.into_owned());
            }
        }
        let (status, pairs, target) = finish(&browser, &base, &back.callback).await;
        assert_eq!(status, 303);
        bodies_and_redirects.push_str(&target);
        let id = param(&pairs, "integration").unwrap().to_owned();
        // A replay produces an error page: it must not echo the code either.
        let (_, _, page) = finish(&browser, &base, &back.callback).await;
        bodies_and_redirects.push_str(&page);
        let token = {
            let resp = browser
                .get(format!("{base}/dev/login?workspace=demo"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 303);
            resp
        };
        drop(token);
        let options = browser
            .get(format!(
                "{base}/v1/workspaces/demo/integrations/{id}/options"
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bodies_and_redirects.push_str(&options);
    }

    // A Resend key, a refused one, and failing provider calls.
    let csrf_login = browser
        .get(format!("{base}/dev/login?workspace=demo"))
        .send()
        .await
        .unwrap();
    let csrf = csrf_login
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|v| v.strip_prefix("kpi_csrf="))
        .map(|v| v.split(';').next().unwrap().to_owned())
        .unwrap();
    for key in [RESEND_KEY, "re_bad!"] {
        let body = browser
            .post(format!("{base}/v1/workspaces/demo/integrations"))
            .header("x-csrf-token", &csrf)
            .json(&json!({"provider": "resend", "api_key": key}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        bodies_and_redirects.push_str(&body);
    }
    http.post(format!("{base}/sandbox/_control/faults"))
        .json(&json!({"google_revoke": 503, "meta_graph": 500}))
        .send()
        .await
        .unwrap();
    let list: serde_json::Value = browser
        .get(format!("{base}/v1/workspaces/demo/integrations"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for item in list["items"].as_array().unwrap() {
        let id = item["id"].as_str().unwrap();
        let resp = browser
            .delete(format!("{base}/v1/workspaces/demo/integrations/{id}"))
            .header("x-csrf-token", &csrf)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        bodies_and_redirects.push_str(&resp.text().await.unwrap());
    }
    bodies_and_redirects.push_str(&list.to_string());

    let _ = child.kill();
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    remove_dir(&dir);

    assert!(logs.lines().count() > 20, "trace logging was captured");
    // Tokens the sandbox issues, the sandbox app secrets, and the values seen above.
    let mut needles: Vec<String> = [
        "ya29.sbx-",
        "1//sbx-",
        "EAAsbx",
        "sandbox-google-secret",
        "sandbox-meta-secret",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    needles.extend(seen_secrets);
    for needle in &needles {
        assert!(
            !logs.contains(needle.as_str()),
            "secret {needle:?} in the logs"
        );
        assert!(
            !bodies_and_redirects.contains(needle.as_str()),
            "secret {needle:?} in a response or redirect"
        );
    }
}

/// Signing in to the pages at a real OpenID Provider, then out, with trace
/// logging: neither the code, the ID token, the client secret nor the
/// session id reaches a log line, and the cookie holds only the session id.
#[tokio::test]
async fn signing_in_leaves_no_code_token_or_secret_in_the_logs() {
    use kpi_tests::oidc::{self, CLIENT_ID, CLIENT_SECRET, OidcProvider};
    let dir = temp_dir("kpi-signin-logs");
    let starting = OidcProvider::start();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dev-server"))
        .current_dir(&dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("KPI_LISTEN", format!("127.0.0.1:{port}"))
        .env("KPI_OIDC_ISSUER", &starting.issuer)
        .env("KPI_OIDC_CLIENT_ID", CLIENT_ID)
        .env("KPI_OIDC_CLIENT_SECRET", CLIENT_SECRET)
        .env("KPI_SANDBOX", "on")
        .env("RUST_LOG", "trace")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let _provider = starting.serve(
        &[&base],
        json!({"alice": {"workspaces": ["demo"], "email": "alice@demo.test"}}),
    );
    let http = kpi_tests::client();
    for _ in 0..100 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let browser = kpi_tests::client_builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let signed = oidc::sign_in(
        &browser,
        &base,
        "/settings/integrations?workspace=demo",
        "alice",
        true,
    )
    .await;
    let code = url::Url::parse(&signed.callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .into_owned();
    let back = browser.get(&signed.callback).send().await.unwrap();
    let cookie = oidc::session_cookie(&back).expect("signed in");
    let session_id = cookie
        .split(';')
        .next()
        .unwrap()
        .split_once('=')
        .unwrap()
        .1
        .to_owned();
    assert_eq!(
        session_id.len(),
        43,
        "only our own id in the cookie: {cookie}"
    );
    assert!(!cookie.contains(&code) && !cookie.contains(CLIENT_SECRET) && !cookie.contains("eyJ"));
    let page = browser
        .get(format!("{base}/settings/integrations?workspace=demo"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let csrf = page
        .split("name=\"csrf-token\" content=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap()
        .to_owned();
    let out = browser
        .post(format!("{base}/auth/logout"))
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 200);
    let redirect = out.text().await.unwrap();

    let _ = child.kill();
    let mut logs = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    let _ = child.wait();
    remove_dir(&dir);

    assert!(logs.lines().count() > 20, "trace logging was captured");
    let basic = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"))
    };
    for needle in [
        code.as_str(),
        CLIENT_SECRET,
        basic.as_str(),
        session_id.as_str(),
        "eyJ",
    ] {
        assert!(!logs.contains(needle), "{needle:?} in the logs");
        assert!(
            !redirect.contains(needle),
            "{needle:?} in the sign-out redirect"
        );
    }
}
