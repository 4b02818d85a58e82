//! Pagination with opaque cursors.

use base64::Engine as _;

use crate::error::Error;

/// A position in a listing, opaque to callers. Each backend puts its own resume
/// key inside; callers only hand it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor(String);

impl Cursor {
    /// Wraps a backend's resume key for the outside world.
    pub fn encode(resume_key: &str) -> Self {
        Self(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(resume_key))
    }

    /// Parses a cursor received from a caller back into the backend's resume key.
    pub fn decode(&self) -> Result<String, Error> {
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(&self.0)
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| Error::validation("cursor", "invalid cursor"))
    }

    pub fn from_token(token: impl Into<String>) -> Self {
        Self(token.into())
    }

    pub fn as_token(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageRequest {
    pub limit: u32,
    pub cursor: Option<Cursor>,
}

impl PageRequest {
    pub const MAX_LIMIT: u32 = 100;

    pub fn first(limit: u32) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            cursor: None,
        }
    }

    pub fn after(limit: u32, cursor: Cursor) -> Self {
        Self {
            limit: limit.clamp(1, Self::MAX_LIMIT),
            cursor: Some(cursor),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Present when more items may follow.
    pub next: Option<Cursor>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trip_and_garbage_is_a_validation_error() {
        let c = Cursor::encode("INT#123|x");
        assert_eq!(c.decode().unwrap(), "INT#123|x");
        assert_eq!(
            Cursor::from_token("!!").decode().unwrap_err().code(),
            "validation"
        );
        assert_eq!(PageRequest::first(0).limit, 1);
        assert_eq!(PageRequest::first(10_000).limit, 100);
    }
}
