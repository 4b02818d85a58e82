use axum::Json;

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    status: String,
    version: String,
}

/// Liveness: the process is up and serving. Dependencies are checked by the
/// routes that use them, so one slow backend does not fail every health probe.
#[utoipa::path(get, path = "/healthz", operation_id = "getHealth", tag = "system", security(()),
    responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
    })
}
