//! The outbox's delivery events, sent back like Resend sends them: a
//! `{type, created_at, data}` event, signed the Svix way with the sandbox's
//! webhook secret, posted to the server's `/v1/webhooks/resend`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::hmac;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::resend::ResendState;
use crate::resend_send::OutboxEmail;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendEvent {
    pub email_id: String,
    /// `delivered`, `bounced` (a hard bounce), `soft_bounced`, `complained`,
    /// `delivery_delayed`, `opened` or `clicked`.
    pub event: String,
    /// How many times the same delivery is sent (Svix retries; default 1, at most 5).
    #[serde(default)]
    pub times: Option<u8>,
}

/// `v1,<base64>` of a Svix message under `secret` (`whsec_…`).
pub fn svix_signature(secret: &str, id: &str, timestamp: i64, body: &[u8]) -> String {
    let key_bytes = STANDARD
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .unwrap_or_default();
    let key = hmac::Key::new(hmac::HMAC_SHA256, &key_bytes);
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    format!(
        "v1,{}",
        STANDARD.encode(hmac::sign(&key, &content).as_ref())
    )
}

/// The event body Resend sends for `event` on `email`; `None` for an unknown event.
pub fn event_body(
    email: &OutboxEmail,
    event: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Option<(String, Value)> {
    let (kind, status) = match event {
        "delivered" => ("email.delivered", "delivered"),
        "bounced" | "soft_bounced" => ("email.bounced", "bounced"),
        "complained" => ("email.complained", "complained"),
        "delivery_delayed" => ("email.delivery_delayed", "delivery_delayed"),
        "opened" => ("email.opened", "opened"),
        "clicked" => ("email.clicked", "clicked"),
        _ => return None,
    };
    let mut data = json!({
        "email_id": email.id,
        "created_at": email.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "from": email.from,
        "to": email.to,
        "subject": email.subject,
        "tags": email.tags.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>(),
    });
    match event {
        "bounced" => {
            data["bounce"] = json!({"message": "The recipient's mailbox does not exist.", "subType": "General", "type": "Permanent"})
        }
        "soft_bounced" => {
            data["bounce"] = json!({"message": "The recipient's mailbox is full.", "subType": "MailboxFull", "type": "Transient"})
        }
        "clicked" => {
            data["click"] = json!({"ipAddress": "192.0.2.1", "link": "https://example.com", "timestamp": at.to_rfc3339(), "userAgent": "sandbox"})
        }
        _ => {}
    }
    Some((
        status.to_owned(),
        json!({"type": kind, "created_at": at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true), "data": data}),
    ))
}

async fn deliver(sandbox: &Sandbox, r: SendEvent) -> Result<Value, (StatusCode, String)> {
    let Some(target) = sandbox.config().resend_webhook_url.clone() else {
        return Err((
            StatusCode::CONFLICT,
            "this sandbox has no server to send events to".into(),
        ));
    };
    let Some(email) = sandbox
        .resend_outbox()
        .into_iter()
        .find(|e| e.id == r.email_id)
    else {
        return Err((StatusCode::NOT_FOUND, "no such email in the outbox".into()));
    };
    let now = chrono::Utc::now();
    let Some((status, event)) = event_body(&email, &r.event, now) else {
        return Err((StatusCode::UNPROCESSABLE_ENTITY, "unknown event".into()));
    };
    let body = event.to_string();
    let id = crate::state::random("msg_");
    let signature = svix_signature(
        &sandbox.config().resend_webhook_secret,
        &id,
        now.timestamp(),
        body.as_bytes(),
    );
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(10))
        .build()
        .map_err(|_| {
            (
                StatusCode::INTERNAL_SERVER_ERROR,
                "no HTTP client".to_owned(),
            )
        })?;
    // The configured endpoint first, then every endpoint the sending key's
    // account registered, each signed with its own secret.
    let mut targets = vec![(target, signature)];
    for hook in sandbox.resend_webhooks() {
        if hook.key == email.key && hook.events.iter().any(|e| *e == kind_of(&event)) {
            let signature =
                svix_signature(&hook.signing_secret, &id, now.timestamp(), body.as_bytes());
            targets.push((hook.endpoint, signature));
        }
    }
    let mut answers = Vec::new();
    for (target, signature) in &targets {
        for _ in 0..r.times.unwrap_or(1).clamp(1, 5) {
            let resp = client
                .post(target)
                .header("content-type", "application/json")
                .header("svix-id", &id)
                .header("svix-timestamp", now.timestamp().to_string())
                .header("svix-signature", signature)
                .body(body.clone())
                .send()
                .await
                .map_err(|e| {
                    (
                        StatusCode::BAD_GATEWAY,
                        format!("could not reach the server: {}", e.without_url()),
                    )
                })?;
            let code = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            answers.push(json!({"status": code, "body": serde_json::from_str::<Value>(&text).unwrap_or(Value::String(text))}));
        }
    }
    sandbox.with(|s: &mut ResendState| {
        if let Some(e) = s.outbox.iter_mut().find(|e| e.id == email.id) {
            e.last_event = status;
        }
    });
    Ok(json!({"event": event, "answers": answers}))
}

/// The event's `type` (`email.bounced`, …).
fn kind_of(event: &Value) -> String {
    event["type"].as_str().unwrap_or_default().to_owned()
}

/// `POST /sandbox/_control/resend/events` (JSON).
pub async fn send(
    State(sandbox): State<Sandbox>,
    axum::Json(r): axum::Json<SendEvent>,
) -> Response {
    match deliver(&sandbox, r).await {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err((status, why)) => (status, axum::Json(json!({"error": why}))).into_response(),
    }
}

#[derive(Deserialize)]
pub struct EventForm {
    event: String,
}

/// The outbox page's buttons: send the event, then back to the email.
pub async fn send_from_page(
    State(sandbox): State<Sandbox>,
    Path(id): Path<String>,
    axum::Form(f): axum::Form<EventForm>,
) -> Response {
    match deliver(
        &sandbox,
        SendEvent {
            email_id: id.clone(),
            event: f.event,
            times: None,
        },
    )
    .await
    {
        Ok(_) => Redirect::to(&format!("../{id}")).into_response(),
        Err((status, why)) => (status, why).into_response(),
    }
}
