//! The integration tests, one binary (each test binary links the whole
//! application): a module per area. nextest still runs every test in a
//! process of its own.

mod alerts;
mod api;
mod conformance_aws;
mod conformance_local;
mod due_reports;
mod engine_e2e;
mod hardening;
mod identity;
mod lambda_e2e;
mod lambda_events;
mod meta_webhooks;
mod notices;
mod oauth;
mod pages;
mod registry_seam;
mod secrets;
mod sync_engine;
mod template;
mod ui;
