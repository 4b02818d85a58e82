//! The local master key: a file of 32 random bytes (base64), mode 0600, created on
//! first run. It wraps per-context data keys exactly as KMS would, so the envelope
//! format is the same on one machine and on AWS.

use std::io::Write as _;
use std::path::Path;

use async_trait::async_trait;
use base64::Engine as _;
use kpi_core::ports::CredentialContext;
use kpi_core::{Error, Result};
use ring::rand::{SecureRandom, SystemRandom};
use zeroize::Zeroizing;

use crate::envelope::{aead_open, aead_seal};
use crate::{DataKey, KEY_LEN, KeySource, tags};

pub struct LocalMasterKey {
    key: Zeroizing<[u8; KEY_LEN]>,
    rng: SystemRandom,
}

impl LocalMasterKey {
    pub fn from_bytes(key: Zeroizing<[u8; KEY_LEN]>) -> Self {
        Self {
            key,
            rng: SystemRandom::new(),
        }
    }

    /// Loads the key at `path`, creating it (and its folder) with mode 0600 when
    /// absent. Refuses a key file that other users can read.
    pub fn load_or_create(path: &Path) -> Result<Self> {
        match std::fs::read_to_string(path) {
            Ok(text) => {
                check_private(path)?;
                let bytes = Zeroizing::new(
                    base64::engine::general_purpose::STANDARD
                        .decode(text.trim())
                        .map_err(|_| bad_file(path))?,
                );
                let key: [u8; KEY_LEN] = bytes.as_slice().try_into().map_err(|_| bad_file(path))?;
                Ok(Self::from_bytes(Zeroizing::new(key)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Self::create(path),
            Err(e) => Err(Error::config(format!(
                "cannot read the master key file {}",
                path.display()
            ))
            .with_source(e)),
        }
    }

    fn create(path: &Path) -> Result<Self> {
        let rng = SystemRandom::new();
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill(&mut *key)
            .map_err(|_| Error::internal("no randomness available"))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io_error(dir, e))?;
        }
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        match options.open(path) {
            Ok(mut file) => {
                let text = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(*key));
                file.write_all(text.as_bytes())
                    .and_then(|_| file.sync_all())
                    .map_err(|e| io_error(path, e))?;
                tracing::info!(path = %path.display(), "created a new local master key");
                Ok(Self { key, rng })
            }
            // Another process created it first: use theirs.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load_or_create(path),
            Err(e) => Err(io_error(path, e)),
        }
    }

    fn wrapping_aad(context: &CredentialContext) -> Vec<u8> {
        format!("kpi-data-key|{}", context.canonical()).into_bytes()
    }
}

fn bad_file(path: &Path) -> Error {
    Error::config(format!(
        "the master key file {} is not a base64 32-byte key",
        path.display()
    ))
}

fn io_error(path: &Path, e: std::io::Error) -> Error {
    Error::config(format!(
        "cannot create the master key file {}",
        path.display()
    ))
    .with_source(e)
}

#[cfg(unix)]
fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path)
        .map_err(|e| io_error(path, e))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(Error::config(format!(
            "the master key file {} is readable by other users; run chmod 600 on it",
            path.display()
        )));
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path) -> Result<()> {
    Ok(())
}

#[async_trait]
impl KeySource for LocalMasterKey {
    fn tag(&self) -> u8 {
        tags::LOCAL
    }

    async fn generate_data_key(&self, context: &CredentialContext) -> Result<DataKey> {
        let mut plaintext = Zeroizing::new([0u8; KEY_LEN]);
        self.rng
            .fill(&mut *plaintext)
            .map_err(|_| Error::internal("no randomness available"))?;
        let wrapped = aead_seal(
            &self.rng,
            &self.key,
            &Self::wrapping_aad(context),
            &*plaintext,
        )?;
        Ok(DataKey { plaintext, wrapped })
    }

    async fn decrypt_data_key(
        &self,
        context: &CredentialContext,
        wrapped: &[u8],
    ) -> Result<Zeroizing<[u8; KEY_LEN]>> {
        let plain = aead_open(&self.key, &Self::wrapping_aad(context), wrapped)?;
        let key: [u8; KEY_LEN] = plain
            .as_slice()
            .try_into()
            .map_err(|_| Error::internal("wrapped data key has the wrong length"))?;
        Ok(Zeroizing::new(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_with_mode_0600_and_reloaded() {
        let dir = std::env::temp_dir().join(format!("kpi-key-{}", std::process::id()));
        let path = dir.join("nested/master.key");
        let _ = std::fs::remove_dir_all(&dir);
        let a = LocalMasterKey::load_or_create(&path).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let b = LocalMasterKey::load_or_create(&path).unwrap();
        assert_eq!(*a.key, *b.key);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let err = LocalMasterKey::load_or_create(&path).err().unwrap();
            assert!(err.message().contains("chmod 600"));
        }
        std::fs::write(&path, "short").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        assert!(LocalMasterKey::load_or_create(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
