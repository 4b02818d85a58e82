//! Short ASCII names kept inline: provider ids (`ga4`) and metric names
//! (`ga4.sessions`). Inline storage keeps them `Copy` and usable in constants,
//! while the set of names stays open: which ones exist is the provider
//! registry's business, not a closed enum's.

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

/// Longest name kept.
pub const MAX_LEN: usize = 48;

/// `[a-z0-9_.]`, starting with a letter, at most [`MAX_LEN`] bytes.
#[derive(Clone, Copy)]
pub struct ShortName {
    len: u8,
    bytes: [u8; MAX_LEN],
}

const fn allowed(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'.'
}

impl ShortName {
    /// For constants: a bad name stops the build (or panics at run time).
    pub const fn new(name: &str) -> Self {
        match Self::try_new(name) {
            Some(n) => n,
            None => panic!("names are 1-48 of [a-z0-9_.], starting with a letter"),
        }
    }

    pub const fn try_new(name: &str) -> Option<Self> {
        let src = name.as_bytes();
        if src.is_empty() || src.len() > MAX_LEN || !src[0].is_ascii_lowercase() {
            return None;
        }
        let mut bytes = [0u8; MAX_LEN];
        let mut i = 0;
        while i < src.len() {
            if !allowed(src[i]) {
                return None;
            }
            bytes[i] = src[i];
            i += 1;
        }
        Some(Self {
            len: src.len() as u8,
            bytes,
        })
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII is ever stored (checked in `try_new`).
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).unwrap_or_default()
    }
}

impl PartialEq for ShortName {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}
impl Eq for ShortName {}

impl Hash for ShortName {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl PartialOrd for ShortName {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for ShortName {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl fmt::Debug for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ShortName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Serde and schema impls for a newtype over [`ShortName`] parsed by `FromStr`.
macro_rules! short_name_serde {
    ($ty:ty, $description:literal, $example:literal) => {
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::fmt::Debug for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                std::fmt::Debug::fmt(self.as_str(), f)
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .description(Some($description))
                    .examples([serde_json::json!($example)])
                    .into()
            }
        }

        #[cfg(feature = "openapi")]
        impl utoipa::ToSchema for $ty {}
    };
}
pub(crate) use short_name_serde;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_and_compare_by_text() {
        assert_eq!(ShortName::new("ga4").as_str(), "ga4");
        assert_eq!(
            ShortName::new("ga4.sessions"),
            ShortName::new("ga4.sessions")
        );
        assert!(ShortName::new("a") < ShortName::new("ab"));
        assert!(ShortName::new("b") > ShortName::new("ab"));
        for bad in [
            "",
            "GA4",
            "4ga",
            "ga-4",
            "ga 4",
            &"a".repeat(MAX_LEN + 1),
            "é",
        ] {
            assert!(ShortName::try_new(bad).is_none(), "{bad}");
        }
        assert!(ShortName::try_new(&"a".repeat(MAX_LEN)).is_some());
    }
}
