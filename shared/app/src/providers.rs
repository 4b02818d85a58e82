//! The provider registry of a deployment, built once from its configuration:
//! every provider of `kpi_providers::PLUGINS`, real or served by the sandbox.

use std::time::Duration;

use kpi_core::{Registry, Result};
use kpi_providers::{BuildContext, SandboxSite};

use crate::config::{Config, Environment};

/// The registry and the HTTP client its adapters share.
pub fn build_registry(
    config: &Config,
    http: &reqwest::Client,
    sandbox: Option<&SandboxSite>,
) -> Result<Registry> {
    let ctx = BuildContext {
        vars: &config.vars,
        http: http.clone(),
        sandbox,
        sandbox_setting: config.sandbox,
        production: config.environment == Environment::Production,
    };
    Ok(kpi_providers::registry(&ctx)?)
}

/// The one HTTP client of a process (providers, JWKS).
/// Every provider of this build, known without configuration: what the
/// registry holds an entry of, available or not.
pub fn descriptors() -> &'static [&'static kpi_core::ports::provider::ProviderDescriptor] {
    kpi_providers::DESCRIPTORS
}

pub fn http_client() -> Result<reqwest::Client> {
    kpi_providers::http::client(Duration::from_secs(30))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use kpi_core::ports::provider::WebhookSpec;

    use kpi_core::config::ConfigError;
    use url::Url;

    use super::*;

    fn config(vars: &[(&str, &str)], env: Environment) -> Config {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(move |n| map.get(n).cloned(), env).unwrap()
    }

    fn site() -> SandboxSite {
        SandboxSite {
            base: Url::parse("http://127.0.0.1:3000/sandbox").unwrap(),
            app_credentials: vec![
                ("GOOGLE_CLIENT_ID".into(), "sbx-id".into()),
                ("GOOGLE_CLIENT_SECRET".into(), "sbx-secret".into()),
                ("META_APP_ID".into(), "1".into()),
                ("META_APP_SECRET".into(), "sbx".into()),
            ],
        }
    }

    fn build(
        vars: &[(&str, &str)],
        sandbox: Option<&SandboxSite>,
    ) -> Result<Registry, ConfigError> {
        let c = config(vars, Environment::Development);
        let ctx = BuildContext {
            vars: &c.vars,
            http: http_client().unwrap(),
            sandbox,
            sandbox_setting: c.sandbox,
            production: false,
        };
        kpi_providers::registry(&ctx)
    }

    #[test]
    fn development_uses_the_sandbox_for_unconfigured_providers() {
        let site = site();
        let r = build(
            &[
                ("GOOGLE_CLIENT_ID", "real"),
                ("GOOGLE_CLIENT_SECRET", "real"),
            ],
            Some(&site),
        )
        .unwrap();
        let ids: Vec<&str> = r.entries().map(|e| e.descriptor.id.as_str()).collect();
        assert_eq!(ids, ["ga4", "meta_ads", "resend"]);
        assert!(
            !r.entry(kpi_providers::ga4::ID).unwrap().sandbox,
            "real Google app configured"
        );
        assert!(r.entry(kpi_providers::meta::ID).unwrap().sandbox);
        assert!(r.entry(kpi_providers::resend::ID).unwrap().sandbox);
        assert!(r.adapter(kpi_providers::meta::ID).is_ok());
    }

    #[test]
    fn the_catalogue_without_configuration_is_the_registry_s() {
        let r = build(&[], None).unwrap();
        let registered: Vec<_> = r.entries().map(|e| e.descriptor.id).collect();
        let known: Vec<_> = descriptors().iter().map(|d| d.id).collect();
        assert_eq!(known, registered);
        for (entry, d) in r.entries().zip(descriptors()) {
            assert_eq!(entry.descriptor.auth, d.auth);
            let paths = |w: Option<WebhookSpec>| w.map(|w| (w.path, w.per_connection, w.challenge));
            assert_eq!(paths(entry.descriptor.webhook), paths(d.webhook));
        }
    }

    #[test]
    fn unconfigured_providers_name_what_they_miss() {
        let r = build(&[], None).unwrap();
        let e = r.adapter(kpi_providers::ga4::ID).err().unwrap();
        assert!(e.is_config());
        assert!(e.message().contains("GOOGLE_CLIENT_ID"), "{}", e.message());
        assert!(
            r.adapter(kpi_providers::resend::ID).is_ok(),
            "Resend keys are per workspace"
        );
        assert!(
            r.adapter("hubspot".parse().unwrap())
                .err()
                .unwrap()
                .is_not_found()
        );
        assert!(r.parse("provider", "hubspot").unwrap_err().is_validation());
    }

    #[test]
    fn bad_provider_values_name_their_variable() {
        for (name, value) in [
            ("GOOGLE_TOKEN_URL", "not a url"),
            ("RESEND_API_URL", "ftp://x"),
            ("META_GRAPH_VERSION", "25"),
            ("RESEND_WEBHOOK_SECRET", "super-secret-value"),
        ] {
            let e = build(&[(name, value)], None).err().unwrap();
            assert_eq!(e.variable, name, "{value}");
            assert!(!e.to_string().contains("super-secret-value"));
        }
    }

    #[test]
    fn sqs_needs_each_providers_queue_url() {
        let r = build(&[], None).unwrap();
        let c = config(&[("KPI_QUEUE", "sqs")], Environment::Development);
        assert_eq!(c.queue_urls(&r).unwrap_err().variable, "KPI_QUEUE_URL_GA4");
        let c = config(
            &[
                ("KPI_QUEUE_URL_GA4", "https://sqs.example/1/ga4"),
                ("KPI_QUEUE_URL_META_ADS", "https://sqs.example/1/meta"),
            ],
            Environment::Development,
        );
        let urls = c.queue_urls(&r).unwrap();
        assert_eq!(urls[&kpi_providers::meta::ID], "https://sqs.example/1/meta");
        assert!(
            !urls.contains_key(&kpi_providers::resend::ID),
            "no worker for Resend here"
        );
        let c = config(
            &[("KPI_QUEUE_URL_GA4", "not a url")],
            Environment::Development,
        );
        assert_eq!(c.queue_urls(&r).unwrap_err().variable, "KPI_QUEUE_URL_GA4");
    }

    #[test]
    fn every_metric_of_the_contract_is_registered_once() {
        let r = build(&[], None).unwrap();
        let names: Vec<String> = r
            .entries()
            .flat_map(|e| e.descriptor.metrics.iter().map(|m| m.metric.to_string()))
            .collect();
        assert_eq!(names.len(), 25);
        for e in r.entries() {
            let prefix = match e.descriptor.id.as_str() {
                "meta_ads" => "meta.".to_owned(),
                id => format!("{id}."),
            };
            assert!(
                e.descriptor
                    .metrics
                    .iter()
                    .all(|m| m.metric.as_str().starts_with(&prefix))
            );
        }
        assert!(r.metric("ga4.conversions").unwrap_err().is_validation());
        assert_eq!(
            r.metric("meta.roas").unwrap().unit,
            kpi_core::metric::Unit::Ratio
        );
    }
}
