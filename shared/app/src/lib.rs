//! The application layer shared by every deployment: typed configuration, the
//! HTTP routers, and the state they run on (ports only, no concrete backends).

pub mod auth;
pub mod config;
pub mod http;
pub mod mail;
pub mod providers;
pub mod service;
pub mod session;
pub mod state;
pub mod webhooks;

pub use config::{Config, ConfigError, Environment};
pub use state::AppState;
