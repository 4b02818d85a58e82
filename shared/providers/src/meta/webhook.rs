//! Meta webhooks: the endpoint check (`hub.challenge`) and signed ad-account
//! deliveries. The signature (`X-Hub-Signature-256`, HMAC-SHA256 of the raw
//! body with the app secret) is checked before a byte of the body is parsed.

use kpi_core::ports::provider::{WebhookDelivery, WebhookEvents};
use kpi_core::{Error, Result};
use ring::{digest, hmac};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "x-hub-signature-256";

/// Ad-account fields whose events may change the numbers (ads stopped with
/// issues, ads leaving review, fatigue, …); anything else is acknowledged and
/// ignored.
pub const SYNC_FIELDS: [&str; 6] = [
    "with_issues_ad_objects",
    "in_process_ad_objects",
    "ad_recommendations",
    "creative_fatigue",
    "product_set_issue",
    "ads_async_creation_request",
];

/// The longest `hub.challenge` echoed back.
const MAX_CHALLENGE: usize = 256;

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// Meta's endpoint check: echo `hub.challenge` when `hub.mode=subscribe` and
/// `hub.verify_token` is ours (compared in constant time).
pub fn challenge(
    verify_token: Option<&SecretString>,
    params: &[(String, String)],
) -> Result<String> {
    let Some(expected) = verify_token else {
        return Err(Error::unauthenticated(
            "webhook verification is off: META_WEBHOOK_VERIFY_TOKEN is not set",
        ));
    };
    let given = param(params, "hub.verify_token").unwrap_or_default();
    let matches: bool = given
        .as_bytes()
        .ct_eq(expected.expose_secret().as_bytes())
        .into();
    if param(params, "hub.mode") != Some("subscribe") || !matches {
        return Err(Error::unauthenticated("the verify token does not match"));
    }
    let challenge = param(params, "hub.challenge").unwrap_or_default();
    if challenge.is_empty()
        || challenge.len() > MAX_CHALLENGE
        || !challenge
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(Error::validation(
            "hub.challenge",
            "missing or not a plain token",
        ));
    }
    Ok(challenge.to_owned())
}

/// `sha256=<lowercase hex>` of `body` under `secret`: what Meta sends.
pub fn signature(secret: &SecretString, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.expose_secret().as_bytes());
    format!("sha256={}", hex::encode(hmac::sign(&key, body).as_ref()))
}

#[derive(Deserialize)]
struct Delivery {
    #[serde(default)]
    object: String,
    #[serde(default)]
    entry: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(default)]
    id: serde_json::Value,
    #[serde(default)]
    changes: Vec<Change>,
}

#[derive(Deserialize)]
struct Change {
    #[serde(default)]
    field: String,
}

/// The signature a delivery carries: `sha256=` and the hex of 32 bytes.
fn given_signature(delivery: &WebhookDelivery<'_>) -> Result<Vec<u8>> {
    delivery
        .header(SIGNATURE_HEADER)
        .and_then(|v| v.trim().strip_prefix("sha256="))
        .and_then(|hex_sig| hex::decode(hex_sig).ok())
        .filter(|sig| sig.len() == digest::SHA256_OUTPUT_LEN)
        .ok_or_else(|| Error::unauthenticated("missing or malformed X-Hub-Signature-256"))
}

/// What is refused without the app secret: a delivery without a well-formed
/// signature.
pub fn screen(delivery: &WebhookDelivery<'_>) -> Result<()> {
    given_signature(delivery).map(|_| ())
}

