//! Svix webhook signatures, as Resend's webhooks are signed: the `whsec_`
//! secret's base64 bytes are the HMAC-SHA256 key over
//! `"{svix-id}.{svix-timestamp}.{raw body}"`; `svix-signature` is a
//! space-separated list of `v1,<base64>` entries (several during a secret
//! rotation), any of which may match; the timestamp must be within five
//! minutes of now.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kpi_core::{Error, Result};
use ring::hmac;

/// How far a delivery's timestamp may be from now, either way.
pub const TOLERANCE_SECONDS: i64 = 5 * 60;

/// A signing key from its `whsec_…` (or bare base64) form.
pub struct SigningKey(hmac::Key);

impl SigningKey {
    pub fn new(secret: &str) -> Result<Self> {
        let encoded = secret.strip_prefix("whsec_").unwrap_or(secret);
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| Error::config("the webhook signing secret is not base64 after whsec_"))?;
        if bytes.is_empty() {
            return Err(Error::config("the webhook signing secret is empty"));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, &bytes)))
    }

    /// `v1,<base64 signature>` of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = hmac::sign(&self.0, &signed_content(id, timestamp, body));
        format!("v1,{}", STANDARD.encode(tag.as_ref()))
    }

    /// Checks the three headers against the raw body at `now` (Unix seconds).
    /// Every failure is `Unauthenticated`, with no detail of which part failed
    /// beyond what a sender may know.
    pub fn verify(
        &self,
        id: Option<&str>,
        timestamp: Option<&str>,
        signatures: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<()> {
        let (id, ts, signatures) = screen(id, timestamp, signatures, now)?;
        let content = signed_content(id, ts, body);
        let matched = signatures
            .split(' ')
            .filter_map(|entry| entry.split_once(','))
            .filter(|(version, _)| *version == "v1")
            .filter_map(|(_, sig)| STANDARD.decode(sig).ok())
            // ring compares in constant time.
            .any(|sig| hmac::verify(&self.0, &content, &sig).is_ok());
        if matched {
            Ok(())
        } else {
            Err(Error::unauthenticated(
                "the webhook signature does not match",
            ))
        }
    }
}

/// What is refused without the key: a header missing, or a timestamp that
/// is no number or outside [`TOLERANCE_SECONDS`] of `now` (a replay). Gives
/// the id, the timestamp and the signatures to check.
pub fn screen<'a>(
    id: Option<&'a str>,
    timestamp: Option<&str>,
    signatures: Option<&'a str>,
    now: i64,
) -> Result<(&'a str, i64, &'a str)> {
    let (Some(id), Some(timestamp), Some(signatures)) = (id, timestamp, signatures) else {
        return Err(Error::unauthenticated(
            "missing svix-id, svix-timestamp or svix-signature",
        ));
    };
    let ts: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| Error::unauthenticated("svix-timestamp is not a number"))?;
    if ts < 0 || ts + TOLERANCE_SECONDS < now || ts > now + TOLERANCE_SECONDS {
        return Err(Error::unauthenticated(
            "svix-timestamp is too old or too far ahead",
        ));
    }
    Ok((id, ts, signatures))
}

fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = format!("{id}.{timestamp}.").into_bytes();
    content.extend_from_slice(body);
    content
}

#[cfg(test)]
mod tests {
    use super::*;

    // Svix's published vectors (A: four SDKs; B: the Rust SDK).
    const A_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const A_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const A_TS: i64 = 1614265330;
    const A_BODY: &str = r#"{"test": 2432232314}"#;
    const A_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";
    const B_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const B_ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const B_TS: i64 = 1649367553;
    const B_BODY: &str = r#"{"email":"test@example.com","username":"test_user"}"#;
    const B_SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn verify(key: &SigningKey, id: &str, ts: i64, sig: &str, body: &str, now: i64) -> Result<()> {
        key.verify(
            Some(id),
            Some(&ts.to_string()),
            Some(sig),
            body.as_bytes(),
            now,
        )
    }

