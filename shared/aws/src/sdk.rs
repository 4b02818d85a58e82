use aws_config::environment::EnvironmentVariableCredentialsProvider;
use aws_config::{BehaviorVersion, ConfigLoader, Region, SdkConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};

/// Shared SDK configuration for every AWS client of a process, built once per
/// cold start. The HTTP client is hyper 1 + rustls with ring: the same TLS stack
/// as the rest of the tree. `AWS_ENDPOINT_URL` (tests: the moto server) and the
/// usual credential and region variables are honoured.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

/// The loader behind [`load_sdk_config`], for callers that set more (tests).
pub fn sdk_config_loader() -> ConfigLoader {
    from_environment(base_loader(), |name| std::env::var(name).ok())
}

/// Lambda gives every function its region and its role's credentials in the
/// environment. Taken from there, the loader builds neither default chain:
/// the credentials chain builds an STS client (for web identity tokens) and
/// the region chain an IMDS client, about a third of the instructions of a
/// function's cold start, for providers Lambda never uses. Anywhere else (a
/// profile, a container), the default chains apply as before; where the
/// variables are set, those chains would have chosen them first too.
fn from_environment(
    mut loader: ConfigLoader,
    var: impl Fn(&str) -> Option<String>,
) -> ConfigLoader {
    let set = |name: &str| var(name).filter(|v| !v.is_empty());
    if let Some(region) = set("AWS_REGION").or_else(|| set("AWS_DEFAULT_REGION")) {
        loader = loader.region(Region::new(region));
    }
    if set("AWS_ACCESS_KEY_ID").is_some() && set("AWS_SECRET_ACCESS_KEY").is_some() {
        loader = loader.credentials_provider(EnvironmentVariableCredentialsProvider::new());
    }
    loader
}

fn base_loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .tls_context(
            TlsContext::builder()
                .with_trust_store(compiled_in_roots())
                .build()
                .expect("a trust store of PEM certificates"),
        )
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}

/// The roots AWS endpoints chain to, compiled in (see build.rs).
const AWS_ROOTS_PEM: &str = include_str!(concat!(env!("OUT_DIR"), "/aws-roots.pem"));

/// Set to `system` to trust the system's certificate store instead (AWS in
/// China, or a proxy that re-signs TLS).
pub const TRUST_VARIABLE: &str = "KPI_AWS_TLS_ROOTS";

/// The SDK client's trust roots: Amazon's, compiled in. The system store is
/// read and parsed file by file at every cold start, which took most of a
/// function's start-up (about 10 ms of 15).
fn compiled_in_roots() -> TrustStore {
    if std::env::var(TRUST_VARIABLE).as_deref() == Ok("system") {
        return TrustStore::default();
    }
    TrustStore::empty()
        .with_native_roots(false)
        .with_pem_certificate(AWS_ROOTS_PEM)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use base64::Engine as _;

    async fn loaded(vars: &[(&str, &str)]) -> aws_config::SdkConfig {
        let vars: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        super::from_environment(super::base_loader(), |name| vars.get(name).cloned())
            .load()
            .await
    }

    #[tokio::test]
    async fn the_region_comes_from_the_environment_when_it_is_there() {
        let sdk = loaded(&[
            ("AWS_REGION", "eu-central-1"),
            ("AWS_DEFAULT_REGION", "us-east-1"),
        ])
        .await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("eu-central-1"));
        let sdk = loaded(&[("AWS_DEFAULT_REGION", "ap-south-1")]).await;
        assert_eq!(sdk.region().map(|r| r.as_ref()), Some("ap-south-1"));
    }

    #[test]
    fn amazons_roots_are_compiled_in_whole() {
        let certs: Vec<Vec<u8>> = super::AWS_ROOTS_PEM
            .split("-----END CERTIFICATE-----")
            .filter(|c| c.contains("BEGIN"))
            .map(|c| {
                let body: String = c.lines().filter(|l| !l.starts_with("-----")).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(body)
                    .unwrap()
            })
            .collect();
        for name in [
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ] {
            assert!(
                certs
                    .iter()
                    .any(|c| c.windows(name.len()).any(|w| w == name.as_bytes())),
                "{name} is missing"
            );
        }
        // Each is one of the Mozilla set, byte for byte.
        for c in &certs {
            assert!(
                webpki_root_certs::TLS_SERVER_ROOT_CERTS
                    .iter()
                    .any(|m| m.as_ref() == c.as_slice())
            );
        }
    }
}
