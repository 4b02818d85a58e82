//! A worker on a message: duplicates, retries, failures and notices, crashes, panics, deadlines.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kpi_core::job::SyncMessage;
use kpi_core::kpi::DateRange;
use kpi_core::{Integration, IntegrationStatus, JobStatus, WorkspaceScope};
use kpi_sync::mock::Outcome;
use kpi_sync::runner::poll_once;

use super::{Engine, WORK};

pub async fn a_message_delivered_twice_runs_once(e: &Engine) {
    let i = e.integration("ws-dup", chrono::Duration::hours(1)).await;
    let job = e.job(&i).await;
    e.send(&[job.clone(), job.clone()]).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    // Let the duplicate arrive too.
    for _ in 0..3 {
        e.drain(std::slice::from_ref(&job), Duration::from_millis(300))
            .await;
    }
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.attempts, 1);
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        1,
        "the job ran once"
    );
    assert_eq!(e.kpi_rows(&i).await, 3, "one set of KPI rows");
    assert_eq!(done.rows_written, 3);
}

/// The enqueuer notes a job as sent just after sending its message, so a
/// worker that receives the message at once may read the job before the note
/// lands. Its claim must not lose to that note (it would wait a whole retry
/// delay), yet must still lose to another worker's claim.
pub async fn a_job_noted_as_sent_after_the_workers_read_is_claimed_at_once(e: &Engine) {
    let i = e.integration("ws-sent", chrono::Duration::hours(1)).await;
    let job = e.job(&i).await;
    let read = e.status(&job).await;
    kpi_sync::enqueue(
        &*e.store,
        &*e.queue,
        std::slice::from_ref(&job),
        None,
        Utc::now(),
    )
    .await
    .unwrap();
    let noted = e.status(&job).await;
    assert!(noted.sent_at.is_some() && noted.version > read.version);

    let scope = Engine::scope("ws-sent");
    let claimed = kpi_sync::worker::claim(&*e.store, &scope, &read, Utc::now())
        .await
        .unwrap()
        .expect("the note that the message was sent does not win over the claim");
    assert_eq!(claimed.status(), JobStatus::Running);
    assert_eq!(claimed.attempts, 1);
    assert!(claimed.sent_at.is_some(), "the note is kept");

    let second = kpi_sync::worker::claim(&*e.store, &scope, &read, Utc::now())
        .await
        .unwrap();
    assert!(second.is_none(), "another worker's claim wins");
    assert_eq!(e.status(&job).await.attempts, 1);
}

pub async fn rate_limits_errors_and_timeouts_are_retried_with_growing_delays(e: &Engine) {
    let i = e.integration("ws-retry", chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [
            Outcome::Transient,
            Outcome::Timeout,
            Outcome::RateLimited(Duration::from_millis(1500)),
        ],
    );
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    let retries = e
        .drain(std::slice::from_ref(&job), Duration::from_secs(60))
        .await;
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded, "{:?}", done.last_error);
    assert_eq!(done.attempts, 4);
    assert_eq!(retries.len(), 3, "{retries:?}");
    // Ceilings double (200 ms, 400 ms, …); the provider's 1.5 s wait is a floor.
    let policy = Engine::settings().retry;
    for (k, d) in retries.iter().enumerate() {
        assert!(
            *d <= policy
                .ceiling(k as u32 + 1)
                .max(Duration::from_millis(1500)),
            "{retries:?}"
        );
    }
    assert!(
        retries[2] >= Duration::from_millis(1500),
        "the provider's wait was honoured"
    );
    assert!(done.last_error.is_none());
}

