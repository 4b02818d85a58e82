//! The provider clients a deployment uses, built once from the configuration:
//! the real endpoints, or the sandbox's where it stands in.

use std::time::Duration;

use kpi_core::{Provider, Result};
use kpi_providers::ga4::{AdminApi, DataApi};
use kpi_providers::google::GoogleOAuth;
use kpi_providers::meta::MetaClient;
use kpi_providers::resend::ResendClient;
use secrecy::SecretString;
use url::Url;

use crate::config::Config;

/// Concurrent GA4 Data API requests per property and process (Google allows 10
/// per property in all; this leaves room for several workers).
pub const GA4_CONCURRENT_PER_PROPERTY: usize = 3;

/// App credentials the sandbox accepts, and where it is served.
#[derive(Debug, Clone)]
pub struct SandboxApps {
    pub base: Url,
    pub google_client_id: String,
    pub google_client_secret: String,
    pub meta_app_id: String,
    pub meta_app_secret: String,
}

pub struct Providers {
    pub http: reqwest::Client,
    /// `None` when Google has neither credentials nor the sandbox.
    pub google: Option<GoogleOAuth>,
    pub ga4_admin: AdminApi,
    pub ga4_data: DataApi,
    pub meta: Option<MetaClient>,
    pub resend: ResendClient,
}

fn join(base: &Url, path: &str) -> Url {
    let mut url = base.clone();
    url.set_path(&format!("{}/{path}", base.path().trim_end_matches('/')));
    url
}

impl Providers {
    pub fn from_config(config: &Config, sandbox: Option<&SandboxApps>) -> Result<Self> {
        let http = kpi_providers::http::client(Duration::from_secs(30))?;
        let sandbox_for = |p: Provider| sandbox.filter(|_| config.sandbox_for(p));

        let google = match sandbox_for(Provider::Ga4) {
            Some(s) => Some(GoogleOAuth {
                http: http.clone(),
                client_id: s.google_client_id.clone(),
                client_secret: SecretString::from(s.google_client_secret.clone()),
                auth_url: join(&s.base, "google/auth"),
                token_url: join(&s.base, "google/token"),
                revoke_url: join(&s.base, "google/revoke"),
            }),
            None => match (&config.google.client_id, &config.google.client_secret) {
                (Some(id), Some(secret)) => Some(GoogleOAuth {
                    http: http.clone(),
                    client_id: id.clone(),
                    client_secret: secret.clone(),
                    auth_url: config.google.auth_url.clone(),
                    token_url: config.google.token_url.clone(),
                    revoke_url: config.google.revoke_url.clone(),
                }),
                _ => None,
            },
        };
        let ga4_admin = AdminApi {
            http: http.clone(),
            base: match sandbox_for(Provider::Ga4) {
                Some(s) => join(&s.base, "ga4/admin/v1beta"),
                None => config.google.admin_api_url.clone(),
            },
        };
        let ga4_data = DataApi {
            http: http.clone(),
            base: match sandbox_for(Provider::Ga4) {
                Some(s) => join(&s.base, "ga4/data/v1beta"),
                None => config.google.data_api_url.clone(),
            },
        };
        let meta = match sandbox_for(Provider::MetaAds) {
            Some(s) => Some(MetaClient {
                http: http.clone(),
                app_id: s.meta_app_id.clone(),
                app_secret: SecretString::from(s.meta_app_secret.clone()),
                auth_url: join(&s.base, "meta/dialog/oauth"),
                graph_url: join(&s.base, "meta/graph"),
                version: config.meta.graph_version.clone(),
            }),
            None => match (&config.meta.app_id, &config.meta.app_secret) {
                (Some(id), Some(secret)) => Some(MetaClient {
                    http: http.clone(),
                    app_id: id.clone(),
                    app_secret: secret.clone(),
                    auth_url: config.meta.auth_url.clone(),
                    graph_url: config.meta.graph_url.clone(),
                    version: config.meta.graph_version.clone(),
                }),
                _ => None,
            },
        };
        let resend = ResendClient {
            http: http.clone(),
            base: match sandbox_for(Provider::Resend) {
                Some(s) => join(&s.base, "resend"),
                None => config.resend.api_url.clone(),
            },
        };
        Ok(Self {
            http,
            google,
            ga4_admin,
            ga4_data,
            meta,
            resend,
        })
    }

    /// The GA4 sync adapter, when Google is configured (or sandboxed).
    pub fn ga4_adapter(&self) -> Option<kpi_providers::ga4_adapter::Ga4Adapter> {
        let google = self.google.clone()?;
        Some(kpi_providers::ga4_adapter::Ga4Adapter::new(
            google,
            AdminApi {
                http: self.http.clone(),
                base: self.ga4_admin.base.clone(),
            },
            DataApi {
                http: self.http.clone(),
                base: self.ga4_data.base.clone(),
            },
            GA4_CONCURRENT_PER_PROPERTY,
        ))
    }

    /// Whether a workspace can connect `provider` in this deployment.
    pub fn is_available(&self, provider: Provider) -> bool {
        match provider {
            Provider::Ga4 => self.google.is_some(),
            Provider::MetaAds => self.meta.is_some(),
            Provider::Resend => true,
        }
    }
}
