use async_trait::async_trait;
use secrecy::SecretString;

use crate::error::Result;

/// Application secrets (client secrets, webhook secrets, system API keys), looked
/// up by the configuration names of DESIGN.md.
#[async_trait]
pub trait AppSecrets: Send + Sync {
    async fn get(&self, name: &str) -> Result<Option<SecretString>>;
}