pub async fn a_permanent_error_kills_the_job_and_notifies_once_a_day(e: &Engine) {
    let i = e.integration("ws-perm", chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [Outcome::Permanent, Outcome::Permanent, Outcome::Permanent],
    );
    let jobs = vec![e.job(&i).await, e.job(&i).await, e.job(&i).await];
    for job in &jobs {
        // One after the other, as three scheduled runs would.
        e.send(std::slice::from_ref(job)).await;
        e.drain(std::slice::from_ref(job), Duration::from_secs(20))
            .await;
        // The integration is in error now; a later run would not be scheduled,
        // but a manual retry might be: put it back to connected to let it run.
        let scope = Engine::scope("ws-perm");
        let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
        assert_eq!(current.status(), IntegrationStatus::Error);
        current
            .transition(IntegrationStatus::Connected, Utc::now())
            .unwrap();
        e.store.update_integration(&scope, &current).await.unwrap();
    }
    for job in &jobs {
        let done = e.status(job).await;
        assert_eq!(done.status(), JobStatus::Dead);
        assert_eq!(done.last_error.as_ref().unwrap().code, "configuration");
    }
    assert_eq!(e.notifier.count(), 1, "one notice per integration per day");
    assert_eq!(
        e.adapter.sync_calls.load(Ordering::SeqCst),
        3,
        "no retries of a permanent error"
    );
}

/// A run of failures sends one failure notice; the first success after it
/// sends one recovery notice and ends the run; later successes send nothing.
pub async fn a_run_of_failures_ends_with_one_recovery_notice(e: &Engine) {
    let ws = "ws-recover";
    let scope = Engine::scope(ws);
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    e.adapter.script(
        i.id,
        [
            Outcome::Permanent,
            Outcome::Permanent,
            Outcome::Success,
            Outcome::Success,
        ],
    );
    let recovered = || {
        e.notifier
            .recovered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    };
    let mut failing_since = None;
    for round in 0..4 {
        let job = e.job(&i).await;
        e.send(std::slice::from_ref(&job)).await;
        e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
            .await;
        let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
        if round < 2 {
            assert_eq!(current.status(), IntegrationStatus::Error);
            let since = current.failing_since.expect("a run of failures");
            assert_eq!(*failing_since.get_or_insert(since), since, "one run");
            // The user fixes it.
            current
                .transition(IntegrationStatus::Connected, Utc::now())
                .unwrap();
            e.store.update_integration(&scope, &current).await.unwrap();
        } else {
            assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
            assert_eq!(current.failing_since, None);
        }
    }
    let sent = e
        .notifier
        .sent
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    assert_eq!(sent.len(), 1, "one failure notice for the run");
    assert_eq!(sent[0].display_name, "GA4");
    let back = recovered();
    assert_eq!(back.len(), 1, "one recovery notice: {back:?}");
    assert_eq!(back[0].integration, i.id);
    assert_eq!(Some(back[0].failing_since), failing_since);
}

