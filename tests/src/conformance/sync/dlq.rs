//! Dead letters: retries run out, the dead-letter handler, redrives, operator retries, fault runs.

use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kpi_core::job::SyncMessage;
use kpi_core::ports::store::KpiQuery;
use kpi_core::{Integration, IntegrationStatus, JobStatus, SyncJob};
use kpi_sync::mock::Outcome;

use crate::GA4_SESSIONS;

use super::{ENGINE_MAX_RECEIVES, Engine};

pub async fn retries_run_out_into_the_dead_letter_queue(e: &Engine) {
    let i = e.integration("ws-dlq", chrono::Duration::hours(1)).await;
    // Failing for exactly as long as the queue delivers the job.
    e.adapter.script(
        i.id,
        std::iter::repeat_n(Outcome::Transient, ENGINE_MAX_RECEIVES as usize),
    );
    // Its regular schedule: six hours on.
    let scope = Engine::scope("ws-dlq");
    let mut scheduled = e.store.get_integration(&scope, i.id).await.unwrap();
    scheduled.next_sync_at = Some(Utc::now() + chrono::Duration::hours(6));
    e.store
        .update_integration(&scope, &scheduled)
        .await
        .unwrap();
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(60))
        .await;
    let dead = e.status(&job).await;
    assert_eq!(dead.status(), JobStatus::Dead, "{:?}", dead.last_error);
    assert_eq!(dead.attempts, ENGINE_MAX_RECEIVES);
    assert!(dead.last_error.as_ref().unwrap().message.contains("500"));
    let current = e
        .store
        .get_integration(&Engine::scope("ws-dlq"), i.id)
        .await
        .unwrap();
    // A provider outage longer than every retry: the integration stays
    // connected and scheduled, with the failure on show, and one notice.
    assert_eq!(current.status(), IntegrationStatus::Connected);
    assert!(current.failing_since.is_some());
    assert!(current.last_error.is_some());
    // Tried again soon, not a whole interval later.
    let soon = Utc::now() + kpi_sync::dlq::RESYNC_AFTER_OUTAGE;
    assert!(
        current.next_sync_at.is_some_and(|t| t <= soon),
        "next sync {:?}, after an outage no later than {soon}",
        current.next_sync_at
    );
    assert_eq!(current.active_job, None);
    assert_eq!(e.notifier.count(), 1);
    // The provider is back. Its next regular time comes (the clock moved on):
    // the scheduler makes the job, nobody acting, and it succeeds.
    let mut due = current.clone();
    due.next_sync_at = Some(Utc::now() - chrono::Duration::seconds(1));
    e.store
        .update_integration(&Engine::scope("ws-dlq"), &due)
        .await
        .unwrap();
    let report = e.scheduler().run_once().await.unwrap();
    assert_eq!(report.jobs_created, 1, "{report:?}");
    let jobs = e
        .store
        .list_jobs(
            &Engine::scope("ws-dlq"),
            i.id,
            &kpi_core::page::PageRequest::first(10),
        )
        .await
        .unwrap();
    let next = jobs
        .items
        .into_iter()
        .find(|j| j.status() == JobStatus::Queued)
        .expect("the scheduled job");
    e.drain(std::slice::from_ref(&next), Duration::from_secs(30))
        .await;
    assert_eq!(e.status(&next).await.status(), JobStatus::Succeeded);
    let healed = e
        .store
        .get_integration(&Engine::scope("ws-dlq"), i.id)
        .await
        .unwrap();
    assert_eq!(healed.status(), IntegrationStatus::Connected);
    assert_eq!(healed.failing_since, None);
    assert_eq!(e.notifier.recovered.lock().unwrap().len(), 1);
}

