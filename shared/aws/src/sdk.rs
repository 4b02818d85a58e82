use aws_config::{BehaviorVersion, ConfigLoader, SdkConfig};
use aws_smithy_http_client::tls::{self, TlsContext, TrustStore, rustls_provider::CryptoMode};
use base64::Engine as _;

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
        .tls_context(
            TlsContext::builder()
                .with_trust_store(compiled_in_roots())
                .build()
                .expect("a trust store of PEM certificates"),
        )
        .build_https();
    aws_config::defaults(BehaviorVersion::latest()).http_client(http)
}

/// The Mozilla root certificates compiled in (as the providers' client has
/// them), instead of the system store: reading and parsing the system's
/// certificate files took most of a function's cold start (about 10 ms of
/// 15). The SDK takes custom roots as PEM only, so each is framed as PEM here.
fn compiled_in_roots() -> TrustStore {
    let mut store = TrustStore::empty().with_native_roots(false);
    for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
        store.add_pem_certificate(pem(cert.as_ref()));
    }
    store
}

/// One DER certificate as PEM.
fn pem(der: &[u8]) -> String {
    let body = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::with_capacity(body.len() + body.len() / 64 + 60);
    pem.push_str("-----BEGIN CERTIFICATE-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

#[cfg(test)]
mod tests {
    use base64::Engine as _;

    #[test]
    fn every_compiled_in_root_survives_its_pem_framing() {
        let engine = base64::engine::general_purpose::STANDARD;
        for cert in webpki_root_certs::TLS_SERVER_ROOT_CERTS {
            let pem = super::pem(cert.as_ref());
            let body: String = pem
                .lines()
                .filter(|l| !l.starts_with("-----"))
                .inspect(|l| assert!(l.len() <= 64))
                .collect();
            assert_eq!(engine.decode(body).unwrap(), cert.as_ref());
        }
        // AWS endpoints chain to Amazon's roots: they are among them.
        assert!(
            webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .any(|c| c.windows(16).any(|w| w == b"Amazon Root CA 1"))
        );
    }
}
