use axum::Json;
use axum::extract::State;
use kpi_core::metric::Metric;
use kpi_core::ports::provider::SettingSpec;
use kpi_core::provider::{AuthMode, Provider};
use serde::Serialize;

use crate::state::AppState;

#[derive(Serialize, utoipa::ToSchema)]
pub struct ProviderInfo {
    id: Provider,
    name: &'static str,
    auth_mode: AuthMode,
    metrics: Vec<MetricInfo>,
    /// What a workspace chooses after connecting.
    settings: Vec<SettingInfo>,
    /// Served by the built-in sandbox instead of the real provider.
    sandbox: bool,
    /// Whether a workspace can connect it in this deployment.
    available: bool,
    /// Where its webhooks arrive: `/v1/webhooks/{webhook_path}` (absent when
    /// it sends none).
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_path: Option<&'static str>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct MetricInfo {
    name: Metric,
    unit: kpi_core::metric::Unit,
}

#[derive(Serialize, utoipa::ToSchema)]
struct SettingInfo {
    key: &'static str,
    label: &'static str,
    /// The expected form of a value.
    expected: &'static str,
    /// Needed before the integration syncs.
    required: bool,
    /// The integration's options endpoint lists the choices.
    from_options: bool,
}

impl From<&SettingSpec> for SettingInfo {
    fn from(s: &SettingSpec) -> Self {
        Self {
            key: s.key,
            label: s.label,
            expected: s.expected,
            required: s.required,
            from_options: s.from_options,
        }
    }
}

/// The catalogue of connectable providers and the KPI metrics each one yields.
#[utoipa::path(get, path = "/v1/providers", operation_id = "listProviders", tag = "system", security(()),
    responses((status = 200, body = Vec<ProviderInfo>)))]
pub async fn list(State(state): State<AppState>) -> Json<Vec<ProviderInfo>> {
    Json(
        state
            .registry
            .entries()
            .map(|e| {
                let d = &e.descriptor;
                ProviderInfo {
                    id: d.id,
                    name: d.display_name,
                    auth_mode: d.auth,
                    metrics: d
                        .metrics
                        .iter()
                        .map(|m| MetricInfo {
                            name: m.metric,
                            unit: m.unit,
                        })
                        .collect(),
                    settings: d.settings.iter().map(SettingInfo::from).collect(),
                    sandbox: e.sandbox,
                    available: e.is_available(),
                    webhook_path: d.webhook.map(|w| w.path),
                }
            })
            .collect(),
    )
}
