//! Facebook Login dialog and the Graph API endpoints of the connect flow; and
//! the Meta simulator ([`MetaSim`]), which also serves the Insights API
//! (`meta_insights.rs`) and sends webhooks (`meta_webhook.rs`).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::{Form, Router};
use serde::Deserialize;
use serde_json::json;

use crate::state::{AuthCode, CODE_TTL, Counters, Token, random};
use crate::{Sandbox, SandboxConfig, Simulator, consent, meta_insights, meta_webhook};

/// Facebook Login and the Graph API (provider `meta_ads`), with the control
/// route that sends ad account webhooks. Its state is [`MetaState`].
pub struct MetaSim;

impl Simulator for MetaSim {
    fn provider(&self) -> &'static str {
        "meta_ads"
    }

    fn routes(&self) -> Router<Sandbox> {
        Router::new()
            .route("/meta/dialog/oauth", get(authorize))
            .route("/meta/dialog/consent", post(consent))
            .route(
                "/meta/graph/{version}/oauth/access_token",
                get(access_token).post(access_token_form),
            )
            .route("/meta/graph/{version}/me", get(me))
            .route(
                "/meta/graph/{version}/me/permissions",
                get(permissions).delete(revoke),
            )
            .route(
                "/meta/graph/{version}/{object}/insights",
                get(meta_insights::insights).post(meta_insights::create_report_run),
            )
            .route(
                "/meta/graph/{version}/{object}",
                get(meta_insights::report_run_status),
            )
            .route(
                "/meta/graph/{version}/{object}/subscribed_apps",
                post(subscribe_app),
            )
            .route("/meta/graph/{version}/me/adaccounts", get(ad_accounts))
    }

    fn control_routes(&self) -> Router<Sandbox> {
        Router::new().route("/_control/meta/webhook", post(meta_webhook::send))
    }

    fn app_credentials(&self, config: &SandboxConfig) -> Vec<(&'static str, String)> {
        vec![
            ("META_APP_ID", config.meta_app_id.clone()),
            ("META_APP_SECRET", config.meta_app_secret.clone()),
            (
                "META_WEBHOOK_VERIFY_TOKEN",
                config.meta_verify_token.clone(),
            ),
        ]
    }
}

/// The state of the Meta simulator.
#[derive(Default)]
pub(crate) struct MetaState {
    pub codes: HashMap<String, AuthCode>,
    pub short: HashMap<String, Token>,
    pub long: HashMap<String, Token>,
    /// Async insights report runs by id.
    pub runs: HashMap<String, meta_insights::ReportRun>,
    /// Ad accounts the app was subscribed to (`POST /act_{id}/subscribed_apps`).
    pub subscribed: Vec<String>,
}

const LONG_LIVED_SECONDS: u64 = 5_183_944;

pub fn graph_error(status: StatusCode, code: i64, subcode: Option<i64>, message: &str) -> Response {
    let mut error = json!({
        "message": message,
        "type": "OAuthException",
        "code": code,
        "fbtrace_id": "AsandboxTrace",
    });
    if let Some(sub) = subcode {
        error["error_subcode"] = json!(sub);
    }
    (status, axum::Json(json!({ "error": error }))).into_response()
}

#[derive(Deserialize)]
pub struct DialogParams {
    client_id: Option<String>,
    redirect_uri: Option<String>,
    state: Option<String>,
    scope: Option<String>,
}

