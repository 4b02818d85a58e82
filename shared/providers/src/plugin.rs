//! What a provider module gets to build its adapter: the configuration
//! variables, the process's HTTP client, and the sandbox when it stands in for
//! the real provider.

use kpi_core::config::{ConfigError, Vars};
use url::Url;

use crate::http::join;

/// The built-in provider simulator, where it is served, and the app
/// credentials it accepts (by configuration name, e.g. `GOOGLE_CLIENT_ID`).
#[derive(Debug, Clone)]
pub struct SandboxSite {
    pub base: Url,
    pub app_credentials: Vec<(String, String)>,
}

impl SandboxSite {
    pub fn url(&self, path: &str) -> Url {
        join(&self.base, path)
    }
}

pub struct BuildContext<'a> {
    pub vars: &'a Vars,
    pub http: reqwest::Client,
    /// Present when this process serves the sandbox (the dev server).
    pub sandbox: Option<&'a SandboxSite>,
    /// `KPI_SANDBOX`: `Some` when set, `None` to decide per provider.
    pub sandbox_setting: Option<bool>,
    pub production: bool,
}

/// A provider's configuration as it will be used: the real one, or the
/// sandbox's app credentials and endpoints in its place.
pub struct Source<'a> {
    pub vars: Vars,
    pub sandbox: Option<&'a SandboxSite>,
}

impl Source<'_> {
    /// `name` from configuration for the real provider; under the sandbox, the
    /// sandbox's `path`.
    pub fn url(
        &self,
        name: &str,
        real_default: &str,
        sandbox_path: &str,
    ) -> Result<Url, ConfigError> {
        match self.sandbox {
            Some(site) => Ok(site.url(sandbox_path)),
            None => self.vars.url(name, real_default),
        }
    }

    pub fn is_sandbox(&self) -> bool {
        self.sandbox.is_some()
    }
}

impl<'a> BuildContext<'a> {
    /// Where a provider's configuration comes from. `has_own` says whether the
    /// deployment configured the provider itself: in development the sandbox
    /// stands in for providers that are not configured; `KPI_SANDBOX` decides
    /// for all; production never uses it.
    pub fn source(&self, has_own: bool) -> Source<'a> {
        let use_sandbox = match self.sandbox_setting {
            _ if self.production => false,
            Some(on) => on,
            None => !has_own,
        };
        match self.sandbox.filter(|_| use_sandbox) {
            Some(site) => Source {
                vars: self.vars.overlaid(site.app_credentials.clone()),
                sandbox: Some(site),
            },
            None => Source {
                vars: self.vars.clone(),
                sandbox: None,
            },
        }
    }
}