/// Verifies the signature, then reads the ad accounts the delivery concerns.
pub fn read(app_secret: &SecretString, delivery: &WebhookDelivery<'_>) -> Result<WebhookEvents> {
    let given = given_signature(delivery)?;
    let key = hmac::Key::new(hmac::HMAC_SHA256, app_secret.expose_secret().as_bytes());
    // ring compares in constant time.
    hmac::verify(&key, delivery.body, &given)
        .map_err(|_| Error::unauthenticated("the webhook signature does not match"))?;

    let parsed: Delivery = serde_json::from_slice(delivery.body)
        .map_err(|_| Error::validation("body", "not a Meta webhook delivery"))?;
    let mut resources = Vec::new();
    if parsed.object == "ad_account" {
        for entry in &parsed.entry {
            let id = match &entry.id {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            let id = id.strip_prefix("act_").unwrap_or(&id);
            let wanted = entry
                .changes
                .iter()
                .any(|c| SYNC_FIELDS.contains(&c.field.as_str()));
            if wanted && !id.is_empty() && id.len() <= 32 && id.bytes().all(|b| b.is_ascii_digit())
            {
                let resource = format!("act_{id}");
                if !resources.contains(&resource) {
                    resources.push(resource);
                }
            }
        }
    }
    Ok(WebhookEvents {
        // Meta redelivers the same bytes: their digest names the delivery.
        delivery: hex::encode(digest::digest(&digest::SHA256, delivery.body).as_ref()),
        resources,
        emails: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    const SECRET: &str = "app_secret_123";
    /// The reference delivery and its signature (exact bytes).
    const BODY: &str = r#"{"object":"ad_account","entry":[{"id":"1234567890","time":1782862117,"changes":[{"field":"with_issues_ad_objects","value":{"id":"111111111111","level":"AD","error_code":"567","error_summary":"error summary","error_message":"error message"}}]}]}"#;
    const SIGNATURE: &str =
        "sha256=c5722b70226b9c78973bbf10fa75708bcce067b03608ec76dd7e6706acbe9b35";

    fn secret(s: &str) -> SecretString {
        SecretString::from(s.to_owned())
    }

    fn deliver(body: &str, signature: Option<&str>) -> Result<WebhookEvents> {
        let headers: Vec<(String, String)> = signature
            .map(|s| vec![("x-hub-signature-256".to_owned(), s.to_owned())])
            .unwrap_or_default();
        read(
            &secret(SECRET),
            &WebhookDelivery {
                headers: &headers,
                body: body.as_bytes(),
                now: Utc::now(),
            },
        )
    }

    #[test]
    fn signs_the_reference_vectors() {
        assert_eq!(signature(&secret(SECRET), BODY.as_bytes()), SIGNATURE);
        assert_eq!(
            signature(&secret("secret"), b"test"),
            "sha256=0329a06b62cd16b33eb6792be8c60b158d89a2ee3a876fce9a881ebb488c0914"
        );
    }

    #[test]
    fn the_reference_delivery_names_its_ad_account() {
        let events = deliver(BODY, Some(SIGNATURE)).unwrap();
        assert_eq!(events.resources, vec!["act_1234567890".to_owned()]);
        assert_eq!(events.delivery.len(), 64);
        assert_eq!(
            deliver(BODY, Some(SIGNATURE)).unwrap(),
            events,
            "same bytes, same delivery"
        );
    }

    #[test]
    fn forged_missing_or_malformed_signatures_are_refused_before_parsing() {
        let tampered = BODY.replace("1234567890", "1234567891");
        for (body, sig) in [
            (tampered.as_str(), Some(SIGNATURE)),
            (BODY, None),
            (BODY, Some("sha1=c5722b70")),
            (BODY, Some("sha256=zz")),
            (
                BODY,
                Some("sha256=c5722b70226b9c78973bbf10fa75708bcce067b03608ec76dd7e6706acbe9b34"),
            ),
            ("not json at all", Some(SIGNATURE)),
        ] {
            let err = deliver(body, sig).unwrap_err();
            assert_eq!(err.code(), "unauthenticated", "{sig:?}");
        }
    }

    #[test]
    fn unknown_objects_and_fields_ask_for_nothing() {
        let s = secret(SECRET);
        for body in [
            r#"{"object":"page","entry":[{"id":"1","changes":[{"field":"feed"}]}]}"#,
            r#"{"object":"ad_account","entry":[{"id":"1","changes":[{"field":"something_new"}]}]}"#,
            r#"{"object":"ad_account","entry":[{"id":"act_../x","changes":[{"field":"creative_fatigue"}]}]}"#,
        ] {
            let sig = signature(&s, body.as_bytes());
            assert!(
                deliver(body, Some(&sig)).unwrap().resources.is_empty(),
                "{body}"
            );
        }
        let body = "[1,2]";
        let sig = signature(&s, body.as_bytes());
        assert!(deliver(body, Some(&sig)).unwrap_err().is_validation());
    }

    #[test]
    fn the_handshake_echoes_the_challenge_only_for_the_right_token() {
        let token = secret("verify-me");
        let q = |mode: &str, t: &str, c: &str| {
            vec![
                ("hub.mode".to_owned(), mode.to_owned()),
                ("hub.verify_token".to_owned(), t.to_owned()),
                ("hub.challenge".to_owned(), c.to_owned()),
            ]
        };
        assert_eq!(
            challenge(Some(&token), &q("subscribe", "verify-me", "1158201444")).unwrap(),
            "1158201444"
        );
        for params in [
            q("subscribe", "verify-you", "1158201444"),
            q("unsubscribe", "verify-me", "1158201444"),
            q("subscribe", "", "1158201444"),
        ] {
            assert_eq!(
                challenge(Some(&token), &params).unwrap_err().code(),
                "unauthenticated"
            );
        }
        assert!(challenge(Some(&token), &q("subscribe", "verify-me", "<script>")).is_err());
        assert!(challenge(None, &q("subscribe", "", "1")).is_err());
    }
}
