//! Resend sending: `POST /emails`, `POST /emails/batch`, `GET /emails/{id}`
//! with Resend's validation and error bodies, `Idempotency-Key` semantics
//! (same key and payload: the first answer again; another payload: 409), the
//! `ratelimit-*` headers of a per-second team limit, quota errors, and an
//! outbox a person can read at `/sandbox/resend/outbox`.

use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::Sandbox;
use crate::resend::{ResendState, key_kind, resend_error};
use crate::state::Counters;

/// Resend's default team limit (requests per second) unless faults say otherwise.
pub const DEFAULT_RATE_LIMIT: u32 = 5;
const IDEMPOTENCY_TTL: Duration = Duration::from_secs(24 * 3600);

/// One email the sandbox accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEmail {
    pub id: String,
    pub from: String,
    pub to: Vec<String>,
    pub subject: String,
    pub html: Option<String>,
    pub text: Option<String>,
    pub reply_to: Vec<String>,
    pub tags: Vec<(String, String)>,
    /// The custom headers sent, by name.
    pub headers: std::collections::BTreeMap<String, String>,
    /// The API key it was sent with: its account's registered webhooks get
    /// its events.
    pub key: String,
    pub idempotency_key: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub last_event: String,
}

pub(crate) struct Remembered {
    payload: Vec<u8>,
    answer: Value,
    at: Instant,
}

/// The per-second window of the team limit.
#[derive(Default)]
pub(crate) struct RateWindow {
    started: Option<Instant>,
    used: u32,
}

#[derive(Deserialize)]
struct Tag {
    name: String,
    value: String,
}

#[derive(Deserialize)]
struct SendRequest {
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    to: Option<OneOrMany>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    html: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    reply_to: Option<OneOrMany>,
    #[serde(default)]
    tags: Vec<Tag>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
    #[serde(default)]
    attachments: Option<Value>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

fn address_ok(a: &str) -> bool {
    let inner = match (a.find('<'), a.rfind('>')) {
        (Some(l), Some(r)) if l < r => &a[l + 1..r],
        _ => a,
    };
    inner
        .split_once('@')
        .is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !inner.contains(' '))
}

fn unprocessable(name: &str, message: &str) -> Response {
    resend_error(StatusCode::UNPROCESSABLE_ENTITY, name, message)
}