    #[test]
    fn both_official_vectors_sign_and_verify() {
        let a = SigningKey::new(A_SECRET).unwrap();
        assert_eq!(a.sign(A_ID, A_TS, A_BODY.as_bytes()), A_SIG);
        verify(&a, A_ID, A_TS, A_SIG, A_BODY, A_TS).unwrap();
        let b = SigningKey::new(B_SECRET).unwrap();
        assert_eq!(b.sign(B_ID, B_TS, B_BODY.as_bytes()), B_SIG);
        verify(&b, B_ID, B_TS, B_SIG, B_BODY, B_TS + 299).unwrap();
        // The bare secret (no whsec_) is the same key.
        let bare = SigningKey::new(A_SECRET.trim_start_matches("whsec_")).unwrap();
        assert_eq!(bare.sign(A_ID, A_TS, A_BODY.as_bytes()), A_SIG);
    }

    #[test]
    fn the_large_payload_vectors_match() {
        let a = SigningKey::new(A_SECRET).unwrap();
        for (n, sig) in [
            (1_048_576, "v1,txpEUxqWZJ5nteTnymUVa+7C4NHpBeXJ6CsBAW0c3/A="),
            (262_144, "v1,Mw4Pe2WgApuT7NSqnSq0PQPV9gbLdggCl9B865x5Xh0="),
            (262_143, "v1,NTItnqyWMoFhk2Bbe5V/BMdcFRWgcSQaTgqLHX7FC7c="),
        ] {
            assert_eq!(a.sign(A_ID, A_TS, "a".repeat(n).as_bytes()), sig, "{n}");
        }
    }

    #[test]
    fn one_valid_signature_among_rotated_ones_is_enough() {
        let b = SigningKey::new(B_SECRET).unwrap();
        let header = format!(
            "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q= {B_SIG} v1,9DfC1c3eeOrXB6w/5dIDydLNQaEyww5KalE5jLBZucE="
        );
        verify(&b, B_ID, B_TS, &header, B_BODY, B_TS).unwrap();
        let decoys = "v1,tFtCZ5RDCPxzWQRWXWPgrCgE2frDBe9gjpbWQxnVfsQ= v1,Mm7xgUVICxZfQ3bgf0h0Dof65L/IFx+PnZvnDWPCX6Q=";
        assert!(verify(&b, B_ID, B_TS, decoys, B_BODY, B_TS).is_err());
        // Another version's entry with the right bytes does not count.
        let v2 = B_SIG.replacen("v1,", "v1a,", 1);
        assert!(verify(&b, B_ID, B_TS, &v2, B_BODY, B_TS).is_err());
    }

    #[test]
    fn tampering_time_and_wrong_secrets_are_refused() {
        let a = SigningKey::new(A_SECRET).unwrap();
        let refused = |r: Result<()>| assert_eq!(r.unwrap_err().code(), "unauthenticated");
        refused(verify(
            &a,
            A_ID,
            A_TS,
            A_SIG,
            r#"{"test": 2432232315}"#,
            A_TS,
        ));
        refused(verify(&a, "msg_other", A_TS, A_SIG, A_BODY, A_TS));
        refused(verify(&a, A_ID, A_TS + 1, A_SIG, A_BODY, A_TS));
        refused(verify(&a, A_ID, A_TS, A_SIG, A_BODY, A_TS + 301));
        refused(verify(&a, A_ID, A_TS, A_SIG, A_BODY, A_TS - 301));
        refused(verify(
            &a,
            A_ID,
            A_TS,
            "v1,dawfeoifkpqwoekfpqoekf",
            A_BODY,
            A_TS,
        ));
        refused(verify(&a, A_ID, A_TS, &A_SIG[..8], A_BODY, A_TS));
        refused(verify(&a, A_ID, A_TS, "v1,", A_BODY, A_TS));
        refused(verify(
            &SigningKey::new(B_SECRET).unwrap(),
            A_ID,
            A_TS,
            A_SIG,
            A_BODY,
            A_TS,
        ));
        refused(a.verify(
            Some(A_ID),
            Some("hello"),
            Some(A_SIG),
            A_BODY.as_bytes(),
            A_TS,
        ));
        refused(a.verify(None, Some("1"), Some(A_SIG), A_BODY.as_bytes(), A_TS));
        refused(a.verify(Some(A_ID), None, Some(A_SIG), A_BODY.as_bytes(), A_TS));
        refused(a.verify(Some(A_ID), Some("1"), None, A_BODY.as_bytes(), A_TS));
        assert!(SigningKey::new("whsec_").is_err());
        assert!(SigningKey::new("whsec_%%%").is_err());
    }
}
