use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_kms::Client;
use aws_sdk_kms::primitives::Blob;
use aws_sdk_kms::types::DataKeySpec;
use kpi_core::ports::CredentialContext;
use kpi_core::{Error, Result};
use kpi_vault::{DataKey, KEY_LEN, KeySource, tags};
use zeroize::Zeroizing;

use crate::error::{aws_error, code};

/// Data keys from AWS KMS, bound to the credential context as the KMS encryption
/// context: KMS refuses to decrypt a data key under any other context.
pub struct KmsKeySource {
    client: Client,
    key_id: String,
}

impl KmsKeySource {
    pub fn new(config: &SdkConfig, key_id: impl Into<String>) -> Self {
        Self {
            client: Client::new(config),
            key_id: key_id.into(),
        }
    }
}

fn to_key(bytes: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>> {
    let key: [u8; KEY_LEN] = bytes
        .try_into()
        .map_err(|_| Error::internal("KMS returned a data key of the wrong length"))?;
    Ok(Zeroizing::new(key))
}

#[async_trait]
impl KeySource for KmsKeySource {
    fn tag(&self) -> u8 {
        tags::KMS
    }

    async fn generate_data_key(&self, context: &CredentialContext) -> Result<DataKey> {
        let mut req = self
            .client
            .generate_data_key()
            .key_id(&self.key_id)
            .key_spec(DataKeySpec::Aes256);
        for (k, v) in context.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = req
            .send()
            .await
            .map_err(|e| aws_error("KMS GenerateDataKey", e))?;
        let plaintext = out
            .plaintext()
            .ok_or_else(|| Error::internal("KMS returned no plaintext data key"))?;
        let wrapped = out
            .ciphertext_blob()
            .ok_or_else(|| Error::internal("KMS returned no wrapped data key"))?;
        Ok(DataKey {
            plaintext: to_key(plaintext.as_ref())?,
            wrapped: wrapped.as_ref().to_vec(),
        })
    }

    async fn decrypt_data_key(
        &self,
        context: &CredentialContext,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let mut req = self
            .client
            .decrypt()
            .key_id(&self.key_id)
            .ciphertext_blob(Blob::new(wrapped));
        for (k, v) in context.pairs() {
            req = req.encryption_context(k, v);
        }
        let out = match req.send().await {
            Ok(out) => out,
            Err(e) if code(&e) == Some("InvalidCiphertextException") => {
                return Err(Error::internal(
                    "KMS refused the data key for this credential context",
                )
                .with_source(e));
            }
            Err(e) => return Err(aws_error("KMS Decrypt", e)),
        };
        let plaintext = out
            .plaintext()
            .ok_or_else(|| Error::internal("KMS returned no plaintext data key"))?;
        to_key(plaintext.as_ref())
    }
}
