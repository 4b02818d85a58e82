//! The one HTTP client setup: rustls with ring and compiled-in web PKI roots
//! (no read of the system certificate store on a cold start), a User-Agent
//! (Resend rejects requests without one), and timeouts.

use std::sync::Arc;
use std::time::Duration;

use kpi_core::{Error, Result};

pub const USER_AGENT: &str = concat!("kpi-integrations/", env!("CARGO_PKG_VERSION"));

/// Builds the client shared by every provider adapter of a process.
pub fn client(timeout: Duration) -> Result<reqwest::Client> {
    // Also make ring the process default, for any other rustls user in-process.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::internal("TLS setup failed").with_source(e))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .user_agent(USER_AGENT)
        .timeout(timeout)
        .connect_timeout(Duration::from_secs(5))
        // Provider redirects are not expected; following one could forward a
        // bearer token to another host.
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| Error::internal("HTTP client setup failed").with_source(e.without_url()))
}

/// Maps a failure to reach a provider. The URL (which may carry a provider's
/// query-string secret) is dropped before the error is kept.
pub fn send_error(provider: &str, e: reqwest::Error) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        Error::transient(format!("{provider} did not answer in time")).with_source(e)
    } else if e.is_connect() || e.is_request() {
        Error::transient(format!("{provider} could not be reached")).with_source(e)
    } else {
        Error::transient(format!("{provider} request failed")).with_source(e)
    }
}

/// A provider response read whole: status, `Retry-After` and body bytes.
pub struct Reply {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Vec<u8>,
}

/// Largest provider response body we read (reports can be large).
const MAX_BODY: usize = 32 * 1024 * 1024;

pub async fn read(provider: &str, resp: reqwest::Response) -> Result<Reply> {
    let status = resp.status().as_u16();
    // Inside a job's span this line carries the job's ids; never the URL.
    tracing::info!(provider, status, "provider answered");
    let retry_after = resp
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs);
    let headers = resp.headers().clone();
    let body = resp.bytes().await.map_err(|e| send_error(provider, e))?;
    if body.len() > MAX_BODY {
        return Err(Error::transient(format!(
            "{provider} sent an oversized response"
        )));
    }
    Ok(Reply {
        status,
        retry_after,
        headers,
        body: body.to_vec(),
    })
}

impl Reply {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// Parses a success body; a body that does not parse is the provider's fault
    /// and worth a retry.
    pub fn json<T: serde::de::DeserializeOwned>(&self, provider: &str) -> Result<T> {
        serde_json::from_slice(&self.body).map_err(|e| {
            Error::transient(format!("{provider} sent a response we could not read")).with_source(e)
        })
    }
}

/// Joins `path` under `base`'s path (`https://h/sandbox` + `google/auth`).
pub fn join(base: &url::Url, path: &str) -> url::Url {
    let mut url = base.clone();
    url.set_path(&format!(
        "{}/{}",
        base.path().trim_end_matches('/'),
        path.trim_start_matches('/')
    ));
    url
}
