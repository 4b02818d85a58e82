use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Shared SDK configuration for every AWS client of a process, built once per
/// cold start. The HTTP client is hyper 1 + rustls with ring: the same TLS stack
/// as the rest of the tree. `AWS_ENDPOINT_URL` (tests: the moto server) and the
/// usual credential and region variables are honoured.
pub async fn load_sdk_config() -> SdkConfig {
    sdk_config_loader().load().await
}

/// The loader behind [`load_sdk_config`], for callers that set more (tests).
pub fn sdk_config_loader() -> ConfigLoader {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}
