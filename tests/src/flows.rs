//! Browser flows against a running app: dev login and OAuth connect through the
//! sandbox consent page.

use url::Url;

/// Follows one redirect's `Location`, resolved against `base`.
pub fn location(base: &str, resp: &reqwest::Response) -> String {
    let loc = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .unwrap_or_else(|| panic!("no Location on {}", resp.status()))
        .to_str()
        .unwrap();
    Url::parse(base).unwrap().join(loc).unwrap().to_string()
}

/// The hidden inputs of the consent form.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    html.split("<input type=\"hidden\" ")
        .skip(1)
        .map(|chunk| {
            let attr = |name: &str| {
                let start = chunk.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
                let end = start + chunk[start..].find('"').unwrap();
                chunk[start..end]
                    .replace("&quot;", "\"")
                    .replace("&#39;", "'")
                    .replace("&lt;", "<")
                    .replace("&gt;", ">")
                    .replace("&amp;", "&")
            };
            (attr("name"), attr("value"))
        })
        .collect()
}

/// Signs the browser in to `workspace` with the dev login.
pub async fn dev_login(browser: &reqwest::Client, base: &str, workspace: &str) {
    let resp = browser
        .get(format!("{base}/dev/login?workspace={workspace}"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 303);
}

/// What came back to our callback from the consent page.
pub struct ConsentResult {
    /// The callback URL the provider redirected to (with code and state).
    pub callback: String,
}

/// Starts a connect (`start_query` after `?`), answers the sandbox consent page
/// with `decision`, and returns the callback URL the provider sent the browser to.
pub async fn consent(
    browser: &reqwest::Client,
    base: &str,
    provider: &str,
    start_query: &str,
    decision: &str,
    grant_scope: bool,
) -> ConsentResult {
    let start = browser
        .get(format!("{base}/v1/oauth/{provider}/start?{start_query}"))
        .send()
        .await
        .unwrap();
    assert_eq!(start.status(), 303, "start: {:?}", start.text().await);
    let consent_url = location(base, &start);
    let page = browser.get(&consent_url).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    let mut form = hidden_fields(&html);
    form.push(("decision".into(), decision.into()));
    if grant_scope {
        form.push(("grant_analytics".into(), "on".into()));
        form.push(("grant_ads_read".into(), "on".into()));
    }
    let post_url = Url::parse(&consent_url).unwrap().join("consent").unwrap();
    let answer = browser.post(post_url).form(&form).send().await.unwrap();
    assert_eq!(answer.status(), 303);
    let mut callback = location(base, &answer);
    // Meta appends `#_=_`; browsers do not send fragments.
    if let Some(i) = callback.find('#') {
        callback.truncate(i);
    }
    ConsentResult { callback }
}

/// Completes the flow: the callback, then the redirect back to the UI. Returns
/// the final redirect's query pairs.
pub async fn finish(
    browser: &reqwest::Client,
    base: &str,
    callback: &str,
) -> (u16, Vec<(String, String)>, String) {
    let resp = browser.get(callback).send().await.unwrap();
    let status = resp.status().as_u16();
    if status != 303 {
        let body = resp.text().await.unwrap();
        return (status, vec![], body);
    }
    let target = location(base, &resp);
    let pairs = Url::parse(&target)
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    (status, pairs, target)
}

pub fn param<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A GA4 OAuth state for `user-1` of workspace `demo`, written straight into
/// the app's store (as `start` would, or an older version did), expiring
/// `expires_in` from now. Returns the state value and the browser binding.
pub async fn plant_oauth_state(
    app: &crate::app::TestApp,
    return_to: Option<&str>,
    expires_in: chrono::Duration,
) -> (String, String) {
    use kpi_core::ports::store::OAuthState;
    use kpi_core::{WorkspaceId, WorkspaceScope};
    let demo = WorkspaceId::parse("demo").unwrap();
    let scope = WorkspaceScope::for_system(demo.clone(), "test setup");
    let state_value = format!("state-{}", uuid::Uuid::new_v4());
    let binding = format!("binding-{}", uuid::Uuid::new_v4());
    app.server
        .state
        .store
        .put_oauth_state(
            &scope,
            &OAuthState {
                key: kpi_providers::oauth::sha256_b64(&state_value),
                workspace: demo,
                user: "user-1".into(),
                provider: kpi_providers::ga4::ID,
                integration: None,
                browser_binding: kpi_providers::oauth::sha256_b64(&binding),
                pkce_verifier: Some("v".repeat(43)),
                return_to: return_to.map(str::to_owned),
                expires_at: chrono::Utc::now() + expires_in,
            },
        )
        .await
        .unwrap();
    (state_value, binding)
}
