//! `GET /v1/workspaces/{ws}/kpis`: daily KPI points of one metric.

use axum::Json;
use axum::extract::{Path, State};
use chrono::NaiveDate;
use kpi_core::ports::store::KpiQuery;
use kpi_core::{Error, IntegrationId};
use serde::Deserialize;
use utoipa::IntoParams;

use super::extract::{ApiQuery, Auth, workspace_scope};
use super::problem::{ApiError, ProblemResponse};
use super::views::{KpiPointView, KpiSeries};
use crate::state::AppState;

/// Longest range one query may read.
pub const MAX_QUERY_DAYS: i64 = 731;

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KpiParams {
    /// A metric name such as `ga4.sessions` or `meta.spend`.
    metric: String,
    /// First day (inclusive), `YYYY-MM-DD`.
    from: NaiveDate,
    /// Last day (inclusive), `YYYY-MM-DD`.
    to: NaiveDate,
    /// Only this integration's points.
    integration: Option<String>,
}

#[utoipa::path(get, path = "/v1/workspaces/{ws}/kpis", operation_id = "queryKpis", tag = "kpis",
    params(("ws" = String, Path), KpiParams),
    responses((status = 200, body = KpiSeries), (status = 401, response = ProblemResponse), (status = 404, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn query(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(ws): Path<String>,
    ApiQuery(q): ApiQuery<KpiParams>,
) -> Result<Json<KpiSeries>, ApiError> {
    let scope = workspace_scope(&p, &ws)?;
    let spec = state.registry.metric(&q.metric)?;
    if q.from > q.to {
        return Err(Error::validation("from", "`from` must not be after `to`").into());
    }
    if (q.to - q.from).num_days() + 1 > MAX_QUERY_DAYS {
        return Err(
            Error::validation("from", format!("at most {MAX_QUERY_DAYS} days per query")).into(),
        );
    }
    let integration = q
        .integration
        .as_deref()
        .map(IntegrationId::parse)
        .transpose()?;
    let points = state
        .store
        .query_kpis(
            &scope,
            &KpiQuery {
                metric: spec.metric,
                from: q.from,
                to: q.to,
                integration,
            },
        )
        .await?;
    Ok(Json(KpiSeries {
        metric: spec.metric.to_string(),
        unit: spec.unit,
        from: q.from,
        to: q.to,
        points: points
            .into_iter()
            .map(|p| KpiPointView {
                date: p.date,
                integration: p.integration.to_string(),
                value: p.value,
                currency: p.currency.map(|c| c.as_str().to_owned()),
            })
            .collect(),
    }))
}
