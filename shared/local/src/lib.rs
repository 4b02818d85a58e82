//! The one-machine deployment's adapters: an embedded SQLite store, an in-process
//! queue with SQS semantics, and secrets from the environment or `.env`. They pass
//! the same conformance suites as DynamoDB and SQS.

mod queue;
mod secrets;
mod sqlite;

pub use queue::{LocalQueue, LocalQueueSettings};
pub use secrets::EnvSecrets;
pub use sqlite::{DUE_INTEGRATIONS_QUERY, KPI_QUERY, SqliteStore};
