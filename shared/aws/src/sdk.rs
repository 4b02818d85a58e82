use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};

/// Shared SDK configuration for every AWS client of a process, built once per
/// cold start. The HTTP client is hyper 1 + rustls with ring: the same TLS stack
/// as the rest of the tree. `AWS_ENDPOINT_URL` (tests: the moto server) and the
/// usual credential and region variables are honoured.
pub async fn load_sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await
}
