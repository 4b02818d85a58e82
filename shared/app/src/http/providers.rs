use axum::Json;
use axum::extract::State;
use kpi_core::metric::Metric;
use kpi_core::provider::{AuthMode, Provider};
use serde::Serialize;

use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    id: Provider,
    name: &'static str,
    auth_mode: AuthMode,
    metrics: Vec<MetricInfo>,
    /// Served by the built-in sandbox instead of the real provider.
    sandbox: bool,
    /// Whether a workspace can connect it in this deployment.
    available: bool,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MetricInfo {
    #[schema(value_type = String)]
    name: Metric,
    unit: kpi_core::metric::Unit,
}

/// The catalogue of connectable providers and the KPI metrics each one yields.
#[utoipa::path(get, path = "/v1/providers", tag = "system", security(()),
    responses((status = 200, body = Vec<ProviderInfo>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ProviderInfo>> {
    Json(
        Provider::ALL
            .into_iter()
            .map(|p| ProviderInfo {
                id: p,
                name: p.display_name(),
                auth_mode: p.auth_mode(),
                metrics: Metric::for_provider(p)
                    .map(|m| MetricInfo {
                        name: m,
                        unit: m.unit(),
                    })
                    .collect(),
                sandbox: state.config.sandbox_for(p),
                available: state.providers.is_available(p),
            })
            .collect(),
    )
}
