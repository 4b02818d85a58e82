//! Identifiers, parsed at the edge so an invalid one cannot exist inside.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize};
use uuid::Uuid;

use crate::error::Error;

/// A workspace of the dashboard product. Ids are chosen by that product, so we
/// accept its usual alphabet but bound the length and characters: ids end up in
/// store keys and URLs, and `#` is our key separator.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct WorkspaceId(String);

impl WorkspaceId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(value: &str) -> Result<Self, Error> {
        let ok = !value.is_empty()
            && value.len() <= Self::MAX_LEN
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(Error::validation(
                "workspace",
                "workspace id must be 1-64 characters of letters, digits, '-' or '_'",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! uuid_id {
    ($(#[$doc:meta])* $name:ident, $field:literal, $what:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            pub fn parse(value: &str) -> Result<Self, Error> {
                // Only the canonical hyphenated lowercase form: one spelling per id,
                // so ids compare equal as strings in store keys and URLs.
                match Uuid::try_parse(value) {
                    Ok(uuid) if uuid.hyphenated().to_string() == value => Ok(Self(uuid)),
                    _ => Err(Error::validation($field, concat!($what, " id must be a UUID"))),
                }
            }

            pub fn from_uuid(uuid: Uuid) -> Self {
                Self(uuid)
            }

            pub fn as_uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0.hyphenated(), f)
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                Self::parse(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::parse(&s).map_err(serde::de::Error::custom)
            }
        }
    };
}

uuid_id!(
    /// An integration: one connected provider account of one workspace.
    IntegrationId, "integration", "integration"
);
uuid_id!(
    /// A sync job. Version 7 UUIDs, so ids sort by creation time.
    JobId, "job", "job"
);

uuid_id!(
    /// A KPI alert rule. Version 7 UUIDs, so rules list in creation order.
    AlertId, "alert", "alert"
);

impl AlertId {
    pub fn new_time_ordered() -> Self {
        Self(Uuid::now_v7())
    }
}

impl IntegrationId {
    pub fn new_random() -> Self {
        Self(Uuid::new_v4())
    }
}

impl JobId {
    pub fn new_time_ordered() -> Self {
        Self(Uuid::now_v7())
    }
}

impl fmt::Display for WorkspaceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for WorkspaceId {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Self::parse(s)
    }
}

impl<'de> Deserialize<'de> for WorkspaceId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Self::parse(&s).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workspace_ids_are_bounded_and_keysafe() {
        assert!(WorkspaceId::parse("acme-prod_1").is_ok());
        for bad in ["", "a#b", "a b", "ws/1", "é", &"x".repeat(65)] {
            let err = WorkspaceId::parse(bad).unwrap_err();
            assert_eq!(err.code(), "validation", "{bad:?}");
        }
    }

    #[test]
    fn uuid_ids_accept_only_the_canonical_form() {
        let id = IntegrationId::new_random();
        assert_eq!(IntegrationId::parse(&id.to_string()).unwrap(), id);
        assert!(IntegrationId::parse(&id.to_string().to_uppercase()).is_err());
        assert!(IntegrationId::parse(&id.as_uuid().simple().to_string()).is_err());
        assert!(JobId::parse("not-a-uuid").is_err());
        assert!(serde_json::from_str::<JobId>("\"42\"").is_err());
    }

    #[test]
    fn job_ids_sort_by_creation() {
        let a = JobId::new_time_ordered();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = JobId::new_time_ordered();
        assert!(a.to_string() < b.to_string());
    }
}
