//! Typed configuration from the names of DESIGN.md.
//!
//! Values come from a lookup function (environment, `.env`, the Secrets Manager
//! JSON: the caller merges them). Everything is parsed here, once; a bad value
//! stops start-up with an error naming the variable. Secret values are never
//! echoed in those errors.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;

use kpi_core::Provider;
use secrecy::SecretString;
use url::Url;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {message}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub message: String,
}

fn err(variable: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError {
        variable,
        message: message.into(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Environment {
    Development,
    Production,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreConfig {
    Sqlite(PathBuf),
    DynamoDb { table: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    Local,
    /// Work queue URL per provider; each DLQ is found from its redrive policy.
    Sqs {
        urls: HashMap<Provider, String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VaultConfig {
    Local(PathBuf),
    Kms { key_id: String },
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwks_url: Option<Url>,
    pub issuer: Option<String>,
    pub audience: Option<String>,
    /// HS256 secret for the dev server; refused in production.
    pub dev_secret: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct GoogleConfig {
    pub client_id: Option<String>,
    pub client_secret: Option<SecretString>,
    pub auth_url: Url,
    pub token_url: Url,
    pub revoke_url: Url,
    pub admin_api_url: Url,
    pub data_api_url: Url,
}

#[derive(Debug, Clone)]
pub struct MetaConfig {
    pub app_id: Option<String>,
    pub app_secret: Option<SecretString>,
    pub webhook_verify_token: Option<SecretString>,
    pub graph_version: String,
    pub auth_url: Url,
    pub graph_url: Url,
}

#[derive(Debug, Clone)]
pub struct ResendConfig {
    pub webhook_secret: Option<SecretString>,
    pub api_url: Url,
    pub system_api_key: Option<SecretString>,
    pub system_email_from: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub environment: Environment,
    pub listen: SocketAddr,
    pub public_url: Url,
    pub store: StoreConfig,
    pub queue: QueueConfig,
    pub vault: VaultConfig,
    pub auth: AuthConfig,
    pub google: GoogleConfig,
    pub meta: MetaConfig,
    pub resend: ResendConfig,
    /// `None`: decided per provider (on when it has no credentials, in development).
    pub sandbox: Option<bool>,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";
pub const DEFAULT_META_GRAPH_VERSION: &str = "v25.0";

struct Reader<'a> {
    lookup: &'a dyn Fn(&str) -> Option<String>,
}

impl Reader<'_> {
    /// A set, non-blank value.
    fn get(&self, name: &'static str) -> Option<String> {
        (self.lookup)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn secret(&self, name: &'static str) -> Option<SecretString> {
        self.get(name).map(SecretString::from)
    }

    fn url(&self, name: &'static str, default: &str) -> Result<Url, ConfigError> {
        let raw = self.get(name);
        let value = raw.as_deref().unwrap_or(default);
        let url = Url::parse(value).map_err(|_| err(name, format!("not a URL: {value:.200}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(err(name, "must be an http or https URL"));
        }
        Ok(url)
    }
}

impl Config {
    /// Parses the configuration; `environment` is the binary's default when
    /// `KPI_ENV` is not set (dev server: development; Lambda: production).
    pub fn from_lookup(
        lookup: &dyn Fn(&str) -> Option<String>,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        let r = Reader { lookup };
        let environment = match r.get("KPI_ENV").as_deref() {
            None => environment,
            Some("development") => Environment::Development,
            Some("production") => Environment::Production,
            Some(other) => {
                return Err(err(
                    "KPI_ENV",
                    format!("expected development or production, got {other:.40}"),
                ));
            }
        };

        let listen_raw = r.get("KPI_LISTEN").unwrap_or_else(|| DEFAULT_LISTEN.into());
        let listen: SocketAddr = listen_raw.parse().map_err(|_| {
            err(
                "KPI_LISTEN",
                format!("expected HOST:PORT such as 127.0.0.1:3000, got {listen_raw:.80}"),
            )
        })?;
        let public_url = r.url("KPI_PUBLIC_URL", &format!("http://{listen}"))?;
        if environment == Environment::Production && public_url.scheme() != "https" {
            return Err(err("KPI_PUBLIC_URL", "must be an https URL in production"));
        }

        let store = match r.get("KPI_STORE") {
            None => StoreConfig::Sqlite(PathBuf::from(".kpi/kpi.db")),
            Some(v) => match v.split_once(':') {
                Some(("sqlite", path)) if !path.is_empty() => StoreConfig::Sqlite(path.into()),
                Some(("dynamodb", table)) if valid_table_name(table) => StoreConfig::DynamoDb {
                    table: table.to_owned(),
                },
                _ => {
                    return Err(err(
                        "KPI_STORE",
                        format!("expected sqlite:PATH or dynamodb:TABLE, got {v:.120}"),
                    ));
                }
            },
        };

        let queue = match r.get("KPI_QUEUE").as_deref() {
            None | Some("local") => QueueConfig::Local,
            Some("sqs") => {
                let mut urls = HashMap::new();
                for (provider, name) in [
                    (Provider::Ga4, "KPI_QUEUE_URL_GA4"),
                    (Provider::MetaAds, "KPI_QUEUE_URL_META_ADS"),
                    (Provider::Resend, "KPI_QUEUE_URL_RESEND"),
                ] {
                    let url = r.url(name, "")?;
                    urls.insert(provider, url.to_string());
                }
                QueueConfig::Sqs { urls }
            }
            Some(other) => {
                return Err(err(
                    "KPI_QUEUE",
                    format!("expected local or sqs, got {other:.40}"),
                ));
            }
        };

        let vault = match r.get("KPI_VAULT") {
            None => VaultConfig::Local(PathBuf::from(".kpi/master.key")),
            Some(v) => match v.split_once(':') {
                Some(("local", path)) if !path.is_empty() => VaultConfig::Local(path.into()),
                // Key ARNs contain colons themselves: split on the first only.
                Some(("kms", key)) if !key.is_empty() => VaultConfig::Kms {
                    key_id: key.to_owned(),
                },
                _ => {
                    return Err(err(
                        "KPI_VAULT",
                        format!("expected local:PATH or kms:KEY_ID_OR_ARN, got {v:.160}"),
                    ));
                }
            },
        };

        let auth = AuthConfig {
            jwks_url: r
                .get("KPI_AUTH_JWKS_URL")
                .map(|_| r.url("KPI_AUTH_JWKS_URL", ""))
                .transpose()?,
            issuer: r.get("KPI_AUTH_ISSUER"),
            audience: r.get("KPI_AUTH_AUDIENCE"),
            dev_secret: r.secret("KPI_AUTH_DEV_SECRET"),
        };

        let google = GoogleConfig {
            client_id: r.get("GOOGLE_CLIENT_ID"),
            client_secret: r.secret("GOOGLE_CLIENT_SECRET"),
            auth_url: r.url(
                "GOOGLE_AUTH_URL",
                "https://accounts.google.com/o/oauth2/v2/auth",
            )?,
            token_url: r.url("GOOGLE_TOKEN_URL", "https://oauth2.googleapis.com/token")?,
            revoke_url: r.url("GOOGLE_REVOKE_URL", "https://oauth2.googleapis.com/revoke")?,
            admin_api_url: r.url(
                "GA4_ADMIN_API_URL",
                "https://analyticsadmin.googleapis.com/v1beta",
            )?,
            data_api_url: r.url(
                "GA4_DATA_API_URL",
                "https://analyticsdata.googleapis.com/v1beta",
            )?,
        };

        let graph_version = r
            .get("META_GRAPH_VERSION")
            .unwrap_or_else(|| DEFAULT_META_GRAPH_VERSION.into());
        let version_ok = graph_version
            .strip_prefix('v')
            .and_then(|rest| rest.split_once('.'))
            .is_some_and(|(major, minor)| {
                !major.is_empty()
                    && !minor.is_empty()
                    && major.bytes().all(|b| b.is_ascii_digit())
                    && minor.bytes().all(|b| b.is_ascii_digit())
            });
        if !version_ok {
            return Err(err(
                "META_GRAPH_VERSION",
                format!("expected a version such as v25.0, got {graph_version:.20}"),
            ));
        }
        let meta = MetaConfig {
            app_id: r.get("META_APP_ID"),
            app_secret: r.secret("META_APP_SECRET"),
            webhook_verify_token: r.secret("META_WEBHOOK_VERIFY_TOKEN"),
            auth_url: r.url(
                "META_AUTH_URL",
                &format!("https://www.facebook.com/{graph_version}/dialog/oauth"),
            )?,
            graph_url: r.url("META_GRAPH_URL", "https://graph.facebook.com")?,
            graph_version,
        };

        let resend = ResendConfig {
            webhook_secret: r.secret("RESEND_WEBHOOK_SECRET"),
            api_url: r.url("RESEND_API_URL", "https://api.resend.com")?,
            system_api_key: r.secret("KPI_SYSTEM_RESEND_API_KEY"),
            system_email_from: r.get("KPI_SYSTEM_EMAIL_FROM"),
        };
        if let Some(secret) = &resend.webhook_secret {
            use secrecy::ExposeSecret as _;
            if !secret.expose_secret().starts_with("whsec_") {
                return Err(err("RESEND_WEBHOOK_SECRET", "must start with whsec_"));
            }
        }

        let sandbox = match r.get("KPI_SANDBOX").as_deref() {
            None => None,
            Some("on") => Some(true),
            Some("off") => Some(false),
            Some(other) => {
                return Err(err(
                    "KPI_SANDBOX",
                    format!("expected on or off, got {other:.20}"),
                ));
            }
        };

        let config = Self {
            environment,
            listen,
            public_url,
            store,
            queue,
            vault,
            auth,
            google,
            meta,
            resend,
            sandbox,
        };
        if environment == Environment::Production {
            config.refuse_dev_settings()?;
        }
        Ok(config)
    }

    /// Production runs only on real, shared infrastructure and real identity.
    fn refuse_dev_settings(&self) -> Result<(), ConfigError> {
        let dev_only = "is a development setting and is refused when KPI_ENV=production";
        if self.auth.dev_secret.is_some() {
            return Err(err("KPI_AUTH_DEV_SECRET", dev_only));
        }
        if self.sandbox == Some(true) {
            return Err(err("KPI_SANDBOX", dev_only));
        }
        if matches!(self.store, StoreConfig::Sqlite(_)) {
            return Err(err("KPI_STORE", format!("sqlite {dev_only}")));
        }
        if self.queue == QueueConfig::Local {
            return Err(err("KPI_QUEUE", format!("local {dev_only}")));
        }
        if matches!(self.vault, VaultConfig::Local(_)) {
            return Err(err("KPI_VAULT", format!("local {dev_only}")));
        }
        for (name, missing) in [
            ("KPI_AUTH_JWKS_URL", self.auth.jwks_url.is_none()),
            ("KPI_AUTH_ISSUER", self.auth.issuer.is_none()),
            ("KPI_AUTH_AUDIENCE", self.auth.audience.is_none()),
        ] {
            if missing {
                return Err(err(name, "is required in production"));
            }
        }
        Ok(())
    }

    /// `{KPI_PUBLIC_URL}/v1/oauth/{provider}/callback`.
    pub fn oauth_redirect_uri(&self, provider: Provider) -> String {
        format!(
            "{}/v1/oauth/{provider}/callback",
            self.public_url.as_str().trim_end_matches('/')
        )
    }

    /// `; Secure` for cookies when served over https (always in production, where
    /// KPI_PUBLIC_URL must be https). Plain-http development keeps cookies usable
    /// by every client.
    pub fn cookie_secure_attr(&self) -> &'static str {
        if self.public_url.scheme() == "https" {
            "; Secure"
        } else {
            ""
        }
    }

    /// Whether `provider` is served by the built-in sandbox.
    pub fn sandbox_for(&self, provider: Provider) -> bool {
        match self.sandbox {
            Some(on) => on,
            None if self.environment == Environment::Production => false,
            None => match provider {
                Provider::Ga4 => {
                    self.google.client_id.is_none() || self.google.client_secret.is_none()
                }
                Provider::MetaAds => self.meta.app_id.is_none() || self.meta.app_secret.is_none(),
                // Resend keys are per workspace; the sandbox stands in when the
                // endpoint was not pointed anywhere in development.
                Provider::Resend => true,
            },
        }
    }
}

/// DynamoDB table names: 3-255 of `[A-Za-z0-9_.-]`.
fn valid_table_name(name: &str) -> bool {
    (3..=255).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(vars: &[(&str, &str)], env: Environment) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Config::from_lookup(&move |name| map.get(name).cloned(), env)
    }

    const PRODUCTION: &[(&str, &str)] = &[
        ("KPI_PUBLIC_URL", "https://kpi.example.com"),
        ("KPI_STORE", "dynamodb:kpi-prod"),
        ("KPI_QUEUE", "sqs"),
        (
            "KPI_QUEUE_URL_GA4",
            "https://sqs.eu-west-1.amazonaws.com/1/ga4",
        ),
        (
            "KPI_QUEUE_URL_META_ADS",
            "https://sqs.eu-west-1.amazonaws.com/1/meta",
        ),
        (
            "KPI_QUEUE_URL_RESEND",
            "https://sqs.eu-west-1.amazonaws.com/1/resend",
        ),
        ("KPI_VAULT", "kms:arn:aws:kms:eu-west-1:1:key/abc"),
        (
            "KPI_AUTH_JWKS_URL",
            "https://auth.example.com/.well-known/jwks.json",
        ),
        ("KPI_AUTH_ISSUER", "https://auth.example.com/"),
        ("KPI_AUTH_AUDIENCE", "kpi"),
    ];

    #[test]
    fn development_defaults() {
        let c = parse(&[], Environment::Development).unwrap();
        assert_eq!(c.listen.to_string(), DEFAULT_LISTEN);
        assert_eq!(c.store, StoreConfig::Sqlite(".kpi/kpi.db".into()));
        assert_eq!(c.queue, QueueConfig::Local);
        assert_eq!(c.vault, VaultConfig::Local(".kpi/master.key".into()));
        assert_eq!(
            c.oauth_redirect_uri(Provider::Ga4),
            "http://127.0.0.1:3000/v1/oauth/ga4/callback"
        );
        assert!(
            c.sandbox_for(Provider::Ga4),
            "no Google credentials: sandbox"
        );
        assert_eq!(c.meta.graph_version, "v25.0");
    }

    #[test]
    fn production_parses_and_keeps_the_kms_arn_whole() {
        let c = parse(PRODUCTION, Environment::Production).unwrap();
        assert_eq!(
            c.vault,
            VaultConfig::Kms {
                key_id: "arn:aws:kms:eu-west-1:1:key/abc".into()
            }
        );
        assert!(!c.sandbox_for(Provider::Ga4));
        assert_eq!(
            c.oauth_redirect_uri(Provider::MetaAds),
            "https://kpi.example.com/v1/oauth/meta_ads/callback"
        );
    }

    #[test]
    fn production_refuses_dev_settings() {
        for (name, value) in [
            ("KPI_AUTH_DEV_SECRET", "dev"),
            ("KPI_SANDBOX", "on"),
            ("KPI_STORE", "sqlite:x.db"),
            ("KPI_QUEUE", "local"),
            ("KPI_VAULT", "local:key"),
        ] {
            let mut vars = PRODUCTION.to_vec();
            vars.retain(|(k, _)| *k != name);
            vars.push((name, value));
            let e = parse(&vars, Environment::Production).unwrap_err();
            assert_eq!(e.variable, name);
        }
        let mut vars = PRODUCTION.to_vec();
        vars.retain(|(k, _)| *k != "KPI_AUTH_ISSUER");
        assert_eq!(
            parse(&vars, Environment::Production).unwrap_err().variable,
            "KPI_AUTH_ISSUER"
        );
        // KPI_ENV overrides the binary's default.
        let e = parse(&[("KPI_ENV", "production")], Environment::Development).unwrap_err();
        assert_eq!(e.variable, "KPI_PUBLIC_URL");
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (name, value) in [
            ("KPI_ENV", "staging"),
            ("KPI_LISTEN", "localhost"),
            ("KPI_STORE", "postgres://x"),
            ("KPI_STORE", "dynamodb:a"),
            ("KPI_QUEUE", "kafka"),
            ("KPI_VAULT", "kms:"),
            ("KPI_SANDBOX", "yes"),
            ("GOOGLE_TOKEN_URL", "not a url"),
            ("RESEND_API_URL", "ftp://x"),
            ("META_GRAPH_VERSION", "25"),
            ("KPI_PUBLIC_URL", "::"),
        ] {
            let e = parse(&[(name, value)], Environment::Development).unwrap_err();
            assert_eq!(e.variable, name, "{value}");
            assert!(e.to_string().starts_with(name));
        }
        let e = parse(&[("KPI_QUEUE", "sqs")], Environment::Development).unwrap_err();
        assert_eq!(e.variable, "KPI_QUEUE_URL_GA4");
    }

    #[test]
    fn secrets_are_not_echoed_in_errors() {
        let e = parse(
            &[("RESEND_WEBHOOK_SECRET", "super-secret-value")],
            Environment::Development,
        )
        .unwrap_err();
        assert_eq!(e.variable, "RESEND_WEBHOOK_SECRET");
        assert!(!e.to_string().contains("super-secret-value"));
        let c = parse(
            &[("GOOGLE_CLIENT_SECRET", "gcs-secret-value")],
            Environment::Development,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("gcs-secret-value"));
    }
}
