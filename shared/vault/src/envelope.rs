//! The versioned envelope format and the vault built on it.
//!
//! ```text
//! byte 0      format version (1)
//! byte 1      key source tag (1 = KMS, 2 = local master key)
//! bytes 2..4  length N of the wrapped data key, big endian
//! N bytes     wrapped data key
//! 12 bytes    AES-GCM nonce (random)
//! rest        AES-256-GCM ciphertext and 16-byte tag
//! ```
//! The whole envelope is stored base64-encoded. Associated data: the format
//! version and the canonical credential context.

use async_trait::async_trait;
use base64::Engine as _;
use kpi_core::credentials::ConnectionCredentials;
use kpi_core::integration::SealedCredentials;
use kpi_core::ports::{CredentialContext, CredentialVault};
use kpi_core::{Error, Result};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use secrecy::ExposeSecret;
use zeroize::Zeroizing;

use crate::cache::{CacheKey, DataKeyCache};
use crate::{CacheSettings, KEY_LEN, KeySource};

pub const FORMAT_VERSION: u8 = 1;
const HEADER_LEN: usize = 4;

pub struct EnvelopeVault<K> {
    keys: K,
    cache: DataKeyCache,
    rng: SystemRandom,
}

impl<K: KeySource> EnvelopeVault<K> {
    pub fn new(keys: K, cache: CacheSettings) -> Self {
        Self {
            keys,
            cache: DataKeyCache::new(cache),
            rng: SystemRandom::new(),
        }
    }

    pub fn key_source(&self) -> &K {
        &self.keys
    }

    async fn encryption_key(
        &self,
        context: &CredentialContext,
    ) -> Result<(Zeroizing<[u8; KEY_LEN]>, Vec<u8>)> {
        let cache_key = CacheKey::Encrypt(context.canonical());
        if let Some(hit) = self.cache.get(&cache_key) {
            return Ok(hit);
        }
        let fresh = self.keys.generate_data_key(context).await?;
        self.cache
            .put(cache_key, fresh.plaintext.clone(), fresh.wrapped.clone());
        // The same key also opens what it sealed without another KMS call.
        self.cache.put(
            CacheKey::Decrypt(context.canonical(), fresh.wrapped.clone()),
            fresh.plaintext.clone(),
            fresh.wrapped.clone(),
        );
        Ok((fresh.plaintext, fresh.wrapped))
    }

    async fn decryption_key(
        &self,
        context: &CredentialContext,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let cache_key = CacheKey::Decrypt(context.canonical(), wrapped.to_vec());
        if let Some((plaintext, _)) = self.cache.get(&cache_key) {
            return Ok(plaintext);
        }
        let plaintext = self.keys.decrypt_data_key(context, wrapped).await?;
        self.cache
            .put(cache_key, plaintext.clone(), wrapped.to_vec());
        Ok(plaintext)
    }
}

fn undecryptable() -> Error {
    // One message for every way opening can fail: a tampered or moved blob must
    // not tell an attacker which check it tripped.
    Error::internal("stored credentials could not be decrypted; reconnect the integration")
}

fn associated_data(context: &CredentialContext) -> Vec<u8> {
    let mut aad = vec![FORMAT_VERSION];
    aad.extend_from_slice(context.canonical().as_bytes());
    aad
}

/// AES-256-GCM seal of `plaintext` with a fresh random nonce; returns nonce || ct.
pub(crate) fn aead_seal(
    rng: &SystemRandom,
    key: &[u8; KEY_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    let key = LessSafeKey::new(
        UnboundKey::new(&AES_256_GCM, key).map_err(|_| Error::internal("invalid data key"))?,
    );
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut nonce)
        .map_err(|_| Error::internal("no randomness available"))?;
    let mut buf = Zeroizing::new(plaintext.to_vec());
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(aad),
        &mut *buf,
    )
    .map_err(|_| Error::internal("encryption failed"))?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    Ok(out)
}

/// Opens what [`aead_seal`] produced.
pub(crate) fn aead_open(
    key: &[u8; KEY_LEN],
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>> {
    if sealed.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return Err(undecryptable());
    }
    let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).map_err(|_| undecryptable())?);
    let (nonce, ct) = sealed.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| undecryptable())?;
    let mut buf = Zeroizing::new(ct.to_vec());
    let len = key
        .open_in_place(nonce, Aad::from(aad), &mut buf)
        .map_err(|_| undecryptable())?
        .len();
    buf.truncate(len);
    Ok(buf)
}

