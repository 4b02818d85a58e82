//! Resend webhooks (delivered by Svix): the signature is checked on the raw
//! bytes first (see [`super::svix`]); then the email events are read. Event
//! types this system does not track are acknowledged and ignored.

use chrono::{DateTime, Utc};
use kpi_core::ports::provider::{EmailEvent, EmailEventKind, WebhookDelivery, WebhookEvents};
use kpi_core::{Error, Result};
use serde::Deserialize;

use super::svix::SigningKey;

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    data: Option<Data>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(default)]
    email_id: Option<String>,
    #[serde(default)]
    to: Vec<String>,
    #[serde(default)]
    bounce: Option<Bounce>,
    #[serde(default)]
    failed: Option<Failed>,
}

#[derive(Deserialize)]
struct Bounce {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(rename = "subType", default)]
    sub_type: String,
}

#[derive(Deserialize)]
struct Failed {
    #[serde(default)]
    reason: String,
}

/// Svix's branded header, else the unbranded Standard Webhooks one.
fn header<'a>(delivery: &'a WebhookDelivery<'_>, svix: &str, standard: &str) -> Option<&'a str> {
    delivery.header(svix).or_else(|| delivery.header(standard))
}

/// What is refused without the signing secret: a header missing, or a
/// timestamp outside the five minutes (a replay).
pub fn screen(delivery: &WebhookDelivery<'_>) -> Result<()> {
    super::svix::screen(
        header(delivery, "svix-id", "webhook-id"),
        header(delivery, "svix-timestamp", "webhook-timestamp"),
        header(delivery, "svix-signature", "webhook-signature"),
        delivery.now.timestamp(),
    )
    .map(|_| ())
}

