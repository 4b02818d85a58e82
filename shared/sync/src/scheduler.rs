//! The scheduler: due integrations → one job each → provider queues.
//!
//! For each due integration it moves the next sync time and inserts the job in
//! one atomic store step (compare-and-swap on the integration's version), so a
//! tick that fires twice, or two schedulers running at once, create one job per
//! integration and tick. A page's claims run side by side
//! ([`SchedulerSettings::claims_at_once`]). Messages go out in batches of ten, and each job
//! records when its message reached the queue. A job whose message could not
//! be sent, or that outlived the queue's retention, stays `queued` and is sent
//! again by a later run — at most [`SchedulerSettings::max_sends`] times, then
//! it ends dead with its error — so nothing is lost between the store and the
//! queue and nothing piles up. A job that only waits behind a backlog, for
//! hours if need be, is never sent twice nor given up.
//!
//! An integration with a job still queued or running gets no second one; a
//! provider whose work queue this deployment does not serve (no worker) is
//! not scheduled at all.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::Duration;
use futures::StreamExt as _;
use kpi_core::job::JobTrigger;
use kpi_core::page::PageRequest;
use kpi_core::ports::queue::MAX_SEND_BATCH;
use kpi_core::ports::store::{DueIntegration, JobFilter};
use kpi_core::ports::{Clock, Queue, QueueName, Store};
use kpi_core::{
    AdminScope, Error, Integration, JobId, JobStatus, Provider, Result, SyncJob, WorkspaceScope,
};

use crate::dlq::finish_dead;
use crate::notifier::Notifier;

#[derive(Debug, Clone, Copy)]
pub struct SchedulerSettings {
    /// Due integrations read per store page.
    pub page_size: u32,
    /// Most jobs one run creates; the rest stay due and drain in the next runs.
    pub max_per_run: usize,
    /// A queued job not recorded as sent this long after its last update is
    /// sent again (its send failed, or the process ended before recording it).
    pub unsent_after: Duration,
    /// Sends of one job's message before it is given up as undeliverable.
    pub max_sends: u32,
    /// Due integrations claimed side by side (each claim waits on the store
    /// twice; one after another, 5,000 claims take minutes on DynamoDB). The
    /// embedded store wants 1 ([`EMBEDDED_CLAIMS_AT_ONCE`]).
    pub claims_at_once: usize,
}

/// [`SchedulerSettings::claims_at_once`] for the embedded SQLite store: its
/// one writer takes the claims one at a time anyway, and side-by-side claims
/// keep its read connections busy, so its WAL checkpoints never find a
/// moment to finish and every read slows down as the log grows.
pub const EMBEDDED_CLAIMS_AT_ONCE: usize = 1;

impl SchedulerSettings {
    /// The queued jobs a run looks at to send again or give up: those last
    /// updated more than [`SchedulerSettings::unsent_after`] ago (a job made
    /// moments ago may still be on its way to the queue).
    fn unsent_filter(&self, now: chrono::DateTime<chrono::Utc>) -> JobFilter {
        JobFilter {
            status: JobStatus::Queued,
            provider: None,
            workspace: None,
            since: None,
            until: Some(now - self.unsent_after),
        }
    }
}

/// Whether a queued job's message is in the queue, which holds what was sent
/// since `held_since`: the job only waits its turn.
fn waits_in_queue(job: &SyncJob, held_since: chrono::DateTime<chrono::Utc>) -> bool {
    job.sent_at.is_some_and(|at| at >= held_since)
}

/// Whether a run at `now` would find nothing to fan out in the store: no
/// integration due, and no queued job to send again or give up (by the
/// run's own rules, for a queue that holds what was sent since
/// `held_since`). Such a run needs neither the queue nor the notifier, so a
/// Lambda answers it before its configuration (the application secret) is
/// ready. Scheduled reports are the tick's other work, checked by its caller.
pub async fn nothing_to_fan_out(
    store: &dyn Store,
    settings: &SchedulerSettings,
    now: chrono::DateTime<chrono::Utc>,
    held_since: chrono::DateTime<chrono::Utc>,
) -> Result<bool> {
    // One after the other: on a busy deployment the first answers it.
    if !store
        .due_integrations(now, &PageRequest::first(1))
        .await?
        .items
        .is_empty()
    {
        return Ok(false);
    }
    let admin = AdminScope::for_system("scheduler looks for queued jobs to send again");
    let queued = store
        .list_jobs_by_status(
            &admin,
            &settings.unsent_filter(now),
            &PageRequest::first(settings.page_size),
        )
        .await?;
    Ok(queued.next.is_none() && queued.items.iter().all(|j| waits_in_queue(j, held_since)))
}