#[async_trait]
impl<K: KeySource> CredentialVault for EnvelopeVault<K> {
    async fn seal(
        &self,
        context: &CredentialContext,
        credentials: &ConnectionCredentials,
    ) -> Result<SealedCredentials> {
        let (key, wrapped) = self.encryption_key(context).await?;
        let wrapped_len = u16::try_from(wrapped.len())
            .map_err(|_| Error::internal("wrapped data key too long"))?;
        let plaintext = credentials.to_plaintext_json();
        let body = aead_seal(
            &self.rng,
            &key,
            &associated_data(context),
            plaintext.expose_secret(),
        )?;
        let mut envelope = Vec::with_capacity(HEADER_LEN + wrapped.len() + body.len());
        envelope.push(FORMAT_VERSION);
        envelope.push(self.keys.tag());
        envelope.extend_from_slice(&wrapped_len.to_be_bytes());
        envelope.extend_from_slice(&wrapped);
        envelope.extend_from_slice(&body);
        Ok(SealedCredentials::from_encoded(
            base64::engine::general_purpose::STANDARD.encode(envelope),
        ))
    }

    async fn open(
        &self,
        context: &CredentialContext,
        sealed: &SealedCredentials,
    ) -> Result<ConnectionCredentials> {
        let envelope = base64::engine::general_purpose::STANDARD
            .decode(sealed.as_encoded())
            .map_err(|_| undecryptable())?;
        if envelope.len() < HEADER_LEN || envelope[0] != FORMAT_VERSION {
            return Err(undecryptable());
        }
        if envelope[1] != self.keys.tag() {
            return Err(Error::config(
                "stored credentials were sealed by a different key source (KPI_VAULT changed?)",
            ));
        }
        let wrapped_len = usize::from(u16::from_be_bytes([envelope[2], envelope[3]]));
        let rest = &envelope[HEADER_LEN..];
        if rest.len() < wrapped_len {
            return Err(undecryptable());
        }
        let (wrapped, body) = rest.split_at(wrapped_len);
        let key = self
            .decryption_key(context, wrapped)
            .await
            .map_err(|e| match e.kind() {
                kpi_core::ErrorKind::Transient | kpi_core::ErrorKind::RateLimited { .. } => e,
                _ => undecryptable().with_source(e),
            })?;
        let plaintext = aead_open(&key, &associated_data(context), body)?;
        ConnectionCredentials::from_plaintext_json(&plaintext)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::LocalMasterKey;
    use kpi_core::{IntegrationId, Provider, WorkspaceId};

    fn ctx(ws: &str, int: IntegrationId) -> CredentialContext {
        CredentialContext {
            workspace: WorkspaceId::parse(ws).unwrap(),
            integration: int,
            provider: Provider::new("resend"),
        }
    }

    struct Counting<K>(K, Arc<AtomicUsize>);

    #[async_trait]
    impl<K: KeySource> KeySource for Counting<K> {
        fn tag(&self) -> u8 {
            self.0.tag()
        }
        async fn generate_data_key(&self, c: &CredentialContext) -> Result<crate::DataKey> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.generate_data_key(c).await
        }
        async fn decrypt_data_key(
            &self,
            c: &CredentialContext,
            w: &[u8],
        ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
            self.1.fetch_add(1, Ordering::SeqCst);
            self.0.decrypt_data_key(c, w).await
        }
    }

    fn key_source() -> LocalMasterKey {
        LocalMasterKey::from_bytes(Zeroizing::new([7u8; KEY_LEN]))
    }

    #[tokio::test]
    async fn cache_bounds_key_source_calls() {
        let calls = Arc::new(AtomicUsize::new(0));
        let vault = EnvelopeVault::new(
            Counting(key_source(), calls.clone()),
            CacheSettings::default(),
        );
        let c = ctx("ws", IntegrationId::new_random());
        let creds = ConnectionCredentials::api_key("re_secret");
        let sealed = vault.seal(&c, &creds).await.unwrap();
        for _ in 0..50 {
            vault.open(&c, &sealed).await.unwrap();
            vault.seal(&c, &creds).await.unwrap();
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);

        let uncached = EnvelopeVault::new(
            Counting(key_source(), calls.clone()),
            CacheSettings {
                capacity: 0,
                ttl: std::time::Duration::ZERO,
            },
        );
        uncached.open(&c, &sealed).await.unwrap();
        uncached.open(&c, &sealed).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn header_errors_are_refused() {
        let vault = EnvelopeVault::new(key_source(), CacheSettings::default());
        let c = ctx("ws", IntegrationId::new_random());
        for garbage in ["", "!!!", "AQ==", "AgIAAA=="] {
            let err = vault
                .open(&c, &SealedCredentials::from_encoded(garbage.into()))
                .await
                .unwrap_err();
            assert!(matches!(
                err.kind(),
                kpi_core::ErrorKind::Internal | kpi_core::ErrorKind::Config
            ));
        }
    }
}
