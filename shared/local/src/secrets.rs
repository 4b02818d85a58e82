use std::collections::HashMap;
use std::path::Path;

use async_trait::async_trait;
use kpi_core::ports::AppSecrets;
use kpi_core::{Error, Result};
use secrecy::SecretString;

/// Secrets from the process environment, falling back to a `.env` file read once
/// at start. The environment wins, so a deployment can override the file.
#[derive(Default)]
pub struct EnvSecrets {
    file: HashMap<String, String>,
}

impl EnvSecrets {
    /// Reads `path` if it exists; a malformed file is a configuration error.
    pub fn load(path: &Path) -> Result<Self> {
        let iter = match dotenvy::from_path_iter(path) {
            Ok(iter) => iter,
            Err(e) if e.not_found() => return Ok(Self::default()),
            Err(e) => {
                return Err(Error::config(format!("cannot read {}", path.display())).with_source(e));
            }
        };
        let mut file = HashMap::new();
        for item in iter {
            let (k, v) = item.map_err(|e| {
                Error::config(format!("{} has a malformed line", path.display())).with_source(e)
            })?;
            file.insert(k, v);
        }
        Ok(Self { file })
    }

    /// Plain (non-secret) lookups for configuration: environment, then the file.
    pub fn lookup(&self, name: &str) -> Option<String> {
        std::env::var(name)
            .ok()
            .or_else(|| self.file.get(name).cloned())
    }
}

#[async_trait]
impl AppSecrets for EnvSecrets {
    async fn get(&self, name: &str) -> Result<Option<SecretString>> {
        Ok(self
            .lookup(name)
            .filter(|v| !v.is_empty())
            .map(SecretString::from))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn file_values_and_missing_file() {
        let dir = std::env::temp_dir().join(format!("kpi-env-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(".env");
        std::fs::write(&path, "KPI_TEST_ONLY_SECRET=from-file\n# comment\n").unwrap();
        let s = EnvSecrets::load(&path).unwrap();
        let v = s.get("KPI_TEST_ONLY_SECRET").await.unwrap().unwrap();
        assert_eq!(v.expose_secret(), "from-file");
        assert!(s.get("KPI_TEST_ONLY_ABSENT").await.unwrap().is_none());
        assert!(EnvSecrets::load(&dir.join("missing")).is_ok());
        std::fs::write(&path, "NOT A VALID LINE ===\n'unterminated").unwrap();
        assert!(EnvSecrets::load(&path).is_err());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