pub async fn a_sync_brings_an_integration_back_from_error_and_a_dead_letter_never_undoes_a_reconnect(
    e: &Engine,
) {
    let scope = Engine::scope("ws-heal");
    let i = e.integration("ws-heal", chrono::Duration::hours(1)).await;
    // A failure retrying cannot fix (the property was deleted): `error`.
    e.adapter.script(i.id, [Outcome::Permanent]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(30))
        .await;
    let failed = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(failed.status(), IntegrationStatus::Error);
    // The user fixes it and asks for a sync: it runs, and brings it back.
    let job = e.job(&failed).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(30))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let back = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(back.status(), IntegrationStatus::Connected);
    assert_eq!(back.failing_since, None);

    // A job of the old grant reaches the dead-letter handler after the user
    // reconnected: the reconnect stands.
    let old = e.job(&back).await;
    let dead_letter = kpi_core::ports::queue::ReceivedMessage {
        message_id: "dead-1".into(),
        body: serde_json::to_string(&SyncMessage::for_job(&old)).unwrap(),
        receipt: kpi_core::ports::queue::ReceiptHandle("r-1".into()),
        receive_count: ENGINE_MAX_RECEIVES + 1,
    };
    assert_eq!(
        e.dlq().handle(&dead_letter).await,
        kpi_sync::Disposition::Done
    );
    assert_eq!(e.status(&old).await.status(), JobStatus::Dead);
    let after = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(after.status(), IntegrationStatus::Connected);
    assert!(after.next_sync_at.is_some(), "still scheduled");
}

/// A job recorded dead (as the dead-letter handler leaves it).
async fn dead_job(e: &Engine, i: &Integration) -> SyncJob {
    let made = e.job(i).await;
    let mut job = e.status(&made).await;
    let now = Utc::now();
    job.transition(JobStatus::Running, now).unwrap();
    job.transition(JobStatus::Dead, now).unwrap();
    e.store
        .update_job(&Engine::scope(i.workspace.as_str()), &job)
        .await
        .unwrap()
}

pub async fn redrive_runs_one_job_per_integration_and_none_beside_one_in_flight(e: &Engine) {
    let admin = kpi_core::AdminScope::for_system("redrive test");
    let scope = Engine::scope("ws-redrive");
    // Three dead jobs of one integration: one run brings it up to date.
    let i = e
        .integration("ws-redrive", chrono::Duration::hours(1))
        .await;
    let mut dead = Vec::new();
    for _ in 0..3 {
        dead.push(dead_job(e, &i).await);
    }
    let calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        100,
    )
    .await
    .unwrap();
    assert_eq!(
        (report.jobs_requeued, report.jobs_left),
        (1, 2),
        "{report:?}"
    );
    let newest = dead.iter().map(|j| j.id).max().unwrap();
    let mut queued = Vec::new();
    for job in &dead {
        let now = e.status(job).await;
        match now.status() {
            JobStatus::Queued => queued.push(now),
            other => assert_eq!(other, JobStatus::Dead, "the others are left as recorded"),
        }
    }
    assert_eq!(queued.len(), 1);
    assert_eq!(queued[0].id, newest, "the newest one");
    e.drain(&queued, Duration::from_secs(30)).await;
    assert_eq!(e.status(&queued[0]).await.status(), JobStatus::Succeeded);
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst) - calls,
        1,
        "one run"
    );
    let current = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(current.active_job, None);

    // An integration with a job queued: its dead job waits, and the queued
    // one stays its only job in flight.
    let busy = e
        .integration("ws-redrive", chrono::Duration::hours(1))
        .await;
    let stale = dead_job(e, &busy).await;
    let mut in_flight = e.job(&busy).await;
    let mut marked = e.store.get_integration(&scope, busy.id).await.unwrap();
    marked.active_job = Some(in_flight.id);
    e.store.update_integration(&scope, &marked).await.unwrap();
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        100,
    )
    .await
    .unwrap();
    assert_eq!(report.jobs_requeued, 0, "{report:?}");
    assert_eq!(e.status(&stale).await.status(), JobStatus::Dead);
    assert_eq!(
        e.store
            .get_integration(&scope, busy.id)
            .await
            .unwrap()
            .active_job,
        Some(in_flight.id)
    );
    // Retrying it by hand is refused the same way.
    let err = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, stale.id)
        .await
        .unwrap_err();
    assert!(err.is_conflict(), "{}", err.log_chain());
    in_flight = e.status(&in_flight).await;
    assert_eq!(in_flight.status(), JobStatus::Queued);
}

