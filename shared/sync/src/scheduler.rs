//! The scheduler: due integrations → one job each → provider queues.
//!
//! For each due integration it moves the next sync time and inserts the job in
//! one atomic store step (compare-and-swap on the integration's version), so a
//! tick that fires twice, or two schedulers running at once, create one job per
//! integration and tick. Messages go out in batches of ten. A job whose message
//! could not be sent stays `queued` and is sent again by a later run, so nothing
//! is lost between the store and the queue.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use kpi_core::job::JobTrigger;
use kpi_core::page::PageRequest;
use kpi_core::ports::queue::MAX_SEND_BATCH;
use kpi_core::ports::store::JobFilter;
use kpi_core::ports::{Clock, Queue, Store};
use kpi_core::{AdminScope, JobId, JobStatus, Provider, Result, SyncJob, WorkspaceScope};

#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// Due integrations read per store page.
    pub page_size: u32,
    /// Most jobs one run creates; the rest stay due and drain in the next runs.
    pub max_per_run: usize,
    /// A queued job older than this whose message may have been lost is sent again.
    pub resend_after: Duration,
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_per_run: 5_000,
            resend_after: Duration::minutes(15),
        }
    }
}

#[derive(Debug, Default, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SchedulerReport {
    pub due_seen: usize,
    pub jobs_created: usize,
    /// Integrations another scheduler run claimed first.
    pub already_claimed: usize,
    pub messages_sent: usize,
    pub batch_calls: usize,
    pub resent: usize,
    /// The per-run cap was reached: more due integrations remain.
    pub capped: bool,
}

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    pub settings: SchedulerSettings,
}

impl Scheduler {
    pub async fn run_once(&self) -> Result<SchedulerReport> {
        let now = self.clock.now();
        let mut report = SchedulerReport::default();
        let mut outbox: HashMap<Provider, Vec<SyncJob>> = HashMap::new();
        let mut page = PageRequest::first(self.settings.page_size);
        'pages: loop {
            let due = self.store.due_integrations(now, &page).await?;
            for d in due.items {
                report.due_seen += 1;
                if report.jobs_created >= self.settings.max_per_run {
                    report.capped = true;
                    break 'pages;
                }
                let scope = WorkspaceScope::for_system(
                    d.workspace.clone(),
                    "due integration found by the scheduler",
                );
                let mut integration = match self.store.get_integration(&scope, d.integration).await
                {
                    Ok(i) => i,
                    Err(e) if e.is_not_found() => continue,
                    Err(e) => return Err(e),
                };
                if !integration.is_due(now) {
                    continue; // moved since the index was read
                }
                let job = SyncJob::new(
                    JobId::new_time_ordered(),
                    integration.workspace.clone(),
                    integration.id,
                    integration.provider,
                    JobTrigger::Schedule,
                    None,
                    now,
                );
                integration.next_sync_at = Some(integration.following_sync(now));
                integration.updated_at = now;
                match self
                    .store
                    .create_job_with_integration(&scope, &job, &integration)
                    .await
                {
                    Ok(_) => {
                        report.jobs_created += 1;
                        outbox.entry(job.provider).or_default().push(job);
                    }
                    Err(e) if e.is_conflict() => report.already_claimed += 1,
                    Err(e) => return Err(e),
                }
            }
            match due.next {
                Some(cursor) => page = PageRequest::after(self.settings.page_size, cursor),
                None => break,
            }
        }
        report.resent = self.collect_unsent(now, &mut outbox).await?;
        for (provider, jobs) in outbox {
            self.send(provider, &jobs, &mut report).await;
        }
        tracing::info!(?report, "scheduler run finished");
        Ok(report)
    }

    /// Queued jobs that have waited too long, likely because their send failed.
    async fn collect_unsent(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        outbox: &mut HashMap<Provider, Vec<SyncJob>>,
    ) -> Result<usize> {
        let admin = AdminScope::for_system("scheduler resends queued jobs");
        let filter = JobFilter {
            status: JobStatus::Queued,
            provider: None,
            workspace: None,
            since: None,
            until: Some(now - self.settings.resend_after),
        };
        let mut count = 0;
        let mut page = PageRequest::first(100);
        loop {
            let stale = self
                .store
                .list_jobs_by_status(&admin, &filter, &page)
                .await?;
            for job in stale.items {
                count += 1;
                outbox.entry(job.provider).or_default().push(job);
            }
            match stale.next {
                Some(c) if count < self.settings.max_per_run => page = PageRequest::after(100, c),
                _ => return Ok(count),
            }
        }
    }

    async fn send(&self, provider: Provider, jobs: &[SyncJob], report: &mut SchedulerReport) {
        for chunk in jobs.chunks(MAX_SEND_BATCH) {
            report.batch_calls += 1;
            match crate::enqueue(&*self.queue, chunk, None).await {
                Ok(_) => report.messages_sent += chunk.len(),
                // The jobs stay queued; a later run sends them again.
                Err(e) => {
                    tracing::error!(provider = %provider, error = %e.log_chain(), "sending sync messages failed")
                }
            }
        }
    }
}
