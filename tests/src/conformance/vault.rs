//! The credential vault contract, for the local master key and for KMS.

use base64::Engine as _;
use kpi_core::credentials::{ConnectionCredentials, OAuthTokens};
use kpi_core::integration::SealedCredentials;
use kpi_core::ports::{CredentialContext, CredentialVault, Store};
use kpi_core::{IntegrationId, IntegrationStatus, Provider, WorkspaceId};
use secrecy::{ExposeSecret, SecretString};

use super::store::{integration, now, scope};

pub const ACCESS_TOKEN: &str = "ya29.PLAINTEXT-ACCESS-TOKEN-canary";
pub const REFRESH_TOKEN: &str = "1//PLAINTEXT-REFRESH-TOKEN-canary";

pub fn oauth_credentials() -> ConnectionCredentials {
    ConnectionCredentials::OAuth(OAuthTokens {
        access_token: SecretString::from(ACCESS_TOKEN.to_owned()),
        refresh_token: Some(SecretString::from(REFRESH_TOKEN.to_owned())),
        expires_at: Some(now()),
        scopes: vec!["https://www.googleapis.com/auth/analytics.readonly".into()],
    })
}

fn context(ws: &str, integration: IntegrationId, provider: Provider) -> CredentialContext {
    CredentialContext {
        workspace: WorkspaceId::parse(ws).unwrap(),
        integration,
        provider,
    }
}

pub async fn round_trip<V: CredentialVault>(vault: &V) {
    let ctx = context("ws-v", IntegrationId::new_random(), kpi_providers::ga4::ID);
    let sealed = vault.seal(&ctx, &oauth_credentials()).await.unwrap();
    assert!(!sealed.as_encoded().contains("PLAINTEXT"));
    match vault.open(&ctx, &sealed).await.unwrap() {
        ConnectionCredentials::OAuth(t) => {
            assert_eq!(t.access_token.expose_secret(), ACCESS_TOKEN);
            assert_eq!(t.refresh_token.unwrap().expose_secret(), REFRESH_TOKEN);
        }
        other => panic!("unexpected {other:?}"),
    }
    let key = ConnectionCredentials::api_key("re_live_key_canary");
    let ctx2 = context(
        "ws-v",
        IntegrationId::new_random(),
        kpi_providers::resend::ID,
    );
    let sealed_key = vault.seal(&ctx2, &key).await.unwrap();
    assert!(matches!(
        vault.open(&ctx2, &sealed_key).await.unwrap(),
        ConnectionCredentials::ApiKey { key, .. } if key.expose_secret() == "re_live_key_canary"
    ));
    // Two seals of the same credentials differ (fresh nonce each time).
    let again = vault.seal(&ctx, &oauth_credentials()).await.unwrap();
    assert_ne!(again, sealed);
}

pub async fn bound_to_its_context<V: CredentialVault>(vault: &V) {
    let id = IntegrationId::new_random();
    let ctx = context("ws-owner", id, kpi_providers::ga4::ID);
    let sealed = vault.seal(&ctx, &oauth_credentials()).await.unwrap();
    for wrong in [
        context("ws-thief", id, kpi_providers::ga4::ID),
        context(
            "ws-owner",
            IntegrationId::new_random(),
            kpi_providers::ga4::ID,
        ),
        context("ws-owner", id, kpi_providers::meta::ID),
    ] {
        let err = vault.open(&wrong, &sealed).await.unwrap_err();
        assert!(
            !format!("{err:?}").contains("PLAINTEXT"),
            "errors never carry plaintext"
        );
    }
    assert!(vault.open(&ctx, &sealed).await.is_ok());
}

pub async fn tampering_is_detected<V: CredentialVault>(vault: &V) {
    let ctx = context("ws-t", IntegrationId::new_random(), kpi_providers::ga4::ID);
    let sealed = vault.seal(&ctx, &oauth_credentials()).await.unwrap();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(sealed.as_encoded())
        .unwrap();
    let wrapped_len = usize::from(u16::from_be_bytes([bytes[2], bytes[3]]));
    let body = 4 + wrapped_len;
    // Header, wrapped data key, nonce, ciphertext and tag: each flipped byte fails.
    for position in [
        0,
        1,
        2,
        4,
        4 + wrapped_len / 2,
        body,
        body + 12,
        bytes.len() - 1,
    ] {
        let mut flipped = bytes.clone();
        flipped[position] ^= 0x01;
        let tampered = SealedCredentials::from_encoded(
            base64::engine::general_purpose::STANDARD.encode(&flipped),
        );
        assert!(
            vault.open(&ctx, &tampered).await.is_err(),
            "flipped byte {position} was accepted"
        );
    }
    let truncated = SealedCredentials::from_encoded(
        base64::engine::general_purpose::STANDARD.encode(&bytes[..bytes.len() - 1]),
    );
    assert!(vault.open(&ctx, &truncated).await.is_err());
}

/// Stores sealed credentials the way the app does and scans every raw row the
/// backend holds for the plaintext.
pub async fn store_holds_no_plaintext<S, V, F, Fut>(store: &S, vault: &V, dump: F)
where
    S: Store,
    V: CredentialVault,
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    let ws = scope("ws-scan");
    let mut i = integration("ws-scan", kpi_providers::ga4::ID);
    i.credentials = Some(
        vault
            .seal(&CredentialContext::of(&i), &oauth_credentials())
            .await
            .unwrap(),
    );
    i.transition(IntegrationStatus::Connected, now()).unwrap();
    store.create_integration(&ws, &i).await.unwrap();
    let mut key = integration("ws-scan", kpi_providers::resend::ID);
    key.credentials = Some(
        vault
            .seal(
                &CredentialContext::of(&key),
                &ConnectionCredentials::api_key("re_PLAINTEXT_API_KEY"),
            )
            .await
            .unwrap(),
    );
    store.create_integration(&ws, &key).await.unwrap();

    let rows = dump().await;
    assert!(rows.len() >= 2, "the scan sees the stored rows");
    for row in &rows {
        for secret in ["PLAINTEXT", "canary", "re_PLAINTEXT_API_KEY"] {
            assert!(
                !row.contains(secret),
                "plaintext credential in the store: {row}"
            );
        }
    }
    // And what is stored still opens.
    let back = store.get_integration(&ws, i.id).await.unwrap();
    let opened = vault
        .open(
            &CredentialContext::of(&back),
            back.credentials.as_ref().unwrap(),
        )
        .await
        .unwrap();
    assert!(matches!(opened, ConnectionCredentials::OAuth(_)));
}
