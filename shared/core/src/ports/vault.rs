use async_trait::async_trait;

use crate::credentials::ConnectionCredentials;
use crate::error::Result;
use crate::ids::{IntegrationId, WorkspaceId};
use crate::integration::SealedCredentials;
use crate::provider::Provider;

/// What a ciphertext is bound to. Used as the KMS encryption context and as the
/// AES-GCM associated data, so a ciphertext copied to another row fails to open.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CredentialContext {
    pub workspace: WorkspaceId,
    pub integration: IntegrationId,
    pub provider: Provider,
}

impl CredentialContext {
    pub fn of(integration: &crate::Integration) -> Self {
        Self {
            workspace: integration.workspace.clone(),
            integration: integration.id,
            provider: integration.provider,
        }
    }

    /// The context as ordered key/value pairs (KMS encryption context).
    pub fn pairs(&self) -> [(&'static str, String); 3] {
        [
            ("workspace", self.workspace.to_string()),
            ("integration", self.integration.to_string()),
            ("provider", self.provider.to_string()),
        ]
    }

    /// One canonical byte string of the context (AES-GCM associated data).
    pub fn canonical(&self) -> String {
        self.pairs()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&")
    }
}

/// Encrypts and decrypts credentials, bound to their context.
#[async_trait]
pub trait CredentialVault: Send + Sync {
    async fn seal(
        &self,
        context: &CredentialContext,
        credentials: &ConnectionCredentials,
    ) -> Result<SealedCredentials>;

    async fn open(
        &self,
        context: &CredentialContext,
        sealed: &SealedCredentials,
    ) -> Result<ConnectionCredentials>;
}
