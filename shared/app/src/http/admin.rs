//! `/v1/admin/…`: the operators' view of sync jobs and queues, retry and redrive.
//! Platform admins only; anyone else gets 404, as for a route that is not there.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use kpi_core::page::{Cursor, PageRequest};
use kpi_core::ports::QueueName;
use kpi_core::ports::store::JobFilter;
use kpi_core::{Error, JobId, JobStatus, Provider, WorkspaceId};
use kpi_sync::admin::RedriveReport;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::extract::{ApiQuery, Auth};
use super::problem::{ApiError, ProblemResponse};
use super::views::{JobView, SyncAccepted};
use crate::state::AppState;

#[derive(Serialize, ToSchema)]
pub struct AdminJobView {
    pub workspace: String,
    #[serde(flatten)]
    pub job: JobView,
}

#[derive(Serialize, ToSchema)]
pub struct AdminJobPage {
    pub items: Vec<AdminJobView>,
    pub next_cursor: Option<String>,
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct JobQuery {
    /// Job status (default `dead`).
    status: Option<JobStatus>,
    provider: Option<Provider>,
    workspace: Option<String>,
    /// Updated at or after (RFC 3339).
    since: Option<DateTime<Utc>>,
    /// Updated before (RFC 3339).
    until: Option<DateTime<Utc>>,
    limit: Option<u32>,
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/admin/sync-jobs", operation_id = "listSyncJobs", tag = "admin",
    params(JobQuery),
    responses((status = 200, body = AdminJobPage), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 422, response = ProblemResponse)))]
pub async fn jobs(
    State(state): State<AppState>,
    Auth(p): Auth,
    ApiQuery(q): ApiQuery<JobQuery>,
) -> Result<Json<AdminJobPage>, ApiError> {
    let admin = p.admin_scope()?;
    let workspace = q.workspace.as_deref().map(WorkspaceId::parse).transpose()?;
    let filter = JobFilter {
        status: q.status.unwrap_or(JobStatus::Dead),
        provider: q.provider,
        workspace,
        since: q.since,
        until: q.until,
    };
    let limit = q.limit.unwrap_or(50);
    let page = match q.cursor {
        Some(c) => PageRequest::after(limit, Cursor::from_token(c)),
        None => PageRequest::first(limit),
    };
    let result = state
        .store
        .list_jobs_by_status(&admin, &filter, &page)
        .await?;
    Ok(Json(AdminJobPage {
        items: result
            .items
            .iter()
            .map(|j| AdminJobView {
                workspace: j.workspace.to_string(),
                job: JobView::from(j),
            })
            .collect(),
        next_cursor: result.next.map(|c| c.as_token().to_owned()),
    }))
}

#[utoipa::path(get, path = "/v1/admin/sync-jobs/{job}", operation_id = "getSyncJob", tag = "admin",
    params(("job" = String, Path)),
    responses((status = 200, body = AdminJobView), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse)))]
pub async fn job(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(job): Path<String>,
) -> Result<Json<AdminJobView>, ApiError> {
    let admin = p.admin_scope()?;
    let id = JobId::parse(&job).map_err(|_| Error::not_found("sync job not found"))?;
    let j = state.store.find_job(&admin, id).await?;
    Ok(Json(AdminJobView {
        workspace: j.workspace.to_string(),
        job: JobView::from(&j),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct QueueView {
    pub provider: Provider,
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    pub dlq_visible: u64,
    pub dlq_in_flight: u64,
}

#[utoipa::path(get, path = "/v1/admin/queues", operation_id = "listQueues", tag = "admin",
    responses((status = 200, body = Vec<QueueView>), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse)))]
pub async fn queues(
    State(state): State<AppState>,
    Auth(p): Auth,
) -> Result<Json<Vec<QueueView>>, ApiError> {
    p.admin_scope()?;
    let depths = kpi_sync::admin::queue_depths(&*state.queue, state.registry.providers()).await?;
    Ok(Json(
        depths
            .into_iter()
            .map(|d| QueueView {
                provider: d.provider,
                visible: d.work.visible,
                in_flight: d.work.in_flight,
                delayed: d.work.delayed,
                dlq_visible: d.dead.visible,
                dlq_in_flight: d.dead.in_flight,
            })
            .collect(),
    ))
}

#[utoipa::path(post, path = "/v1/admin/sync-jobs/{job}/retry", operation_id = "retrySyncJob", tag = "admin",
    params(("job" = String, Path)),
    responses((status = 202, body = SyncAccepted), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse), (status = 409, response = ProblemResponse)))]
pub async fn retry(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(job): Path<String>,
) -> Result<(StatusCode, Json<SyncAccepted>), ApiError> {
    let admin = p.admin_scope()?;
    let id = JobId::parse(&job).map_err(|_| Error::not_found("sync job not found"))?;
    let job =
        kpi_sync::admin::retry_job(&*state.store, &*state.queue, &*state.clock, &admin, id).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(SyncAccepted {
            job_id: job.id.to_string(),
            status: job.status(),
            existing: false,
        }),
    ))
}

#[derive(Serialize, ToSchema)]
pub struct RedriveView {
    pub messages_moved: usize,
    pub jobs_requeued: usize,
    /// Dead jobs not queued again: older ones beside an integration's newest,
    /// and those of integrations with a job queued or running.
    pub jobs_left: usize,
}

/// Most dead jobs one redrive call queues again.
pub const REDRIVE_MAX: usize = 1_000;

#[utoipa::path(post, path = "/v1/admin/dlq/{provider}/redrive", operation_id = "redriveDeadLetters", tag = "admin",
    params(("provider" = String, Path)),
    responses((status = 200, body = RedriveView), (status = 401, response = ProblemResponse),
        (status = 404, response = ProblemResponse)))]
pub async fn redrive(
    State(state): State<AppState>,
    Auth(p): Auth,
    Path(provider): Path<String>,
) -> Result<Json<RedriveView>, ApiError> {
    let admin = p.admin_scope()?;
    let provider = state
        .registry
        .parse("provider", &provider)
        .ok()
        .filter(|p| state.queue.serves(QueueName::Work(*p)))
        .ok_or_else(|| Error::not_found("no queue for that provider here"))?;
    let RedriveReport {
        messages_moved,
        jobs_requeued,
        jobs_left,
    } = kpi_sync::admin::redrive(
        &*state.store,
        &*state.queue,
        &*state.clock,
        &admin,
        provider,
        REDRIVE_MAX,
    )
    .await?;
    Ok(Json(RedriveView {
        messages_moved,
        jobs_requeued,
        jobs_left,
    }))
}