impl Default for SchedulerSettings {
    fn default() -> Self {
        Self {
            page_size: 100,
            max_per_run: 5_000,
            unsent_after: Duration::minutes(2),
            max_sends: 4,
            claims_at_once: 16,
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
    /// Queued jobs whose message the queue holds: waiting their turn.
    pub waiting: usize,
    /// Queued jobs given up after `max_sends` sends: ended dead.
    pub given_up: usize,
    /// Due integrations that still had a job queued or running.
    pub still_active: usize,
    /// Due integrations of providers without a worker in this deployment.
    pub not_served: usize,
    /// The per-run cap was reached: more due integrations remain.
    pub capped: bool,
    /// Scheduled reports sent in this run.
    pub reports_sent: usize,
}

/// What claiming one due integration came to.
enum Claim {
    Created(Box<SyncJob>),
    /// Gone or no longer due.
    Skipped,
    StillActive,
    NotServed,
    AlreadyClaimed,
}

pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub queue: Arc<dyn Queue>,
    pub clock: Arc<dyn Clock>,
    /// Told when a job is given up (its integration's failure notice).
    pub notifier: Arc<dyn Notifier>,
    /// Scheduled reports (and other due work) run on the same tick.
    pub due_work: Option<Arc<dyn crate::notifier::DueWork>>,
    pub settings: SchedulerSettings,
}

/// Time a tick keeps after its reports for the rest of its invocation (the
/// report of the run, the logs).
pub const DUE_WORK_RESERVE: std::time::Duration = std::time::Duration::from_secs(15);

impl Scheduler {
    /// One tick with no time limit (the dev server's loop, the tests).
    pub async fn run_once(&self) -> Result<SchedulerReport> {
        self.run_within(None).await
    }

    /// One tick in at most `budget` (the Lambda invocation's remaining time):
    /// scheduled reports stop [`DUE_WORK_RESERVE`] before it and the rest stay
    /// due for the next tick, so a slow mail provider cannot time the tick out.
    pub async fn run_within(&self, budget: Option<std::time::Duration>) -> Result<SchedulerReport> {
        let until =
            budget.map(|b| tokio::time::Instant::now() + b.saturating_sub(DUE_WORK_RESERVE));
        let now = self.clock.now();
        let mut report = SchedulerReport::default();
        let mut outbox: HashMap<Provider, Vec<SyncJob>> = HashMap::new();
        let mut page = PageRequest::first(self.settings.page_size);
        'pages: loop {
            let due = self.store.due_integrations(now, &page).await?;
            let mut items = due.items.into_iter().peekable();
            while items.peek().is_some() {
                let room = self
                    .settings
                    .max_per_run
                    .saturating_sub(report.jobs_created);
                if room == 0 {
                    report.capped = true;
                    break 'pages;
                }
                // Each claim is a read and a transaction of its own: a page's
                // claims run side by side, no more than could create a job.
                let batch: Vec<DueIntegration> = items.by_ref().take(room).collect();
                report.due_seen += batch.len();
                let mut claims = futures::stream::iter(batch)
                    .map(|d| self.claim(d, now))
                    .buffer_unordered(self.settings.claims_at_once.max(1));
                while let Some(claim) = claims.next().await {
                    match claim? {
                        Claim::Created(job) => {
                            report.jobs_created += 1;
                            outbox.entry(job.provider).or_default().push(*job);
                        }
                        Claim::Skipped => {}
                        Claim::StillActive => report.still_active += 1,
                        Claim::NotServed => report.not_served += 1,
                        Claim::AlreadyClaimed => report.already_claimed += 1,
                    }
                }
            }
            match due.next {
                Some(cursor) => page = PageRequest::after(self.settings.page_size, cursor),
                None => break,
            }
        }
        self.collect_unsent(now, &mut outbox, &mut report).await?;
        for (provider, jobs) in outbox {
            self.send(provider, &jobs, now, &mut report).await;
        }
        if let Some(work) = &self.due_work {
            // Reports never hold up the syncs: a failure is logged.
            match work.run_due(now, until).await {
                Ok(n) => report.reports_sent = n,
                Err(e) => tracing::error!(error = %e.log_chain(), "due reports failed"),
            }
        }
        tracing::info!(?report, "scheduler run finished");
        Ok(report)
    }

