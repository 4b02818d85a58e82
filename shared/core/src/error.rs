//! The one error taxonomy of the system.
//!
//! Every failure, whether it comes from a request, a provider or a backend, is an
//! [`Error`] of one [`ErrorKind`]. The kind alone decides the HTTP status, whether a
//! queue message is retried, and what happens to the integration's status; those
//! three mappings live here and nowhere else.
//!
//! `message` is written for the person who will read it (user or operator) and
//! never contains secrets; the `source` chain is for logs only.

use std::fmt;
use std::time::Duration;

use crate::integration::IntegrationStatus;

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One invalid field of an input, reported back to the caller.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct FieldError {
    /// JSON-pointer-like path of the field, e.g. `settings.property_id`.
    pub field: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller of our API is not authenticated (missing/invalid token).
    Unauthenticated,
    /// The provider rejected the stored credentials: the user must reconnect.
    Reauth,
    /// The provider asked us to slow down; `retry_after` is its hint, if any.
    RateLimited { retry_after: Option<Duration> },
    /// A failure that may pass by itself (timeouts, 5xx, throttled backends).
    Transient,
    /// A failure that will not pass without someone changing configuration.
    Config,
    /// Input that does not meet the contract; nothing was changed.
    Validation { fields: Vec<FieldError> },
    /// The thing does not exist, or the caller may not know that it exists.
    NotFound,
    /// A concurrent writer won, or the thing already exists.
    Conflict,
    /// A bug or an invariant broken on our side.
    Internal,
}

/// What a queue consumer does with a message whose processing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryDecision {
    /// Put the message back; `after` is a wait the failure itself asked for.
    Retry { after: Option<Duration> },
    /// Retrying cannot help: fail the job now.
    GiveUp,
}

pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            source: None,
        }
    }

    /// Attach the underlying cause. It is logged, never shown to users.
    pub fn with_source(
        mut self,
        source: impl Into<Box<dyn std::error::Error + Send + Sync + 'static>>,
    ) -> Self {
        self.source = Some(source.into());
        self
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unauthenticated, message)
    }
    pub fn reauth(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Reauth, message)
    }
    pub fn rate_limited(retry_after: Option<Duration>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::RateLimited { retry_after }, message)
    }
    pub fn transient(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Transient, message)
    }
    pub fn config(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Config, message)
    }
    pub fn validation(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::new(
            ErrorKind::Validation {
                fields: vec![FieldError {
                    field: field.into(),
                    message: message.clone(),
                }],
            },
            message,
        )
    }
    pub fn validation_fields(message: impl Into<String>, fields: Vec<FieldError>) -> Self {
        Self::new(ErrorKind::Validation { fields }, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// A lost race or an existing thing: re-read and decide again.
    pub fn is_conflict(&self) -> bool {
        matches!(self.kind, ErrorKind::Conflict)
    }
    pub fn is_not_found(&self) -> bool {
        matches!(self.kind, ErrorKind::NotFound)
    }
    /// The provider rejected the credentials: only a reconnect helps.
    pub fn is_reauth(&self) -> bool {
        matches!(self.kind, ErrorKind::Reauth)
    }
    pub fn is_validation(&self) -> bool {
        matches!(self.kind, ErrorKind::Validation { .. })
    }
    pub fn is_config(&self) -> bool {
        matches!(self.kind, ErrorKind::Config)
    }
    pub fn message(&self) -> &str {
        &self.message
    }

    /// HTTP status code for this error when it ends a request.
    pub fn http_status(&self) -> u16 {
        match self.kind {
            ErrorKind::Unauthenticated => 401,
            // The user's *provider* credentials failed: the request itself was fine,
            // but the integration cannot do it until reconnected.
            ErrorKind::Reauth => 409,
            ErrorKind::RateLimited { .. } => 429,
            ErrorKind::Transient => 503,
            ErrorKind::Config => 502,
            ErrorKind::Validation { .. } => 422,
            ErrorKind::NotFound => 404,
            ErrorKind::Conflict => 409,
            ErrorKind::Internal => 500,
        }
    }

    /// Whether a queue message that failed with this error should be retried.
    pub fn retry_decision(&self) -> RetryDecision {
        match &self.kind {
            ErrorKind::RateLimited { retry_after } => RetryDecision::Retry {
                after: *retry_after,
            },
            // Conflicts are lost races (another worker moved the record): the next
            // attempt re-reads and usually finds the work done or doable.
            ErrorKind::Transient | ErrorKind::Conflict | ErrorKind::Internal => {
                RetryDecision::Retry { after: None }
            }
            ErrorKind::Unauthenticated
            | ErrorKind::Reauth
            | ErrorKind::Config
            | ErrorKind::Validation { .. }
            | ErrorKind::NotFound => RetryDecision::GiveUp,
        }
    }

    /// The status an integration moves to when a sync finally fails with this error
    /// (`None`: the integration's status is left as it is).
    pub fn integration_status(&self) -> Option<IntegrationStatus> {
        match self.kind {
            ErrorKind::Reauth | ErrorKind::Unauthenticated => Some(IntegrationStatus::NeedsReauth),
            ErrorKind::Config | ErrorKind::Validation { .. } | ErrorKind::Internal => {
                Some(IntegrationStatus::Error)
            }
            ErrorKind::RateLimited { .. }
            | ErrorKind::Transient
            | ErrorKind::Conflict
            | ErrorKind::NotFound => None,
        }
    }

    /// Short stable code for APIs, logs and job records (`rate_limited`, …).
    pub fn code(&self) -> &'static str {
        match self.kind {
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::Reauth => "reauth_required",
            ErrorKind::RateLimited { .. } => "rate_limited",
            ErrorKind::Transient => "transient",
            ErrorKind::Config => "configuration",
            ErrorKind::Validation { .. } => "validation",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Conflict => "conflict",
            ErrorKind::Internal => "internal",
        }
    }

    /// The message plus the whole `source()` chain, for logs (never responses).
    pub fn log_chain(&self) -> String {
        let mut out = format!("{}: {}", self.code(), self.message);
        let mut cause = self.source.as_deref().map(|e| e as &dyn std::error::Error);
        while let Some(err) = cause {
            out.push_str(": ");
            out.push_str(&err.to_string());
            cause = err.source();
        }
        out
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Error")
            .field("kind", &self.kind)
            .field("message", &self.message)
            .field("source", &self.source)
            .finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_mapping_per_kind() {
        let limited = Error::rate_limited(Some(Duration::from_secs(7)), "slow down");
        assert_eq!(limited.http_status(), 429);
        assert_eq!(
            limited.retry_decision(),
            RetryDecision::Retry {
                after: Some(Duration::from_secs(7))
            }
        );
        assert_eq!(limited.integration_status(), None);

        let reauth = Error::reauth("token revoked");
        assert_eq!(reauth.retry_decision(), RetryDecision::GiveUp);
        assert_eq!(
            reauth.integration_status(),
            Some(IntegrationStatus::NeedsReauth)
        );

        let config = Error::config("property gone");
        assert_eq!(config.retry_decision(), RetryDecision::GiveUp);
        assert_eq!(config.integration_status(), Some(IntegrationStatus::Error));

        assert_eq!(Error::not_found("x").http_status(), 404);
        assert_eq!(Error::validation("f", "bad").http_status(), 422);
        assert_eq!(
            Error::transient("x").retry_decision(),
            RetryDecision::Retry { after: None }
        );
    }

    #[test]
    fn log_chain_includes_sources_but_display_does_not() {
        let io = std::io::Error::other("connection reset");
        let err = Error::transient("provider unavailable").with_source(io);
        assert_eq!(err.to_string(), "provider unavailable");
        assert!(err.log_chain().contains("connection reset"));
    }
}
