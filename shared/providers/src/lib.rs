//! The providers, one plug-in each (`ga4`, `meta`, `resend`): its descriptor,
//! its HTTP client speaking the provider's wire format, and its implementation
//! of the provider port. [`registry`] builds them all from configuration. Every
//! client takes its base URLs from configuration, so tests and the dev server
//! point them at the sandbox.
//!
//! Secrets (client secrets, codes, tokens, API keys) travel only in request bodies,
//! headers or, where a provider demands it, the provider's own URL; errors never
//! carry a URL (`reqwest::Error::without_url`) or a response body with them.

pub mod ga4;
pub mod http;
pub mod meta;
pub mod oauth;
pub mod plugin;
pub mod resend;
pub mod settings;

use kpi_core::Registry;
use kpi_core::config::ConfigError;
use kpi_core::registry::Plugin;

pub use plugin::{BuildContext, SandboxSite};

/// How a provider module builds its plug-in from configuration.
pub type BuildPlugin = fn(&BuildContext<'_>) -> Result<Plugin, ConfigError>;

/// Every provider of this build. Adding one is adding its `plugin` here.
pub const PLUGINS: &[BuildPlugin] = &[ga4::plugin, meta::plugin, resend::plugin];

/// The descriptors of [`PLUGINS`], in the same order: the catalogue as it is
/// known without configuration (a function answers from it before its
/// configuration is ready).
pub const DESCRIPTORS: &[&kpi_core::ports::provider::ProviderDescriptor] =
    &[&ga4::DESCRIPTOR, &meta::DESCRIPTOR, &resend::DESCRIPTOR];

/// The registry of this deployment, built once per process.
pub fn registry(ctx: &BuildContext<'_>) -> Result<Registry, ConfigError> {
    let mut registry = Registry::new();
    for build in PLUGINS {
        registry
            .register(build(ctx)?)
            .map_err(|e| ConfigError::new("providers", e.message()))?;
    }
    Ok(registry)
}
