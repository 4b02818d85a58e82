//! A bounded, short-lived cache of plaintext data keys.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use zeroize::Zeroizing;

use crate::KEY_LEN;

#[derive(Debug, Clone, Copy)]
pub struct CacheSettings {
    /// Most keys held at once.
    pub capacity: usize,
    /// How long a key may be reused after it was obtained.
    pub ttl: Duration,
}

impl Default for CacheSettings {
    fn default() -> Self {
        // Five minutes keeps a burst of syncs of one integration to one KMS call,
        // while a revoked KMS grant takes effect soon after.
        Self {
            capacity: 1024,
            ttl: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
pub(crate) enum CacheKey {
    /// The key to encrypt new blobs of one context with.
    Encrypt(String),
    /// The plaintext of one wrapped key under one context.
    Decrypt(String, Vec<u8>),
}

pub(crate) struct CachedKey {
    pub plaintext: Zeroizing<[u8; KEY_LEN]>,
    pub wrapped: Vec<u8>,
    obtained: Instant,
}

pub(crate) struct DataKeyCache {
    settings: CacheSettings,
    entries: Mutex<HashMap<CacheKey, CachedKey>>,
}

impl DataKeyCache {
    pub fn new(settings: CacheSettings) -> Self {
        Self {
            settings,
            entries: Mutex::new(HashMap::new()),
        }
    }

    pub fn get(&self, key: &CacheKey) -> Option<(Zeroizing<[u8; KEY_LEN]>, Vec<u8>)> {
        if self.settings.capacity == 0 {
            return None;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        match entries.get(key) {
            Some(e) if e.obtained.elapsed() < self.settings.ttl => {
                Some((e.plaintext.clone(), e.wrapped.clone()))
            }
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub fn put(&self, key: CacheKey, plaintext: Zeroizing<[u8; KEY_LEN]>, wrapped: Vec<u8>) {
        if self.settings.capacity == 0 {
            return;
        }
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.len() >= self.settings.capacity {
            let ttl = self.settings.ttl;
            entries.retain(|_, e| e.obtained.elapsed() < ttl);
        }
        if entries.len() >= self.settings.capacity {
            // Still full of live keys: drop the oldest one.
            if let Some(oldest) = entries
                .iter()
                .min_by_key(|(_, e)| e.obtained)
                .map(|(k, _)| k.clone())
            {
                entries.remove(&oldest);
            }
        }
        entries.insert(
            key,
            CachedKey {
                plaintext,
                wrapped,
                obtained: Instant::now(),
            },
        );
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(n: u8) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new([n; KEY_LEN])
    }

    #[test]
    fn bounded_and_expiring() {
        let cache = DataKeyCache::new(CacheSettings {
            capacity: 2,
            ttl: Duration::from_millis(50),
        });
        for n in 0..3u8 {
            cache.put(CacheKey::Encrypt(n.to_string()), key(n), vec![n]);
        }
        assert_eq!(cache.len(), 2);
        assert!(
            cache.get(&CacheKey::Encrypt("0".into())).is_none(),
            "oldest evicted"
        );
        assert!(cache.get(&CacheKey::Encrypt("2".into())).is_some());
        std::thread::sleep(Duration::from_millis(60));
        assert!(
            cache.get(&CacheKey::Encrypt("2".into())).is_none(),
            "expired"
        );
    }
}
