//! Envelope encryption of integration credentials.
//!
//! Each credential blob is encrypted with AES-256-GCM under a data key. The data
//! key comes from a [`KeySource`] (AWS KMS `GenerateDataKey`, or a local master
//! key), bound to the [`CredentialContext`] — KMS encryption context on the AWS
//! side, AES-GCM associated data on both — and only its wrapped form is stored
//! next to the ciphertext. The same context is the associated data of the
//! credential encryption itself, so a blob moved to another row fails to open.
//!
//! A small bounded cache keeps recently used data keys for a short time so KMS is
//! called per integration and per few minutes, not per read.

mod cache;
mod envelope;
mod local_key;

pub use cache::CacheSettings;
pub use envelope::{EnvelopeVault, FORMAT_VERSION};
pub use local_key::LocalMasterKey;

use async_trait::async_trait;
use kpi_core::Result;
use kpi_core::ports::CredentialContext;
use zeroize::Zeroizing;

/// Length of AES-256 keys.
pub const KEY_LEN: usize = 32;

/// A fresh data key: plaintext for use in memory, wrapped for storage.
pub struct DataKey {
    pub plaintext: Zeroizing<[u8; KEY_LEN]>,
    pub wrapped: Vec<u8>,
}

/// Where data keys come from. Implementations: KMS (in `kpi-aws`) and
/// [`LocalMasterKey`].
#[async_trait]
pub trait KeySource: Send + Sync {
    /// One byte written into every envelope so a blob sealed by one kind of key
    /// source is refused clearly by another.
    fn tag(&self) -> u8;

    async fn generate_data_key(&self, context: &CredentialContext) -> Result<DataKey>;

    async fn decrypt_data_key(
        &self,
        context: &CredentialContext,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>>;
}

/// Tags of the key sources, stored in the envelope header.
pub mod tags {
    pub const KMS: u8 = 1;
    pub const LOCAL: u8 = 2;
}
