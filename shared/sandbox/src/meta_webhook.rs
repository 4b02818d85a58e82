//! The sandbox's side of Meta webhooks: a control that sends a signed
//! ad-account delivery (exactly as Meta shapes and signs it) to the server
//! the sandbox stands in for.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ring::hmac;
use serde::Deserialize;
use serde_json::json;

use crate::Sandbox;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendWebhook {
    /// `act_…` or the bare id.
    pub ad_account: String,
    /// The ad-account field that changed (default `with_issues_ad_objects`).
    #[serde(default)]
    pub field: Option<String>,
    /// How many times the same delivery is sent (Meta retries; default 1, at most 5).
    #[serde(default)]
    pub times: Option<u8>,
    /// Sign with a wrong secret, as a forger would.
    #[serde(default)]
    pub forged: bool,
}

/// The delivery body Meta sends for one change of `field` on `ad_account`.
pub fn delivery(ad_account: &str, field: &str, time: i64) -> String {
    let id = ad_account.strip_prefix("act_").unwrap_or(ad_account);
    json!({
        "object": "ad_account",
        "entry": [{"id": id, "time": time, "changes": [{"field": field,
            "value": {"id": "120200000000000001", "level": "AD", "error_code": "1815869",
                "error_summary": "Ad rejected", "error_message": "The ad was rejected in review"}}]}]
    })
    .to_string()
}

/// `X-Hub-Signature-256` of `body`: `sha256=` and the lowercase hex HMAC.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

pub async fn send(
    State(sandbox): State<Sandbox>,
    axum::Json(r): axum::Json<SendWebhook>,
) -> Response {
    let Some(target) = sandbox.config().meta_webhook_url.clone() else {
        return (
            StatusCode::CONFLICT,
            axum::Json(json!({"error": "this sandbox has no server to send webhooks to"})),
        )
            .into_response();
    };
    let id = r.ad_account.strip_prefix("act_").unwrap_or(&r.ad_account);
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return (
            StatusCode::UNPROCESSABLE_ENTITY,
            axum::Json(json!({"error": "ad_account must be act_<digits>"})),
        )
            .into_response();
    }
    let field = r.field.as_deref().unwrap_or("with_issues_ad_objects");
    let body = delivery(id, field, chrono::Utc::now().timestamp());
    let secret = if r.forged {
        "not-the-app-secret".to_owned()
    } else {
        sandbox.config().meta_app_secret.clone()
    };
    let signature = sign(&secret, body.as_bytes());
    let Ok(client) = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
    else {
        return (
            StatusCode::INTERNAL_SERVER_ERROR,
            axum::Json(json!({"error": "no HTTP client"})),
        )
            .into_response();
    };
    let mut answers = Vec::new();
    for _ in 0..r.times.unwrap_or(1).clamp(1, 5) {
        let sent = client
            .post(&target)
            .header("content-type", "application/json")
            .header("x-hub-signature-256", &signature)
            .body(body.clone())
            .send()
            .await;
        match sent {
            Ok(resp) => {
                let status = resp.status().as_u16();
                let text = resp.text().await.unwrap_or_default();
                let answer: serde_json::Value =
                    serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
                answers.push(json!({"status": status, "body": answer}));
            }
            Err(e) => {
                return (
                    StatusCode::BAD_GATEWAY,
                    axum::Json(json!({"error": format!("could not reach the server: {}", e.without_url())})),
                )
                    .into_response();
            }
        }
    }
    (
        StatusCode::OK,
        axum::Json(json!({"delivery": body, "answers": answers})),
    )
        .into_response()
}
