//! GA4 Admin API: `accountSummaries` with paging, behind a Google bearer token;
//! and the GA4 simulator ([`Ga4Sim`]), which also serves Google OAuth
//! (`google.rs`) and the GA4 Data API (`ga4_data.rs`).

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::json;

use crate::google::{ANALYTICS_READONLY, bearer_scopes};
use crate::state::Counters;
use crate::{Sandbox, SandboxConfig, Simulator, ga4_data, google};

/// Google's authorization, token and revocation endpoints and the GA4 Admin
/// and Data APIs (provider `ga4`). Its state is `google::GoogleState`.
pub struct Ga4Sim;

impl Simulator for Ga4Sim {
    fn provider(&self) -> &'static str {
        "ga4"
    }

    fn routes(&self) -> Router<Sandbox> {
        Router::new()
            .route("/google/auth", get(google::authorize))
            .route("/google/consent", post(google::consent))
            .route("/google/token", post(google::token))
            .route("/google/revoke", post(google::revoke))
            .route("/ga4/admin/v1beta/accountSummaries", get(account_summaries))
            .route(
                "/ga4/data/v1beta/properties/{target}",
                post(ga4_data::batch_run_reports),
            )
    }

    fn app_credentials(&self, config: &SandboxConfig) -> Vec<(&'static str, String)> {
        vec![
            ("GOOGLE_CLIENT_ID", config.google_client_id.clone()),
            ("GOOGLE_CLIENT_SECRET", config.google_client_secret.clone()),
        ]
    }
}

/// (account, account name, properties as (property, display name)).
type Account = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

/// Deterministic accounts and properties.
const ACCOUNTS: &[Account] = &[
    (
        "accounts/1000",
        "Sandbox Shop",
        &[
            ("properties/100001", "Shop Web (Europe/Berlin, EUR)"),
            ("properties/100002", "Shop App (America/New_York, USD)"),
        ],
    ),
    (
        "accounts/2000",
        "Sandbox Media",
        &[("properties/200001", "Media Site (Asia/Tokyo, JPY)")],
    ),
    ("accounts/3000", "Sandbox Empty Account", &[]),
];

pub fn google_error(status: StatusCode, code_name: &str, message: &str) -> Response {
    (
        status,
        axum::Json(
            json!({"error": {"code": status.as_u16(), "message": message, "status": code_name}}),
        ),
    )
        .into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Paging {
    page_size: Option<usize>,
    page_token: Option<String>,
}

pub async fn account_summaries(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Query(p): Query<Paging>,
) -> Response {
    sandbox.with(|c: &mut Counters| c.ga4_admin_calls += 1);
    if let Some(status) = sandbox.faults().ga4_admin {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return google_error(status, "INTERNAL", "Internal error encountered.");
    }
    let Some(scopes) = bearer_scopes(&sandbox, &headers) else {
        return google_error(
            StatusCode::UNAUTHORIZED,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    if !scopes.iter().any(|s| s == ANALYTICS_READONLY) {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
        );
    }
    // Default 50, maximum 200 (larger values are coerced).
    let size = p.page_size.unwrap_or(50).clamp(1, 200);
    let start: usize = p
        .page_token
        .as_deref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    let page: Vec<_> = ACCOUNTS
        .iter()
        .skip(start)
        .take(size)
        .map(|(account, name, props)| {
            let id = account.trim_start_matches("accounts/");
            let mut summary = json!({
                "name": format!("accountSummaries/{id}"),
                "account": account,
                "displayName": name,
            });
            // proto3 JSON omits empty repeated fields.
            if !props.is_empty() {
                summary["propertySummaries"] = props
                    .iter()
                    .map(|(p, n)| {
                        json!({"property": p, "displayName": n, "propertyType": "PROPERTY_TYPE_ORDINARY", "parent": account})
                    })
                    .collect();
            }
            summary
        })
        .collect();
    let mut body = json!({"accountSummaries": page});
    if start + size < ACCOUNTS.len() {
        body["nextPageToken"] = json!((start + size).to_string());
    }
    (StatusCode::OK, axum::Json(body)).into_response()
}
