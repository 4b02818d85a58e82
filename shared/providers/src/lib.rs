//! HTTP clients of the providers, each in its own module, speaking the wire
//! formats of `reference/provider-apis.md`. Every client takes its base URLs from
//! configuration, so tests and the dev server point them at the sandbox.
//!
//! Secrets (client secrets, codes, tokens, API keys) travel only in request bodies,
//! headers or, where a provider demands it, the provider's own URL; errors never
//! carry a URL (`reqwest::Error::without_url`) or a response body with them.

pub mod ga4;
pub mod ga4_adapter;
pub mod google;
pub mod http;
pub mod meta;
pub mod oauth;
pub mod resend;