/// Verifies with `key` at `now`, then reads the event (at most one per delivery).
pub fn read(key: &SigningKey, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
    let id = header(delivery, "svix-id", "webhook-id");
    key.verify(
        id,
        header(delivery, "svix-timestamp", "webhook-timestamp"),
        header(delivery, "svix-signature", "webhook-signature"),
        delivery.body,
        delivery.now.timestamp(),
    )?;
    let id = id.unwrap_or_default();
    if id.is_empty() || id.len() > 128 {
        return Err(Error::validation("svix-id", "missing or too long"));
    }
    let envelope: Envelope = serde_json::from_slice(delivery.body)
        .map_err(|_| Error::validation("body", "not a Resend webhook event"))?;
    let mut events = WebhookEvents {
        delivery: id.to_owned(),
        ..WebhookEvents::default()
    };
    let Some(data) = envelope.data else {
        return Ok(events);
    };
    let kind = match envelope.kind.as_str() {
        "email.sent" => EmailEventKind::Sent,
        "email.delivered" => EmailEventKind::Delivered,
        "email.delivery_delayed" => EmailEventKind::DeliveryDelayed,
        "email.bounced" => {
            let bounce = data.bounce.as_ref();
            EmailEventKind::Bounced {
                permanent: bounce.is_some_and(|b| b.kind == "Permanent"),
                sub_type: bounce.map(|b| b.sub_type.clone()).unwrap_or_default(),
            }
        }
        "email.complained" => EmailEventKind::Complained,
        "email.failed" => EmailEventKind::Failed {
            reason: data
                .failed
                .as_ref()
                .map(|f| f.reason.clone())
                .unwrap_or_default(),
        },
        "email.suppressed" => EmailEventKind::Suppressed,
        "email.opened" => EmailEventKind::Opened,
        "email.clicked" => EmailEventKind::Clicked,
        _ => return Ok(events),
    };
    let Some(email_id) = data.email_id.filter(|e| !e.is_empty() && e.len() <= 128) else {
        return Err(Error::validation("data.email_id", "missing"));
    };
    events.emails.push(EmailEvent {
        provider_message_id: email_id,
        kind,
        at: envelope.created_at.unwrap_or(delivery.now),
        recipients: data.to,
    });
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    /// Resend's documented bounce event (Rust SDK test data).
    const BOUNCED: &str = r#"{"type":"email.bounced","created_at":"2024-11-22T23:41:12.126Z","data":{"broadcast_id":"8b146471-e88e-4322-86af-016cd36fd216","created_at":"2024-11-22T23:41:11.894Z","email_id":"56761188-7520-42d8-8898-ff6fc54ce618","message_id":"<111-222-333@email.example.com>","from":"Acme <onboarding@resend.dev>","to":["delivered@resend.dev"],"subject":"Sending this example","template_id":"43f68331-0622-4e15-8202-246a0388854b","bounce":{"message":"The recipient's email address is on the suppression list because it has a recent history of producing hard bounces.","subType":"Suppressed","type":"Permanent"},"tags":{"category":"confirm_email"}}}"#;

    fn deliver(
        body: &str,
        id: &str,
        ts: i64,
        sig: Option<String>,
        now: i64,
    ) -> Result<WebhookEvents> {
        let key = SigningKey::new(SECRET).unwrap();
        let sig = sig.unwrap_or_else(|| key.sign(id, ts, body.as_bytes()));
        let headers = vec![
            ("svix-id".to_owned(), id.to_owned()),
            ("svix-timestamp".to_owned(), ts.to_string()),
            ("svix-signature".to_owned(), sig),
        ];
        read(
            &key,
            &WebhookDelivery {
                headers: &headers,
                body: body.as_bytes(),
                now: DateTime::from_timestamp(now, 0).unwrap(),
            },
        )
    }

    #[test]
    fn the_documented_bounce_is_read() {
        let now = 1_795_000_000;
        let events = deliver(BOUNCED, "msg_1", now, None, now).unwrap();
        assert_eq!(events.delivery, "msg_1");
        assert_eq!(events.emails.len(), 1);
        let e = &events.emails[0];
        assert_eq!(
            e.provider_message_id,
            "56761188-7520-42d8-8898-ff6fc54ce618"
        );
        assert_eq!(
            e.kind,
            EmailEventKind::Bounced {
                permanent: true,
                sub_type: "Suppressed".into()
            }
        );
        assert_eq!(e.recipients, vec!["delivered@resend.dev".to_owned()]);
        assert_eq!(e.at.to_rfc3339(), "2024-11-22T23:41:12.126+00:00");
    }

    #[test]
    fn bad_signatures_old_timestamps_and_tampering_are_refused() {
        let now = 1_795_000_000;
        assert!(
            deliver(BOUNCED, "msg_1", now - 301, None, now).is_err(),
            "too old"
        );
        let key = SigningKey::new(SECRET).unwrap();
        let sig = key.sign("msg_1", now, BOUNCED.as_bytes());
        let tampered = BOUNCED.replace("Permanent", "Transient");
        assert_eq!(
            deliver(&tampered, "msg_1", now, Some(sig.clone()), now)
                .unwrap_err()
                .code(),
            "unauthenticated"
        );
        let other = SigningKey::new("whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap();
        let wrong = other.sign("msg_1", now, BOUNCED.as_bytes());
        assert!(deliver(BOUNCED, "msg_1", now, Some(wrong.clone()), now).is_err());
        // During a rotation: the old secret's and the new one's, one valid.
        assert!(deliver(BOUNCED, "msg_1", now, Some(format!("{wrong} {sig}")), now).is_ok());
    }

    #[test]
    fn unknown_types_are_acknowledged_with_nothing_to_do() {
        let now = 1_795_000_000;
        for body in [
            r#"{"type":"contact.created","created_at":"2026-01-01T00:00:00Z","data":{"id":"c1"}}"#,
            r#"{"type":"domain.updated","created_at":"2026-01-01T00:00:00Z","data":{}}"#,
            r#"{"type":"email.received","created_at":"2026-01-01T00:00:00Z","data":{"email_id":"x"}}"#,
        ] {
            assert!(
                deliver(body, "msg_2", now, None, now)
                    .unwrap()
                    .emails
                    .is_empty(),
                "{body}"
            );
        }
        let soft = BOUNCED.replace("\"Permanent\"", "\"Transient\"");
        let e = deliver(&soft, "msg_3", now, None, now).unwrap();
        assert!(matches!(
            e.emails[0].kind,
            EmailEventKind::Bounced {
                permanent: false,
                ..
            }
        ));
        assert!(
            deliver("[1]", "msg_4", now, None, now)
                .unwrap_err()
                .is_validation()
        );
    }
}
