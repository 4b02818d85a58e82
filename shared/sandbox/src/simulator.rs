//! What a provider's simulator is to the sandbox: its routes, its control
//! routes and the app credentials it accepts. Its state it keeps itself, in
//! the sandbox's type map ([`Sandbox::with`]).

use crate::{Sandbox, SandboxConfig};

/// One provider's simulator. Implementations are unit structs listed in
/// [`crate::SIMULATORS`]; the sandbox mounts every one of them.
pub trait Simulator: Send + Sync + 'static {
    /// The provider id it stands in for (`ga4`).
    fn provider(&self) -> &'static str;

    /// Its provider endpoints, relative to the sandbox's base
    /// (`/resend/emails`); they answer late under the latency fault.
    fn routes(&self) -> axum::Router<Sandbox>;

    /// Its control endpoints (`/_control/...`), never delayed. Default: none.
    fn control_routes(&self) -> axum::Router<Sandbox> {
        axum::Router::new()
    }

    /// The app credentials it accepts, by the configuration names the
    /// provider's plug-in reads (`GOOGLE_CLIENT_ID`). Default: none.
    fn app_credentials(&self, config: &SandboxConfig) -> Vec<(&'static str, String)> {
        let _ = config;
        Vec::new()
    }
}
