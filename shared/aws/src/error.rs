//! AWS SDK errors mapped into the one error taxonomy.

use aws_sdk_dynamodb::error::{ProvideErrorMetadata, SdkError};
use kpi_core::Error;

const THROTTLING: &[&str] = &[
    "ThrottlingException",
    "Throttling",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "TooManyRequestsException",
    "KMSInternalException",
    "InternalServerError",
    "ServiceUnavailable",
    "LimitExceededException",
];

/// The service's error code, if the request reached the service.
pub(crate) fn code<E, R>(err: &SdkError<E, R>) -> Option<&str>
where
    E: ProvideErrorMetadata,
{
    match err {
        SdkError::ServiceError(e) => e.err().code(),
        _ => None,
    }
}

/// Maps an SDK failure of `operation`; the AWS message goes to the source chain
/// (logs), the user-facing message stays generic.
pub(crate) fn aws_error<E, R>(operation: &'static str, err: SdkError<E, R>) -> Error
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static,
{
    let what = format!("{operation} failed");
    match &err {
        SdkError::ServiceError(e) => {
            let code = e.err().code().unwrap_or("Unknown");
            if THROTTLING.contains(&code) {
                Error::transient(format!("{what}: the service is busy")).with_source(err)
            } else if code.contains("AccessDenied") || code == "ResourceNotFoundException" {
                Error::config(format!("{what}: {code}")).with_source(err)
            } else {
                Error::internal(format!("{what}: {code}")).with_source(err)
            }
        }
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_) => {
            Error::transient(format!("{what}: the service did not answer")).with_source(err)
        }
        _ => Error::internal(what).with_source(err),
    }
}