/// A refused message: Resend's error name and message (answered with 422).
struct Refusal(&'static str, String);

fn refuse(name: &'static str, message: impl Into<String>) -> Refusal {
    Refusal(name, message.into())
}

fn check(r: SendRequest, batch: bool) -> Result<OutboxEmail, Refusal> {
    let Some(from) = r.from.filter(|f| !f.trim().is_empty()) else {
        return Err(refuse("missing_required_field", "Missing `from` field."));
    };
    if !address_ok(&from) {
        return Err(refuse(
            "validation_error",
            "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format.",
        ));
    }
    let to = r.to.map(OneOrMany::into_vec).unwrap_or_default();
    if to.is_empty() {
        return Err(refuse("missing_required_field", "Missing `to` field."));
    }
    if to.len() > 50 {
        return Err(refuse(
            "validation_error",
            "Too many recipients in `to` (max 50).",
        ));
    }
    if let Some(bad) = to.iter().find(|t| !address_ok(t)) {
        return Err(refuse(
            "validation_error",
            format!("Invalid `to` field. {bad:.60} is not a valid email address."),
        ));
    }
    let Some(subject) = r.subject.filter(|s| !s.is_empty()) else {
        return Err(refuse("missing_required_field", "Missing `subject` field."));
    };
    if r.html.is_none() && r.text.is_none() {
        return Err(refuse(
            "missing_required_field",
            "Missing `html` or `text` field.",
        ));
    }
    if batch && r.attachments.is_some() {
        return Err(refuse(
            "validation_error",
            "Attachments are not supported in the batch API.",
        ));
    }
    if let Some(t) = r.tags.iter().find(|t| {
        t.name.is_empty()
            || t.name.len() > 256
            || t.value.len() > 256
            || !(t.name.bytes().chain(t.value.bytes()))
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    }) {
        return Err(refuse(
            "validation_error",
            format!(
                "Invalid tag {:.40}: only ASCII letters, numbers, underscores or dashes.",
                t.name
            ),
        ));
    }
    Ok(OutboxEmail {
        id: String::new(),
        from,
        to,
        subject,
        html: r.html,
        text: r.text,
        reply_to: r.reply_to.map(OneOrMany::into_vec).unwrap_or_default(),
        tags: r.tags.into_iter().map(|t| (t.name, t.value)).collect(),
        headers: r.headers,
        key: String::new(),
        idempotency_key: None,
        created_at: chrono::Utc::now(),
        last_event: "sent".into(),
    })
}

/// A v4-shaped id from the sandbox's random source (emails, webhooks).
pub(crate) fn email_id() -> String {
    let raw = crate::state::random("");
    let hex: String = raw
        .bytes()
        .map(|b| format!("{:02x}", b))
        .collect::<String>()
        .chars()
        .take(32)
        .collect();
    format!(
        "{}-{}-4{}-a{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[13..16],
        &hex[17..20],
        &hex[20..32]
    )
}

/// Every answer carries the team's limit headers.
fn with_limits(mut response: Response, limit: u32, remaining: u32) -> Response {
    let h = response.headers_mut();
    for (name, value) in [
        ("ratelimit-limit", limit.to_string()),
        ("ratelimit-remaining", remaining.to_string()),
        ("ratelimit-reset", "1".to_owned()),
        ("ratelimit-policy", format!("{limit};w=1")),
    ] {
        if let Ok(v) = HeaderValue::from_str(&value) {
            h.insert(name, v);
        }
    }
    response
}

/// Authentication, the User-Agent rule, faults and the team limit: the
/// answer to send now, or the remaining count to report.
fn admit(sandbox: &Sandbox, headers: &HeaderMap) -> Result<(String, u32, u32), Box<Response>> {
    sandbox.with(|c: &mut Counters| c.resend_calls += 1);
    if headers.get("user-agent").is_none() {
        return Err(Box::new(resend_error(
            StatusCode::FORBIDDEN,
            "validation_error",
            "Requests without a User-Agent header are rejected (error code 1010).",
        )));
    }
    let Some(key) = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Err(Box::new(resend_error(
            StatusCode::UNAUTHORIZED,
            "missing_api_key",
            "Missing API key in the authorization header.",
        )));
    };
    if key_kind(key).is_none() {
        return Err(Box::new(resend_error(
            StatusCode::UNAUTHORIZED,
            "validation_error",
            "API key is invalid",
        )));
    }
    let faults = sandbox.faults();
    if let Some(status) = faults.resend {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        return Err(Box::new(resend_error(
            status,
            "application_error",
            "An unexpected error occurred.",
        )));
    }
    let limit = faults
        .resend_rate_limit
        .unwrap_or(DEFAULT_RATE_LIMIT)
        .max(1);
    let remaining = sandbox.with(|s: &mut ResendState| {
        let now = Instant::now();
        let w = &mut s.window;
        if w.started
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            w.started = Some(now);
            w.used = 0;
        }
        if w.used >= limit {
            return None;
        }
        w.used += 1;
        Some(limit - w.used)
    });
    let Some(remaining) = remaining else {
        let mut r = with_limits(
            resend_error(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limit_exceeded",
                "Too many requests. Please limit the number of requests per second. Or contact support to increase rate limit.",
            ),
            limit,
            0,
        );
        r.headers_mut()
            .insert("retry-after", HeaderValue::from_static("1"));
        return Err(Box::new(r));
    };
    match faults.resend_quota.as_deref() {
        Some("daily") => {
            return Err(Box::new(with_limits(
                resend_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "daily_quota_exceeded",
                    "You have reached your daily email sending quota.",
                ),
                limit,
                remaining,
            )));
        }
        Some("monthly") => {
            return Err(Box::new(with_limits(
                resend_error(
                    StatusCode::TOO_MANY_REQUESTS,
                    "monthly_quota_exceeded",
                    "You have reached your monthly email sending quota.",
                ),
                limit,
                remaining,
            )));
        }
        _ => {}
    }
    Ok((key.to_owned(), limit, remaining))
}