/// `n` jobs with 30% injected faults of mixed kinds: every job ends succeeded or
/// dead with a record, nothing is lost or duplicated; once the faults stop, a
/// redrive brings the dead ones to succeeded.
pub async fn fault_run(e: &Engine, n: usize) {
    let started = std::time::Instant::now();
    let scope = Engine::scope("ws-faults");
    let mut jobs = Vec::with_capacity(n);
    for _ in 0..n {
        let i = e.integration("ws-faults", chrono::Duration::hours(1)).await;
        jobs.push(e.job(&i).await);
    }
    e.adapter.set_random_faults(300, 20261125);
    e.send(&jobs).await;
    e.drain_all(Duration::from_secs(900)).await;
    let succeeded = e.count_jobs("ws-faults", JobStatus::Succeeded).await;
    let dead_jobs = e.jobs_in("ws-faults", JobStatus::Dead).await;
    let dead = dead_jobs.len();
    assert!(
        dead_jobs.iter().all(|j| j.last_error.is_some()),
        "a dead job records why"
    );
    assert_eq!(succeeded + dead, n, "every job ended succeeded or dead");
    assert!(dead > 0, "some faults were permanent");
    let calls_during_faults = e.adapter.sync_calls.load(Ordering::SeqCst);

    // The faults stop; an operator redrives the provider.
    e.adapter.stop_faults();
    let admin = kpi_core::AdminScope::for_system("fault run");
    let report = kpi_sync::admin::redrive(
        &*e.store,
        &*e.queue,
        &*e.clock,
        &admin,
        kpi_providers::ga4::ID,
        n,
    )
    .await
    .unwrap();
    assert_eq!(report.jobs_requeued, dead);
    e.drain_all(Duration::from_secs(900)).await;
    assert_eq!(
        e.count_jobs("ws-faults", JobStatus::Succeeded).await,
        n,
        "all succeeded after the redrive"
    );
    // One set of KPI rows per integration: three days each, nothing doubled.
    let today = Utc::now().date_naive();
    let points = e
        .store
        .query_kpis(
            &scope,
            &KpiQuery {
                metric: GA4_SESSIONS.metric,
                from: today - chrono::Duration::days(2),
                to: today,
                integration: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(points.len(), 3 * n, "no duplicate and no missing KPI row");
    let mut listed = 0;
    let mut page = kpi_core::page::PageRequest::first(100);
    loop {
        let p = e.store.list_integrations(&scope, &page).await.unwrap();
        for i in &p.items {
            assert_eq!(i.status(), IntegrationStatus::Connected);
            listed += 1;
        }
        match p.next {
            Some(c) => page = kpi_core::page::PageRequest::after(100, c),
            None => break,
        }
    }
    assert_eq!(listed, n);
    let total_calls = e.adapter.sync_calls.load(Ordering::SeqCst);
    println!(
        "fault run: {n} jobs, {succeeded} succeeded and {dead} dead under faults, \
         {calls_during_faults} provider calls then {total_calls} in all, {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

pub async fn fault_run_of_1000_jobs(e: &Engine) {
    fault_run(e, 1000).await;
}

pub async fn an_operator_retries_a_dead_job(e: &Engine) {
    let i = e.integration("ws-admin", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::Permanent]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Dead);
    let admin = kpi_core::AdminScope::for_system("test");
    let requeued = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, job.id)
        .await
        .unwrap();
    assert_eq!(requeued.status(), JobStatus::Queued);
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
    let err = kpi_sync::admin::retry_job(&*e.store, &*e.queue, &*e.clock, &admin, job.id)
        .await
        .unwrap_err();
    assert_eq!(err.code(), "conflict", "a succeeded job is not retried");
}
