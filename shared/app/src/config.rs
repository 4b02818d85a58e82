//! Typed configuration of the deployment, from the names of the README.
//!
//! Values come from a lookup function (environment, `.env`, the Secrets Manager
//! JSON: the caller merges them). The deployment's own settings are parsed here,
//! once; each provider reads its own names when the registry builds it
//! (`kpi_providers::registry`), from the same [`Vars`]. A bad value stops
//! start-up with an error naming the variable. Secret values are never echoed in
//! those errors.

use std::net::SocketAddr;
use std::path::PathBuf;

pub use kpi_core::config::{ConfigError, Vars};
use kpi_core::{Provider, Registry};
use secrecy::SecretString;
use std::collections::HashMap;
use url::Url;

fn err(variable: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::new(variable, message)
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

impl StoreConfig {
    /// `KPI_STORE`'s value: `sqlite:PATH` or `dynamodb:TABLE`; `None` for
    /// anything else.
    pub fn parse(value: &str) -> Option<Self> {
        match value.split_once(':') {
            Some(("sqlite", path)) if !path.is_empty() => Some(Self::Sqlite(path.into())),
            Some(("dynamodb", table)) if valid_table_name(table) => Some(Self::DynamoDb {
                table: table.to_owned(),
            }),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QueueConfig {
    Local,
    /// SQS: one work queue per provider, its URL in the variable its descriptor
    /// names ([`Config::queue_urls`]); each DLQ is found from its redrive policy.
    Sqs,
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
    /// Where production tokens keep the workspaces and the operator flag
    /// (`KPI_AUTH_WORKSPACES_CLAIM`, `KPI_AUTH_ADMIN_CLAIM`).
    pub claims: crate::auth::ClaimNames,
}

/// Signing in to the pages at the dashboard's identity provider (OpenID
/// Connect): set when `KPI_OIDC_ISSUER` is.
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Found by discovery at `{issuer}/.well-known/openid-configuration`;
    /// kept as written, since the provider's `issuer` must match it exactly
    /// (Auth0's ends with `/`, others do not).
    pub issuer: String,
    pub client_id: String,
    /// `None` for a public client (PKCE alone).
    pub client_secret: Option<SecretString>,
    pub scopes: Vec<String>,
}

/// The default `KPI_OIDC_SCOPES`.
pub const DEFAULT_OIDC_SCOPES: &str = "openid email profile";

/// The platform's own sender for notices to workspaces without a Resend integration.
#[derive(Debug, Clone)]
pub struct NoticeConfig {
    pub system_api_key: Option<SecretString>,
    pub system_email_from: Option<String>,
    /// `KPI_LINK_KEY`: signs the one-click unsubscribe links (at least 32
    /// characters; the stack generates it, the dev server keeps one in its
    /// data directory).
    pub link_key: Option<SecretString>,
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
    /// Sign-in for the pages; `None` keeps the 401 page (and the dev login).
    pub oidc: Option<OidcConfig>,
    /// Exact origins (`https://app.example.com`) whose pages may call `/v1/*`
    /// from a browser with bearer tokens (`KPI_CORS_ORIGINS`).
    pub cors_origins: Vec<String>,
    pub notices: NoticeConfig,
    /// `None`: decided per provider (on when it has no credentials, in development).
    pub sandbox: Option<bool>,
    /// Every variable, for the providers to read their own.
    pub vars: Vars,
}

pub const DEFAULT_LISTEN: &str = "127.0.0.1:3000";

impl Config {
    /// Parses the configuration; `environment` is the binary's default when
    /// `KPI_ENV` is not set (dev server: development; Lambda: production).
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String> + Send + Sync + 'static,
        environment: Environment,
    ) -> Result<Self, ConfigError> {
        Self::from_vars(Vars::new(lookup), environment)
    }

    pub fn from_vars(vars: Vars, environment: Environment) -> Result<Self, ConfigError> {
        let r = &vars;
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
            Some(v) => StoreConfig::parse(&v).ok_or_else(|| {
                err(
                    "KPI_STORE",
                    format!("expected sqlite:PATH or dynamodb:TABLE, got {v:.120}"),
                )
            })?,
        };

        let queue = match r.get("KPI_QUEUE").as_deref() {
            None | Some("local") => QueueConfig::Local,
            Some("sqs") => QueueConfig::Sqs,
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
            claims: crate::auth::ClaimNames {
                workspaces: claim_name(r, "KPI_AUTH_WORKSPACES_CLAIM")?
                    .unwrap_or_else(|| crate::auth::DEFAULT_WORKSPACES_CLAIM.into()),
                admin: claim_name(r, "KPI_AUTH_ADMIN_CLAIM")?
                    .unwrap_or_else(|| crate::auth::DEFAULT_ADMIN_CLAIM.into()),
            },
        };

        let oidc = match r.get("KPI_OIDC_ISSUER") {
            None => None,
            Some(_) => {
                r.url("KPI_OIDC_ISSUER", "")?;
                let issuer = r.get("KPI_OIDC_ISSUER").unwrap_or_default();
                let client_id = r.get("KPI_OIDC_CLIENT_ID").ok_or_else(|| {
                    err(
                        "KPI_OIDC_CLIENT_ID",
                        "is required when KPI_OIDC_ISSUER is set",
                    )
                })?;
                let scopes: Vec<String> = r
                    .get("KPI_OIDC_SCOPES")
                    .unwrap_or_else(|| DEFAULT_OIDC_SCOPES.into())
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if !scopes.iter().any(|s| s == "openid") {
                    return Err(err("KPI_OIDC_SCOPES", "must include openid"));
                }
                Some(OidcConfig {
                    issuer,
                    client_id,
                    client_secret: r.secret("KPI_OIDC_CLIENT_SECRET"),
                    scopes,
                })
            }
        };
        let cors_origins = match r.get("KPI_CORS_ORIGINS") {
            None => Vec::new(),
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|o| !o.is_empty())
                .map(|o| cors_origin(o).ok_or_else(|| {
                    err(
                        "KPI_CORS_ORIGINS",
                        format!("expected exact origins such as https://app.example.com, got {o:.80}"),
                    )
                }))
                .collect::<Result<_, _>>()?,
        };

        let notices = NoticeConfig {
            system_api_key: r.secret("KPI_SYSTEM_RESEND_API_KEY"),
            system_email_from: r.get("KPI_SYSTEM_EMAIL_FROM"),
            link_key: r.secret(kpi_notify::unsubscribe::LINK_KEY),
        };
        if let Some(key) = &notices.link_key {
            kpi_notify::unsubscribe::LinkKey::new(key)
                .map_err(|e| err(kpi_notify::unsubscribe::LINK_KEY, e.message().to_owned()))?;
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
            oidc,
            cors_origins,
            notices,
            sandbox,
            vars,
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
        // Keys fetched over plain http could be swapped on the way; only a
        // loopback address (a sidecar in the same sandbox) never leaves it.
        let issuer = self.oidc.as_ref().and_then(|o| Url::parse(&o.issuer).ok());
        for (name, url) in [
            ("KPI_AUTH_JWKS_URL", self.auth.jwks_url.as_ref()),
            ("KPI_OIDC_ISSUER", issuer.as_ref()),
        ] {
            if let Some(url) = url
                && url.scheme() != "https"
                && !is_loopback(url)
            {
                return Err(err(name, "must be an https URL in production"));
            }
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

    /// A cookie's name: `__Host-{base}` over https, so no subdomain or plain-http
    /// page can set one that shadows ours; `{base}` on plain-http development.
    pub fn cookie_name(&self, base: &str) -> String {
        if self.public_url.scheme() == "https" {
            format!("__Host-{base}")
        } else {
            base.to_owned()
        }
    }

    /// A path-scoped cookie's name (`__Host-` needs `Path=/`): `__Secure-{base}`
    /// over https.
    pub fn scoped_cookie_name(&self, base: &str) -> String {
        if self.public_url.scheme() == "https" {
            format!("__Secure-{base}")
        } else {
            base.to_owned()
        }
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

    /// The work queue URLs (`KPI_QUEUE=sqs`) of the providers in `registry`
    /// whose variable is set. A provider without one has no worker in this
    /// deployment: it is not scheduled, and a manual sync of it says so. No
    /// queue at all is a configuration error naming the first variable.
    pub fn queue_urls(
        &self,
        registry: &Registry,
    ) -> Result<HashMap<Provider, String>, ConfigError> {
        let mut urls = HashMap::new();
        for e in registry.entries() {
            let name = e.descriptor.queue_url_variable;
            if self.vars.get(name).is_some() {
                urls.insert(e.descriptor.id, self.vars.required_url(name)?.to_string());
            }
        }
        match registry.entries().next() {
            Some(first) if urls.is_empty() => Err(ConfigError::new(
                first.descriptor.queue_url_variable,
                "KPI_QUEUE=sqs needs the queue URL of at least one provider's worker",
            )),
            _ => Ok(urls),
        }
    }
}

/// An exact web origin (`scheme://host[:port]`, nothing after), as browsers
/// send it in `Origin`.
fn cors_origin(raw: &str) -> Option<String> {
    let url = Url::parse(raw).ok()?;
    let origin = url.origin().ascii_serialization();
    (matches!(url.scheme(), "http" | "https") && origin == raw.trim_end_matches('/'))
        .then_some(origin)
}

/// A URL whose host is a loopback IP address (not a name: DNS can say anything).
fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        _ => false,
    }
}

/// A claim name: any non-empty printable text (`custom:workspaces`,
/// `https://kpi.example.com/workspaces`), at most 200 characters.
fn claim_name(vars: &Vars, variable: &str) -> Result<Option<String>, ConfigError> {
    match vars.get(variable) {
        None => Ok(None),
        Some(name)
            if !name.is_empty() && name.len() <= 200 && !name.chars().any(char::is_control) =>
        {
            Ok(Some(name))
        }
        Some(_) => Err(err(variable, "expected the name of a token claim")),
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
        Config::from_lookup(move |name| map.get(name).cloned(), env)
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
            c.oauth_redirect_uri(kpi_providers::ga4::ID),
            "http://127.0.0.1:3000/v1/oauth/ga4/callback"
        );
        assert_eq!(c.sandbox, None);
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
        assert_eq!(
            c.oauth_redirect_uri(kpi_providers::meta::ID),
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
            ("KPI_AUTH_JWKS_URL", "http://auth.example.com/jwks.json"),
            ("KPI_AUTH_JWKS_URL", "http://localhost:9000/jwks.json"),
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
    fn jwks_over_plain_http_only_on_a_loopback_address() {
        for url in [
            "http://127.0.0.1:9000/jwks.json",
            "http://[::1]:9000/jwks.json",
        ] {
            let mut vars = PRODUCTION.to_vec();
            vars.retain(|(k, _)| *k != "KPI_AUTH_JWKS_URL");
            vars.push(("KPI_AUTH_JWKS_URL", url));
            parse(&vars, Environment::Production).unwrap();
        }
    }

    #[test]
    fn oidc_and_cors_settings() {
        let c = parse(PRODUCTION, Environment::Production).unwrap();
        assert!(c.oidc.is_none());
        assert!(c.cors_origins.is_empty());
        let mut vars = PRODUCTION.to_vec();
        vars.extend([
            ("KPI_OIDC_ISSUER", "https://login.example.com/"),
            ("KPI_OIDC_CLIENT_ID", "kpi-pages"),
            (
                "KPI_CORS_ORIGINS",
                "https://app.example.com, http://localhost:5173",
            ),
        ]);
        let c = parse(&vars, Environment::Production).unwrap();
        let oidc = c.oidc.unwrap();
        assert_eq!(oidc.scopes, ["openid", "email", "profile"]);
        assert!(oidc.client_secret.is_none());
        assert_eq!(
            c.cors_origins,
            ["https://app.example.com", "http://localhost:5173"]
        );
        for (name, value) in [
            ("KPI_OIDC_ISSUER", "http://login.example.com/"),
            ("KPI_CORS_ORIGINS", "https://app.example.com/path"),
            ("KPI_CORS_ORIGINS", "*"),
            ("KPI_OIDC_SCOPES", "email profile"),
        ] {
            let mut v = vars.clone();
            v.retain(|(k, _)| *k != name);
            v.push((name, value));
            assert_eq!(
                parse(&v, Environment::Production).unwrap_err().variable,
                name,
                "{value}"
            );
        }
        let mut v = vars.clone();
        v.retain(|(k, _)| *k != "KPI_OIDC_CLIENT_ID");
        assert_eq!(
            parse(&v, Environment::Production).unwrap_err().variable,
            "KPI_OIDC_CLIENT_ID"
        );
    }

    #[test]
    fn claim_names_default_and_are_configurable() {
        let c = parse(PRODUCTION, Environment::Production).unwrap();
        assert_eq!(c.auth.claims, crate::auth::ClaimNames::default());
        assert_eq!(c.auth.claims.workspaces, "workspaces");
        assert_eq!(c.auth.claims.admin, "platform_admin");
        let mut vars = PRODUCTION.to_vec();
        vars.push(("KPI_AUTH_WORKSPACES_CLAIM", "custom:workspaces"));
        vars.push(("KPI_AUTH_ADMIN_CLAIM", "https://kpi.example.com/operator"));
        let c = parse(&vars, Environment::Production).unwrap();
        assert_eq!(c.auth.claims.workspaces, "custom:workspaces");
        assert_eq!(c.auth.claims.admin, "https://kpi.example.com/operator");
        let e = parse(
            &[("KPI_AUTH_ADMIN_CLAIM", "a\u{7}b")],
            Environment::Development,
        )
        .unwrap_err();
        assert_eq!(e.variable, "KPI_AUTH_ADMIN_CLAIM");
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
            ("KPI_PUBLIC_URL", "::"),
        ] {
            let e = parse(&[(name, value)], Environment::Development).unwrap_err();
            assert_eq!(e.variable, name, "{value}");
            assert!(e.to_string().starts_with(name));
        }
    }

    #[test]
    fn secrets_are_not_echoed_in_debug() {
        let c = parse(
            &[("GOOGLE_CLIENT_SECRET", "gcs-secret-value")],
            Environment::Development,
        )
        .unwrap();
        assert!(!format!("{c:?}").contains("gcs-secret-value"));
    }
}
