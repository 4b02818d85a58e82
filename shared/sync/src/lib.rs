//! The sync engine, the same on Lambda and on one machine:
//!
//! * [`scheduler`] finds due integrations, creates one job per integration and
//!   tick (atomically with moving its next sync time), and fans the jobs out to
//!   the provider queues in batches of ten;
//! * [`worker`] runs a job: loads the integration through its workspace scope,
//!   refreshes the token under a lease when it is about to expire, syncs the
//!   window with the provider's adapter and upserts the KPI points, and decides
//!   whether a failure is retried (with backoff) or final;
//! * [`dlq`] ends jobs whose messages ran out of receives, and sends at most one
//!   failure notice per integration per day;
//! * [`enqueue`] is the one way a job reaches a queue;
//! * [`cas`] is the one read-modify-write of versioned records, with one retry policy;
//! * [`mock`] (feature `mock`, tests only) holds scripted adapters.

pub mod admin;
pub mod cas;
pub mod dlq;
mod enqueue;
pub mod metrics;
#[cfg(feature = "mock")]
pub mod mock;
pub mod notifier;
pub mod retry;
pub mod runner;
pub mod scheduler;
pub mod settled;
pub mod worker;

pub use enqueue::enqueue;
pub use notifier::{
    DueWork, FailureNotice, Notifier, ReconnectReminder, RecoveryNotice, SyncObserver,
};
pub use retry::RetryPolicy;
pub use scheduler::{Scheduler, SchedulerReport};
pub use worker::{Disposition, Worker, WorkerSettings};