fn send_all(sandbox: &Sandbox, headers: &HeaderMap, body: &[u8], batch: bool) -> Response {
    let (key, limit, remaining) = match admit(sandbox, headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let answer = |r: Response| with_limits(r, limit, remaining);
    let idempotency = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    if idempotency
        .as_ref()
        .is_some_and(|k| k.is_empty() || k.len() > 256)
    {
        return answer(resend_error(
            StatusCode::BAD_REQUEST,
            "invalid_idempotency_key",
            "The key must be between 1-256 chars.",
        ));
    }
    let requests: Vec<SendRequest> = if batch {
        match serde_json::from_slice::<Vec<SendRequest>>(body) {
            Ok(v) if v.is_empty() => {
                return answer(unprocessable("validation_error", "The batch is empty."));
            }
            Ok(v) if v.len() > 100 => {
                return answer(unprocessable(
                    "validation_error",
                    "Too many emails in the batch (max 100).",
                ));
            }
            Ok(v) => v,
            Err(_) => {
                return answer(unprocessable(
                    "validation_error",
                    "Invalid JSON: expected an array of emails.",
                ));
            }
        }
    } else {
        match serde_json::from_slice::<SendRequest>(body) {
            Ok(r) => vec![r],
            Err(_) => return answer(unprocessable("validation_error", "Invalid JSON.")),
        }
    };
    let mut emails = Vec::with_capacity(requests.len());
    for r in requests {
        match check(r, batch) {
            Ok(e) => emails.push(e),
            Err(Refusal(name, message)) => return answer(unprocessable(name, &message)),
        }
    }
    sandbox.with(|s: &mut ResendState| {
        if let Some(k) = &idempotency {
            let remembered = (key.clone(), k.clone());
            s.idempotency
                .retain(|_, r| r.at.elapsed() < IDEMPOTENCY_TTL);
            if let Some(r) = s.idempotency.get(&remembered) {
                if r.payload == body {
                    return answer((StatusCode::OK, axum::Json(r.answer.clone())).into_response());
                }
                return answer(resend_error(
                    StatusCode::CONFLICT,
                    "invalid_idempotent_request",
                    "Same idempotency key used with a different request payload. Change your idempotency key or payload.",
                ));
            }
        }
        let mut ids = Vec::with_capacity(emails.len());
        for mut e in emails {
            e.id = email_id();
            e.key.clone_from(&key);
            e.idempotency_key = idempotency.clone();
            ids.push(json!({"id": e.id}));
            s.outbox.push(e);
        }
        let body_json = if batch {
            json!({ "data": ids })
        } else {
            ids.into_iter().next().unwrap_or(Value::Null)
        };
        if let Some(k) = &idempotency {
            s.idempotency.insert(
                (key.clone(), k.clone()),
                Remembered {
                    payload: body.to_vec(),
                    answer: body_json.clone(),
                    at: Instant::now(),
                },
            );
        }
        if s.lose_answers > 0 {
            // Sent, but the answer never reaches the caller.
            s.lose_answers -= 1;
            return (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout").into_response();
        }
        answer((StatusCode::OK, axum::Json(body_json)).into_response())
    })
}

pub async fn send(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    send_all(&sandbox, &headers, &body, false)
}

pub async fn send_batch(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    send_all(&sandbox, &headers, &body, true)
}

/// `GET /emails/{id}`: Resend's email object (its own timestamp format).
pub async fn get_email(
    State(sandbox): State<Sandbox>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    let (_, limit, remaining) = match admit(&sandbox, &headers) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let found = sandbox.with(|s: &mut ResendState| s.outbox.iter().find(|e| e.id == id).cloned());
    let response = match found {
        Some(e) => (
            StatusCode::OK,
            axum::Json(json!({
                "object": "email", "id": e.id, "to": e.to, "from": e.from,
                "created_at": e.created_at.format("%Y-%m-%d %H:%M:%S%.6f+00").to_string(),
                "subject": e.subject, "html": e.html, "text": e.text,
                "bcc": [], "cc": [], "reply_to": e.reply_to, "last_event": e.last_event,
            })),
        )
            .into_response(),
        None => resend_error(StatusCode::NOT_FOUND, "not_found", "Email not found"),
    };
    with_limits(response, limit, remaining)
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The outbox: every email the system sent through the sandbox, newest first.
pub async fn outbox(State(sandbox): State<Sandbox>) -> Html<String> {
    let emails = sandbox.resend_outbox();
    let rows: String = emails
        .iter()
        .rev()
        .map(|e| {
            format!(
                "<tr><td>{}</td><td>{}</td><td><a href=\"outbox/{}\">{}</a></td><td>{}</td></tr>",
                e.created_at.format("%Y-%m-%d %H:%M:%S"),
                escape(&e.to.join(", ")),
                escape(&e.id),
                escape(&e.subject),
                escape(&e.last_event)
            )
        })
        .collect();
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Sandbox outbox</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}table{{border-collapse:collapse}}td,th{{padding:.3rem .8rem;border-bottom:1px solid #ddd;text-align:left}}</style></head>\
         <body><h1>Resend sandbox outbox</h1><p>{} email(s) sent through the sandbox.</p>\
         <table><thead><tr><th>Sent (UTC)</th><th>To</th><th>Subject</th><th>Last event</th></tr></thead><tbody>{rows}</tbody></table></body></html>",
        emails.len()
    ))
}

/// One email of the outbox: its headers, the HTML part (in a sandboxed frame)
/// and the plain-text part.
pub async fn outbox_email(State(sandbox): State<Sandbox>, Path(id): Path<String>) -> Response {
    let Some(e) = sandbox.resend_outbox().into_iter().find(|e| e.id == id) else {
        return (
            StatusCode::NOT_FOUND,
            Html("<p>No such email.</p>".to_owned()),
        )
            .into_response();
    };
    Html(format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>{subject}</title>\
         <style>body{{font-family:system-ui,sans-serif;margin:2rem}}iframe{{width:100%;height:32rem;border:1px solid #ccc}}pre{{white-space:pre-wrap;background:#f6f6f6;padding:1rem}}</style></head>\
         <body><p><a href=\"../outbox\">Outbox</a></p><h1>{subject}</h1>\
         <dl><dt>From</dt><dd>{from}</dd><dt>To</dt><dd>{to}</dd><dt>Reply-To</dt><dd>{reply_to}</dd><dt>Id</dt><dd>{id}</dd><dt>Idempotency key</dt><dd>{key}</dd><dt>Last event</dt><dd>{event}</dd></dl>\
         <form method=\"post\" action=\"{id}/event\"><p>Send a delivery event back: \
         <button name=\"event\" value=\"delivered\">Delivered</button> \
         <button name=\"event\" value=\"bounced\">Hard bounce</button> \
         <button name=\"event\" value=\"soft_bounced\">Soft bounce</button> \
         <button name=\"event\" value=\"complained\">Complaint</button> \
         <button name=\"event\" value=\"opened\">Opened</button></p></form>\
         <h2>HTML</h2><iframe sandbox title=\"HTML part\" srcdoc=\"{html}\"></iframe><h2>Text</h2><pre>{text}</pre></body></html>",
        subject = escape(&e.subject),
        from = escape(&e.from),
        to = escape(&e.to.join(", ")),
        reply_to = escape(&e.reply_to.join(", ")),
        id = escape(&e.id),
        key = escape(e.idempotency_key.as_deref().unwrap_or("—")),
        event = escape(&e.last_event),
        html = escape(e.html.as_deref().unwrap_or("")),
        text = escape(e.text.as_deref().unwrap_or("")),
    ))
    .into_response()
}