pub async fn authorize(State(sandbox): State<Sandbox>, Query(p): Query<DialogParams>) -> Response {
    let config = sandbox.config();
    if p.client_id.as_deref() != Some(config.meta_app_id.as_str()) {
        return (StatusCode::BAD_REQUEST, "Invalid App ID").into_response();
    }
    let Some(redirect_uri) = p.redirect_uri.filter(|r| r.starts_with("http")) else {
        return (
            StatusCode::BAD_REQUEST,
            "URL blocked: redirect_uri is not allowed",
        )
            .into_response();
    };
    let scope = p.scope.unwrap_or_default();
    consent::page(
        "Facebook",
        "consent",
        &[
            ("client_id", &config.meta_app_id),
            ("redirect_uri", &redirect_uri),
            ("state", p.state.as_deref().unwrap_or_default()),
            ("scope", &scope),
        ],
        &scope.split(',').collect::<Vec<_>>(),
        Some(("grant_ads_read", "Access ads performance (ads_read)")),
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
    grant_ads_read: Option<String>,
}

pub async fn consent(State(sandbox): State<Sandbox>, Form(f): Form<ConsentForm>) -> Response {
    let Ok(mut target) = url::Url::parse(&f.redirect_uri) else {
        return (StatusCode::BAD_REQUEST, "URL blocked").into_response();
    };
    if f.decision != "allow" {
        target
            .query_pairs_mut()
            .append_pair("error_reason", "user_denied")
            .append_pair("error", "access_denied")
            .append_pair("error_description", "Permissions error")
            .append_pair("state", &f.state);
        return Redirect::to(target.as_str()).into_response();
    }
    let scopes: Vec<String> = f
        .scope
        .split(',')
        .filter(|s| !s.is_empty() && (*s != "ads_read" || f.grant_ads_read.is_some()))
        .map(str::to_owned)
        .collect();
    let code = random("AQsbx");
    sandbox.with(|s: &mut MetaState| {
        s.codes.insert(
            code.clone(),
            AuthCode {
                grant: random("grant-"),
                client_id: f.client_id,
                redirect_uri: f.redirect_uri.clone(),
                code_challenge: None,
                scopes,
                offline: false,
                expires: Instant::now() + CODE_TTL,
            },
        )
    });
    target
        .query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &f.state);
    // Facebook appends this fragment to the redirect.
    Redirect::to(&format!("{target}#_=_")).into_response()
}

/// The token endpoint as a form POST (what OAuth 2.0 clients send; Meta
/// answers it like the documented GET).
pub async fn access_token_form(
    State(sandbox): State<Sandbox>,
    Path(version): Path<String>,
    axum::Form(form): axum::Form<HashMap<String, String>>,
) -> Response {
    access_token(State(sandbox), Path(version), Query(form)).await
}

pub async fn access_token(
    State(sandbox): State<Sandbox>,
    Path(_version): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Some(status) = sandbox.faults().meta_graph {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return graph_error(status, 1, None, "An unknown error occurred");
    }
    let config = sandbox.config().clone();
    if q.get("client_id") != Some(&config.meta_app_id) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            101,
            None,
            "Error validating application. Invalid application ID.",
        );
    }
    if q.get("client_secret") != Some(&config.meta_app_secret) {
        return graph_error(
            StatusCode::BAD_REQUEST,
            1,
            None,
            "Error validating client secret.",
        );
    }
    let long_lived = q.get("grant_type").map(String::as_str) == Some("fb_exchange_token");
    sandbox.with(|c: &mut Counters| {
        if long_lived {
            c.meta_long_lived_exchanges += 1;
        } else {
            c.meta_code_exchanges += 1;
        }
    });
    sandbox.with(|s: &mut MetaState| {
        if long_lived {
            let short = q.get("fb_exchange_token").and_then(|t| s.short.get(t));
            let Some(short) = short.filter(|t| t.live()) else {
                return graph_error(StatusCode::BAD_REQUEST, 190, Some(463), "Error validating access token: Session has expired.");
            };
            let (grant, scopes) = (short.grant.clone(), short.scopes.clone());
            let long = random("EAAsbxLong");
            s.long.insert(
                long.clone(),
                Token {
                    grant,
                    scopes,
                    expires: Instant::now() + Duration::from_secs(LONG_LIVED_SECONDS),
                    revoked: false,
                },
            );
            return (
                StatusCode::OK,
                axum::Json(json!({"access_token": long, "token_type": "bearer", "expires_in": LONG_LIVED_SECONDS})),
            )
                .into_response();
        }
        let Some(code) = q.get("code").and_then(|c| s.codes.remove(c)) else {
            return graph_error(StatusCode::BAD_REQUEST, 100, Some(36009), "This authorization code has been used.");
        };
        if code.expires < Instant::now() || q.get("redirect_uri") != Some(&code.redirect_uri) {
            return graph_error(StatusCode::BAD_REQUEST, 100, Some(36008), "Error validating verification code. Please make sure your redirect_uri is identical to the one you used in the OAuth dialog request");
        }
        let short = random("EAAsbxShort");
        s.short.insert(
            short.clone(),
            Token {
                grant: code.grant,
                scopes: code.scopes,
                expires: Instant::now() + Duration::from_secs(7200),
                revoked: false,
            },
        );
        (
            StatusCode::OK,
            axum::Json(json!({"access_token": short, "token_type": "bearer", "expires_in": 7200})),
        )
            .into_response()
    })
}