pub async fn an_auth_failure_needs_reauth(e: &Engine) {
    let i = e.integration("ws-auth", chrono::Duration::hours(1)).await;
    e.adapter.script(i.id, [Outcome::Auth]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    assert_eq!(e.status(&job).await.status(), JobStatus::Dead);
    let current = e
        .store
        .get_integration(&Engine::scope("ws-auth"), i.id)
        .await
        .unwrap();
    assert_eq!(current.status(), IntegrationStatus::NeedsReauth);
}

/// An observer (alert rules) that never finishes: a send that hangs.
struct Hangs;

#[async_trait::async_trait]
impl kpi_sync::SyncObserver for Hangs {
    async fn synced(&self, _: &WorkspaceScope, _: &Integration, _: DateRange) {
        std::future::pending::<()>().await
    }
}

pub async fn the_work_after_a_sync_stays_within_the_invocation(e: &Engine) {
    let i = e.integration("ws-after", chrono::Duration::hours(1)).await;
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    let mut worker = e.worker("after");
    worker.observer = Some(Arc::new(Hangs));
    let mut got = Vec::new();
    for _ in 0..20 {
        got = e
            .queue
            .receive(WORK, 1, Duration::from_millis(500))
            .await
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    let message = got.pop().expect("the job's message");
    // An invocation with a second of work left after the record reserve: the
    // sync is recorded and the batch answered although the alert rules hang.
    let budget = kpi_sync::worker::RECORD_RESERVE + Duration::from_secs(1);
    let answered = tokio::time::timeout(
        budget + Duration::from_secs(30),
        worker.handle_within(&message, Some(budget)),
    )
    .await
    .expect("the worker answers within its invocation");
    assert_eq!(answered, kpi_sync::Disposition::Done);
    assert_eq!(e.status(&job).await.status(), JobStatus::Succeeded);
}

pub async fn a_worker_stopped_mid_job_is_replaced_after_the_visibility_timeout(e: &Engine) {
    let i = e.integration("ws-crash", chrono::Duration::hours(1)).await;
    e.adapter
        .script(i.id, [Outcome::Slow(Duration::from_millis(600))]);
    let job = e.job(&i).await;
    e.send(std::slice::from_ref(&job)).await;
    // The first worker receives the message and is killed mid-job (its future
    // dropped): it neither deletes the message nor changes its visibility.
    let worker = e.worker("doomed");
    let mut got = Vec::new();
    for _ in 0..20 {
        got = e
            .queue
            .receive(WORK, 1, Duration::from_millis(500))
            .await
            .unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(got.len(), 1);
    // Stopped once it is inside the provider call (however long the store's
    // calls took to get there), so the job is surely running.
    let calls = e
        .adapter
        .sync_calls
        .load(std::sync::atomic::Ordering::SeqCst);
    let in_provider_call = async {
        while e
            .adapter
            .sync_calls
            .load(std::sync::atomic::Ordering::SeqCst)
            == calls
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    tokio::select! {
        _ = worker.handle(&got[0]) => panic!("the job ended before its worker could be stopped"),
        _ = in_provider_call => {}
    }
    assert_eq!(
        e.status(&job).await.status(),
        JobStatus::Running,
        "stopped mid-job"
    );
    // After the visibility timeout another worker gets the message and finishes.
    e.drain(std::slice::from_ref(&job), Duration::from_secs(20))
        .await;
    let done = e.status(&job).await;
    assert_eq!(done.status(), JobStatus::Succeeded);
    assert_eq!(done.attempts, 2);
}

pub async fn a_panicking_adapter_fails_only_its_message(e: &Engine) {
    let a = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    let b = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    let c = e.integration("ws-panic", chrono::Duration::hours(1)).await;
    e.adapter.script(b.id, [Outcome::Panic]);
    let jobs = vec![e.job(&a).await, e.job(&b).await, e.job(&c).await];
    e.send(&jobs).await;
    let worker = e.worker("w");
    let mut handled = 0;
    let mut retried = 0;
    for _ in 0..20 {
        let report = poll_once(&*e.queue, WORK, Duration::from_millis(500), |m| {
            let worker = &worker;
            async move { worker.handle(&m).await }
        })
        .await
        .unwrap();
        handled += report.done;
        retried += report.retries.len();
        if handled + retried >= 3 {
            break;
        }
    }
    assert_eq!(
        (handled, retried),
        (2, 1),
        "the panicking message alone is retried"
    );
    assert_eq!(e.status(&jobs[0]).await.status(), JobStatus::Succeeded);
    assert_eq!(e.status(&jobs[2]).await.status(), JobStatus::Succeeded);
    // Its retry then succeeds.
    e.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(e.status(&jobs[1]).await.status(), JobStatus::Succeeded);
}

/// A sync that would outlive its Lambda invocation stops in time to record
/// its outcome: the job waits for its retry instead of staying `running`.
pub async fn a_sync_that_would_outlive_its_invocation_is_recorded_and_retried(e: &Engine) {
    let i = e
        .integration("ws-deadline", chrono::Duration::hours(1))
        .await;
    e.adapter
        .script(i.id, [Outcome::Slow(Duration::from_secs(5))]);
    let job = e.job(&i).await;
    let message = kpi_core::ports::queue::ReceivedMessage {
        message_id: job.id.to_string(),
        body: serde_json::to_string(&SyncMessage::for_job(&job)).unwrap(),
        receipt: kpi_core::ports::queue::ReceiptHandle(job.id.to_string()),
        receive_count: 1,
    };
    let budget = kpi_sync::worker::RECORD_RESERVE + Duration::from_millis(300);
    let disposition = e
        .worker("deadline-worker")
        .handle_within(&message, Some(budget))
        .await;
    assert!(
        matches!(disposition, kpi_sync::Disposition::RetryAfter(_)),
        "{disposition:?}"
    );
    let after = e.status(&job).await;
    assert_eq!(after.status(), JobStatus::Retrying);
    assert_eq!(after.last_error.as_ref().unwrap().code, "transient");
}