    /// Claims one due integration: its next sync moved and its job inserted
    /// in one store step, unless it is gone, moved, busy or unserved.
    async fn claim(&self, d: DueIntegration, now: chrono::DateTime<chrono::Utc>) -> Result<Claim> {
        let scope = WorkspaceScope::for_system(
            d.workspace.clone(),
            "due integration found by the scheduler",
        );
        let mut integration = match self.store.get_integration(&scope, d.integration).await {
            Ok(i) => i,
            Err(e) if e.is_not_found() => return Ok(Claim::Skipped),
            Err(e) => return Err(e),
        };
        if !integration.is_due(now) {
            return Ok(Claim::Skipped); // moved since the index was read
        }
        let served = self.queue.serves(QueueName::Work(integration.provider));
        let busy = served && self.has_active_job(&scope, &integration).await?;
        if !served || busy {
            // No job now; look again at the next regular time.
            integration.next_sync_at = Some(integration.following_sync(now));
            integration.updated_at = now;
            return match self.store.update_integration(&scope, &integration).await {
                Ok(_) if served => Ok(Claim::StillActive),
                Ok(_) => Ok(Claim::NotServed),
                Err(e) if e.is_conflict() => Ok(Claim::AlreadyClaimed),
                Err(e) => Err(e),
            };
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
        integration.active_job = Some(job.id);
        integration.updated_at = now;
        match self
            .store
            .create_job_with_integration(&scope, &job, &integration)
            .await
        {
            Ok(_) => Ok(Claim::Created(Box::new(job))),
            Err(e) if e.is_conflict() => Ok(Claim::AlreadyClaimed),
            Err(e) => Err(e),
        }
    }

    /// Whether the integration's job is still queued or running.
    async fn has_active_job(
        &self,
        scope: &WorkspaceScope,
        integration: &Integration,
    ) -> Result<bool> {
        let Some(id) = integration.active_job else {
            return Ok(false);
        };
        match self.store.get_job(scope, id).await {
            Ok(job) => Ok(!job.status().is_final()),
            Err(e) if e.is_not_found() => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Queued jobs whose message is not in the queue: never sent (the send
    /// failed, or its record was lost), or sent before the queue's retention
    /// began. Each is sent again, or — after `max_sends` sends, or when no
    /// worker serves its provider — ended dead with the reason. A job whose
    /// message the queue still holds only waits its turn, however long the
    /// backlog: it is left alone.
    async fn collect_unsent(
        &self,
        now: chrono::DateTime<chrono::Utc>,
        outbox: &mut HashMap<Provider, Vec<SyncJob>>,
        report: &mut SchedulerReport,
    ) -> Result<()> {
        let admin = AdminScope::for_system("scheduler resends queued jobs");
        let filter = self.settings.unsent_filter(now);
        let mut page = PageRequest::first(self.settings.page_size);
        let mut decided = 0;
        let held_since = self.queue.holds_since(now);
        loop {
            let queued = self
                .store
                .list_jobs_by_status(&admin, &filter, &page)
                .await?;
            for job in queued.items {
                if waits_in_queue(&job, held_since) {
                    report.waiting += 1;
                    continue;
                }
                decided += 1;
                self.resend_or_give_up(job, now, outbox, report).await?;
                if decided >= self.settings.max_per_run {
                    return Ok(());
                }
            }
            // Pages run newest first by last update: a job sent again moves
            // above the page just read, so the cursor never meets it twice.
            match queued.next {
                Some(cursor) => page = PageRequest::after(self.settings.page_size, cursor),
                None => return Ok(()),
            }
        }
    }

    async fn resend_or_give_up(
        &self,
        mut job: SyncJob,
        now: chrono::DateTime<chrono::Utc>,
        outbox: &mut HashMap<Provider, Vec<SyncJob>>,
        report: &mut SchedulerReport,
    ) -> Result<()> {
        let scope =
            WorkspaceScope::for_system(job.workspace.clone(), "queued job found by the scheduler");
        let served = self.queue.serves(QueueName::Work(job.provider));
        if job.sends >= self.settings.max_sends || !served {
            let why = if served {
                Error::config(format!(
                    "this sync job's message could not be sent to the {} queue ({} tries); \
                     an operator must check that the queue exists and the scheduler may send to it",
                    job.provider, job.sends
                ))
            } else {
                Error::config(format!(
                    "no worker takes {} sync jobs in this deployment; \
                     an operator must check that the {} worker is deployed",
                    job.provider, job.provider
                ))
            };
            match finish_dead(&*self.store, &*self.notifier, &scope, job, &why, now, None).await {
                Ok(_) => report.given_up += 1,
                Err(e) if e.is_conflict() => {}
                Err(e) => return Err(e),
            }
            return Ok(());
        }
        job.sends += 1;
        job.updated_at = now;
        match self.store.update_job(&scope, &job).await {
            Ok(job) => {
                report.resent += 1;
                outbox.entry(job.provider).or_default().push(job);
            }
            // A worker took it, or another run sent it: nothing to do.
            Err(e) if e.is_conflict() => {}
            Err(e) => return Err(e),
        }
        Ok(())
    }

    async fn send(
        &self,
        provider: Provider,
        jobs: &[SyncJob],
        now: chrono::DateTime<chrono::Utc>,
        report: &mut SchedulerReport,
    ) {
        for chunk in jobs.chunks(MAX_SEND_BATCH) {
            report.batch_calls += 1;
            match crate::enqueue(&*self.store, &*self.queue, chunk, None, now).await {
                Ok(_) => report.messages_sent += chunk.len(),
                // The jobs stay queued; a later run sends them again.
                Err(e) => {
                    tracing::error!(provider = %provider, error = %e.log_chain(), "sending sync messages failed")
                }
            }
        }
    }
}
