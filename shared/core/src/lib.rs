//! The domain of KPI Integrations: identifiers, integrations and their status
//! machine, sync jobs, KPI points, credentials, the error taxonomy, and the ports
//! (store, queue, vault, secrets, clock, providers) that the AWS and the
//! embedded deployments implement, and the provider registry. Nothing here
//! performs I/O.

pub mod aggregate;
pub mod alert;
pub mod config;
pub mod credentials;
pub mod email;
pub mod error;
pub mod ids;
pub mod integration;
pub mod job;
pub mod kpi;
pub mod metric;
pub mod name;
pub mod page;
pub mod ports;
pub mod provider;
pub mod registry;
pub mod scope;
pub mod time;

pub use credentials::ConnectionCredentials;
pub use error::{Error, ErrorKind, Result};
pub use ids::{IntegrationId, JobId, WorkspaceId};
pub use integration::{Integration, IntegrationStatus};
pub use job::{JobStatus, SyncJob};
pub use kpi::KpiPoint;
pub use metric::Metric;
pub use provider::Provider;
pub use registry::Registry;
pub use scope::{AdminScope, Principal, WorkspaceScope};
