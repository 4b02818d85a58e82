//! Cross-origin calls to `/v1/*` from the dashboard's own pages
//! (`KPI_CORS_ORIGINS`): exact origins only, with bearer tokens, never with
//! the browser's credentials, so no cookie of ours is ever sent cross-origin.
//!
//! The routers are built before the configuration is known (a Lambda
//! reconfigures while warm), so the deployment puts the allowed origins into
//! each request ([`CorsOrigins`]) and the layer reads them there. An origin
//! not on the list gets no CORS header at all.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::Response;
use tower_http::cors::{AllowOrigin, CorsLayer};

/// The origins allowed for the current request's deployment.
#[derive(Clone, Default)]
pub struct CorsOrigins(pub Arc<[HeaderValue]>);

impl CorsOrigins {
    pub fn new(origins: &[String]) -> Self {
        Self(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect(),
        )
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

fn allowed(request: &Request) -> bool {
    match (
        request.headers().get(header::ORIGIN),
        request.extensions().get::<CorsOrigins>(),
    ) {
        (Some(origin), Some(origins)) => origins.allows(origin),
        _ => false,
    }
}

/// Bearer tokens and JSON, the request id back; preflights cached 10 minutes.
fn layer() -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(|origin, parts| {
            parts
                .extensions
                .get::<CorsOrigins>()
                .is_some_and(|o| o.allows(origin))
        }))
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .expose_headers([HeaderName::from_static("x-request-id"), header::LOCATION])
        .max_age(Duration::from_secs(600))
}

/// The CORS answer for an allowed origin; any other request passes by it
/// untouched.
pub async fn middleware(request: Request, next: Next) -> Response {
    use tower::ServiceExt as _;
    if !allowed(&request) {
        return next.run(request).await;
    }
    let inner = tower::service_fn(move |request: Request| {
        let next = next.clone();
        async move { Ok::<_, std::convert::Infallible>(next.run(request).await) }
    });
    match tower::Layer::layer(&layer(), inner).oneshot(request).await {
        Ok(response) => response.map(axum::body::Body::new),
        Err(never) => match never {},
    }
}