/// The user token of a request: `Authorization: Bearer` or `access_token=`.
fn user_token(headers: &HeaderMap, q: &HashMap<String, String>) -> Option<String> {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("OAuth "))
        })
        .map(str::to_owned)
        .or_else(|| q.get("access_token").cloned())
}

/// Scopes of a live long- or short-lived token, or the Graph error to answer.
pub(crate) fn authorize_call(
    sandbox: &Sandbox,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<(String, Vec<String>), Box<Response>> {
    if let Some(status) = sandbox.faults().meta_graph {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(Box::new(graph_error(
            status,
            2,
            None,
            "An unexpected error has occurred. Please retry your request later.",
        )));
    }
    let Some(token) = user_token(headers, q) else {
        return Err(Box::new(graph_error(
            StatusCode::BAD_REQUEST,
            2500,
            None,
            "An active access token must be used to query information about the current user.",
        )));
    };
    sandbox.with(|c: &mut Counters| c.meta_graph_calls += 1);
    sandbox.with(|s: &mut MetaState| {
        let found = s.long.get(&token).or_else(|| s.short.get(&token));
        match found {
            Some(t) if t.live() => Ok((t.grant.clone(), t.scopes.clone())),
            Some(_) => Err(Box::new(graph_error(StatusCode::BAD_REQUEST, 190, Some(460), "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons."))),
            None => Err(Box::new(graph_error(StatusCode::BAD_REQUEST, 190, None, "Invalid OAuth access token - Cannot parse access token"))),
        }
    })
}

pub async fn permissions(
    State(sandbox): State<Sandbox>,
    Path(_version): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (_, scopes) = match authorize_call(&sandbox, &headers, &q) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let data: Vec<_> = ["ads_read", "business_management", "public_profile"]
        .iter()
        .map(|p| {
            let granted = *p == "public_profile" || scopes.iter().any(|s| s == p);
            json!({"permission": p, "status": if granted { "granted" } else { "declined" }})
        })
        .collect();
    (StatusCode::OK, axum::Json(json!({ "data": data }))).into_response()
}

/// The simulated Facebook user every sandbox consent belongs to.
pub const SANDBOX_USER_ID: &str = "10000000000000001";

/// `GET /me?fields=id`: the app-scoped id of the token's user.
pub async fn me(
    State(sandbox): State<Sandbox>,
    Path(_version): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    (StatusCode::OK, axum::Json(json!({ "id": SANDBOX_USER_ID }))).into_response()
}

pub async fn revoke(
    State(sandbox): State<Sandbox>,
    Path(_version): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let (grant, _) = match authorize_call(&sandbox, &headers, &q) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    sandbox.with(|c: &mut Counters| c.meta_revocations += 1);
    sandbox.with(|s: &mut MetaState| {
        for t in s.long.values_mut().chain(s.short.values_mut()) {
            if t.grant == grant {
                t.revoked = true;
            }
        }
    });
    (StatusCode::OK, axum::Json(json!({"success": true}))).into_response()
}

/// The sandbox user's ad accounts: (id, name, currency, status, time zone).
/// Status 1 is active, 2 disabled, 3 unsettled, 101 closed.
pub const AD_ACCOUNTS: &[(&str, &str, &str, i64, &str)] = &[
    ("1000000001", "Sandbox Shop Ads", "EUR", 1, "Europe/Berlin"),
    (
        "1000000002",
        "Sandbox Brand Ads",
        "USD",
        1,
        "America/Los_Angeles",
    ),
    ("1000000003", "Sandbox Old Ads", "GBP", 101, "Europe/London"),
    ("1000000004", "Sandbox Tokyo Ads", "JPY", 1, "Asia/Tokyo"),
    (
        "1000000005",
        "Sandbox Blocked Ads",
        "EUR",
        2,
        "Europe/Paris",
    ),
    (
        "1000000006",
        "Sandbox Unpaid Ads",
        "USD",
        3,
        "America/New_York",
    ),
];

/// The sandbox answers at most this many ad accounts a page, whatever the
/// `limit`, so a picker has to follow the cursors.
const AD_ACCOUNTS_PER_PAGE: usize = 2;

/// `POST /act_{id}/subscribed_apps`: subscribes the app to the ad account's webhooks.
pub async fn subscribe_app(
    State(sandbox): State<Sandbox>,
    Path((_version, object)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    let id = object.strip_prefix("act_").unwrap_or("");
    match AD_ACCOUNTS.iter().find(|a| a.0 == id) {
        Some(&(_, _, _, 1, _)) => {
            sandbox.with(|c: &mut Counters| c.meta_subscriptions += 1);
            sandbox.with(|s: &mut MetaState| {
                if !s.subscribed.contains(&object) {
                    s.subscribed.push(object.clone());
                }
            });
            (StatusCode::OK, axum::Json(json!({"success": true}))).into_response()
        }
        Some(_) => graph_error(
            StatusCode::FORBIDDEN,
            200,
            None,
            "(#200) The ad account is not active",
        ),
        None => graph_error(
            StatusCode::BAD_REQUEST,
            100,
            Some(33),
            "Unsupported post request. Object does not exist, cannot be loaded due to missing permissions, or does not support this operation.",
        ),
    }
}

pub async fn ad_accounts(
    State(sandbox): State<Sandbox>,
    Path(version): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(response) = authorize_call(&sandbox, &headers, &q) {
        return *response;
    }
    let limit: usize = q
        .get("limit")
        .and_then(|l| l.parse().ok())
        .unwrap_or(25)
        .clamp(1, AD_ACCOUNTS_PER_PAGE);
    let start: usize = q
        .get("after")
        .and_then(|a| a.strip_prefix("cursor-"))
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    let data: Vec<_> = AD_ACCOUNTS
        .iter()
        .skip(start)
        .take(limit)
        .map(|(id, name, currency, status, tz)| {
            json!({"id": format!("act_{id}"), "account_id": id, "name": name, "currency": currency,
                "account_status": status, "timezone_name": tz})
        })
        .collect();
    let end = start + data.len();
    let mut paging =
        json!({"cursors": {"before": format!("cursor-{start}"), "after": format!("cursor-{end}")}});
    if end < AD_ACCOUNTS.len() {
        paging["next"] = json!(format!(
            "https://graph.facebook.com/{version}/me/adaccounts?limit={limit}&after=cursor-{end}"
        ));
    }
    (
        StatusCode::OK,
        axum::Json(json!({"data": data, "paging": paging})),
    )
        .into_response()
}

impl Sandbox {
    /// Ad accounts the app was subscribed to through `subscribed_apps`.
    pub fn meta_subscriptions(&self) -> Vec<String> {
        self.with(|s: &mut MetaState| s.subscribed.clone())
    }

    /// A long-lived Meta user token with `ads_read`, as if the user had just
    /// connected (benchmarks and tools that skip the login dialog).
    pub fn meta_token(&self) -> String {
        let token = random("EAAsbxLong");
        self.with(|s: &mut MetaState| {
            s.long.insert(
                token.clone(),
                Token {
                    grant: random("grant-"),
                    scopes: vec!["ads_read".into(), "business_management".into()],
                    expires: Instant::now() + Duration::from_secs(LONG_LIVED_SECONDS),
                    revoked: false,
                },
            )
        });
        token
    }
}
