use axum::Json;
use serde_json::{Value, json};

/// Liveness: the process is up and serving. Dependencies are checked by the
/// routes that use them, so one slow backend does not fail every health probe.
pub async fn healthz() -> Json<Value> {
    Json(json!({
        "status": "ok",
        "version": env!("CARGO_PKG_VERSION"),
    }))
}
