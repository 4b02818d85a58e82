//! The scheduler: fan-out per tick, jobs in flight, unsendable and waiting messages, backlogs.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::Utc;
use kpi_core::ports::clock::ManualClock;
use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::ports::{Clock, Queue, QueueName};
use kpi_core::{Integration, JobStatus, Provider};
use kpi_sync::scheduler::SchedulerSettings;
use kpi_sync::{Scheduler, SchedulerReport, Worker};

use super::{Engine, WORK};

pub async fn the_scheduler_fans_out_once_per_tick(e: &Engine) {
    let mut ids = Vec::new();
    for _ in 0..23 {
        ids.push(
            e.integration("ws-sched", chrono::Duration::hours(1))
                .await
                .id,
        );
    }
    let scheduler = e.scheduler();
    let (first, second) = if e.concurrent_transactions {
        let (a, b) = tokio::join!(scheduler.run_once(), scheduler.run_once());
        (a.unwrap(), b.unwrap())
    } else {
        (
            scheduler.run_once().await.unwrap(),
            scheduler.run_once().await.unwrap(),
        )
    };
    assert_eq!(
        first.jobs_created + second.jobs_created,
        23,
        "{first:?} {second:?}"
    );
    assert_eq!(first.messages_sent + second.messages_sent, 23);
    assert!(
        first.batch_calls + second.batch_calls <= 4,
        "batches of ten"
    );
    let third = scheduler.run_once().await.unwrap();
    assert_eq!(third.jobs_created, 0, "nothing due any more");
    let scope = Engine::scope("ws-sched");
    for id in &ids {
        let jobs = e
            .store
            .list_jobs(&scope, *id, &kpi_core::page::PageRequest::first(10))
            .await
            .unwrap();
        assert_eq!(jobs.items.len(), 1, "one job per integration and tick");
        let i = e.store.get_integration(&scope, *id).await.unwrap();
        assert!(i.next_sync_at.unwrap() > Utc::now(), "next sync moved");
    }
    let stats = e.queue.stats(WORK).await.unwrap();
    assert_eq!(stats.visible + stats.in_flight + stats.delayed, 23);
}

/// The engine's queue as a deployment may see it: serving only some
/// providers, refusing every send, or keeping messages a shorter time; and
/// counting the messages sent through it.
struct TestQueue {
    inner: Arc<dyn Queue>,
    /// `None`: every provider the inner queue serves.
    providers: Option<Vec<Provider>>,
    refuse_sends: bool,
    retention: Option<chrono::Duration>,
    sent: std::sync::atomic::AtomicUsize,
}

impl TestQueue {
    fn over(inner: Arc<dyn Queue>) -> Self {
        Self {
            inner,
            providers: None,
            refuse_sends: false,
            retention: None,
            sent: Default::default(),
        }
    }
}

#[async_trait::async_trait]
impl Queue for TestQueue {
    async fn send_batch(
        &self,
        queue: QueueName,
        messages: Vec<OutgoingMessage>,
    ) -> kpi_core::Result<()> {
        if self.refuse_sends {
            return Err(kpi_core::Error::transient("the queue refused the send"));
        }
        let n = messages.len();
        self.inner.send_batch(queue, messages).await?;
        self.sent.fetch_add(n, Ordering::SeqCst);
        Ok(())
    }
    async fn receive(
        &self,
        queue: QueueName,
        max: u32,
        wait: Duration,
    ) -> kpi_core::Result<Vec<kpi_core::ports::queue::ReceivedMessage>> {
        self.inner.receive(queue, max, wait).await
    }
    async fn delete(
        &self,
        queue: QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
    ) -> kpi_core::Result<()> {
        self.inner.delete(queue, receipt).await
    }
    async fn change_visibility(
        &self,
        queue: QueueName,
        receipt: &kpi_core::ports::queue::ReceiptHandle,
        timeout: Duration,
    ) -> kpi_core::Result<()> {
        self.inner.change_visibility(queue, receipt, timeout).await
    }
    async fn stats(
        &self,
        queue: QueueName,
    ) -> kpi_core::Result<kpi_core::ports::queue::QueueStats> {
        self.inner.stats(queue).await
    }
    fn serves(&self, queue: QueueName) -> bool {
        match &self.providers {
            Some(p) => p.contains(&queue.provider()),
            None => self.inner.serves(queue),
        }
    }
    fn holds_since(&self, now: chrono::DateTime<Utc>) -> chrono::DateTime<Utc> {
        match self.retention {
            Some(r) => now - r,
            None => self.inner.holds_since(now),
        }
    }
}

/// Not due for a month: only its queued job is the scheduler's business.
async fn not_due(e: &Engine, ws: &str, i: &Integration) {
    let scope = Engine::scope(ws);
    let mut later = e.store.get_integration(&scope, i.id).await.unwrap();
    later.next_sync_at = Some(Utc::now() + chrono::Duration::days(30));
    e.store.update_integration(&scope, &later).await.unwrap();
}

async fn make_due(e: &Engine, ws: &str, i: &Integration) {
    let scope = Engine::scope(ws);
    let mut current = e.store.get_integration(&scope, i.id).await.unwrap();
    current.next_sync_at = Some(Utc::now() - chrono::Duration::seconds(1));
    e.store.update_integration(&scope, &current).await.unwrap();
}

/// A due integration whose job is still queued gets no second job; once the
/// job has succeeded, the next scheduled sync is a full interval later.
pub async fn a_due_integration_with_a_job_in_flight_gets_no_second_one(e: &Engine) {
    let ws = "ws-inflight";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let scheduler = e.scheduler();
    assert_eq!(scheduler.run_once().await.unwrap().jobs_created, 1);
    make_due(e, ws, &i).await;
    let report = scheduler.run_once().await.unwrap();
    assert_eq!(
        (report.jobs_created, report.still_active),
        (0, 1),
        "{report:?}"
    );
    let scope = Engine::scope(ws);
    let jobs = e
        .store
        .list_jobs(&scope, i.id, &kpi_core::page::PageRequest::first(10))
        .await
        .unwrap()
        .items;
    assert_eq!(jobs.len(), 1);
    e.drain(&jobs, Duration::from_secs(20)).await;
    assert_eq!(e.status(&jobs[0]).await.status(), JobStatus::Succeeded);
    let after = e.store.get_integration(&scope, i.id).await.unwrap();
    assert_eq!(after.active_job, None);
    let interval = chrono::Duration::minutes(i64::from(after.sync_interval_minutes));
    assert!(
        after.next_sync_at.unwrap() > Utc::now() + interval - chrono::Duration::minutes(1),
        "a successful sync moves the next scheduled one"
    );
    // Due again and nothing in flight: a new job.
    make_due(e, ws, &i).await;
    assert_eq!(scheduler.run_once().await.unwrap().jobs_created, 1);
}

/// Twenty scheduler runs with a due integration of a provider that has no
/// worker in the deployment: no job, and its queue stays empty.
pub async fn nothing_piles_up_for_a_provider_without_a_worker(e: &Engine) {
    let ws = "ws-noworker";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    let scheduler = Scheduler {
        queue: Arc::new(TestQueue {
            providers: Some(vec![]),
            ..TestQueue::over(e.queue.clone())
        }),
        ..e.scheduler()
    };
    let mut not_served = 0;
    for _ in 0..20 {
        make_due(e, ws, &i).await;
        let report = scheduler.run_once().await.unwrap();
        assert_eq!(report.jobs_created, 0, "{report:?}");
        not_served += report.not_served;
    }
    assert_eq!(not_served, 20);
    let depth = e.queue.stats(WORK).await.unwrap();
    assert_eq!(
        depth.visible + depth.in_flight + depth.delayed,
        0,
        "{depth:?}"
    );
    assert_eq!(e.count_jobs(ws, JobStatus::Queued).await, 0);
}

/// A queued job whose message cannot be sent is tried a bounded number of
/// times, then ends dead with a reason an operator can act on, and a notice.
pub async fn a_job_whose_message_cannot_be_sent_ends_dead_after_a_few_tries(e: &Engine) {
    let ws = "ws-unsendable";
    let i = e.integration(ws, chrono::Duration::hours(1)).await;
    not_due(e, ws, &i).await;
    // Made, and its first send failed: never recorded as sent.
    let job = e.job(&i).await;
    let scheduler = Scheduler {
        queue: Arc::new(TestQueue {
            refuse_sends: true,
            ..TestQueue::over(e.queue.clone())
        }),
        settings: SchedulerSettings {
            unsent_after: chrono::Duration::zero(),
            max_sends: 3,
            ..SchedulerSettings::default()
        },
        ..e.scheduler()
    };
    let mut resent = 0;
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(5)).await;
        let report = scheduler.run_once().await.unwrap();
        resent += report.resent;
        if report.given_up > 0 {
            break;
        }
    }
    assert_eq!(resent, 2, "tried three times in all");
    let dead = e.status(&job).await;
    assert_eq!(dead.status(), JobStatus::Dead);
    assert!(
        dead.last_error
            .as_ref()
            .unwrap()
            .message
            .contains("could not be sent"),
        "{:?}",
        dead.last_error
    );
    assert_eq!(e.notifier.count(), 1);
}

/// A job whose message is in the queue only waits, through any number of
/// scheduler runs; one never sent is sent once; one the queue no longer
/// holds (past its retention) is sent again.
pub async fn a_waiting_job_is_sent_again_only_once_the_queue_no_longer_holds_it(e: &Engine) {
    let ws = "ws-waiting";
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let retention = chrono::Duration::days(4);
    let queue = Arc::new(TestQueue {
        retention: Some(retention),
        ..TestQueue::over(e.queue.clone())
    });
    let scheduler = Scheduler {
        queue: queue.clone(),
        clock: clock.clone(),
        ..e.scheduler()
    };
    let waiting = e.integration(ws, chrono::Duration::days(30)).await;
    not_due(e, ws, &waiting).await;
    let sent = e.job(&waiting).await;
    kpi_sync::enqueue(
        &*e.store,
        &*queue,
        std::slice::from_ref(&sent),
        None,
        clock.now(),
    )
    .await
    .unwrap();
    assert_eq!(e.status(&sent).await.sent_at, Some(clock.now()));
    let unsent_integration = e.integration(ws, chrono::Duration::days(30)).await;
    not_due(e, ws, &unsent_integration).await;
    let unsent = e.job(&unsent_integration).await;

    // Ten hours of runs every five minutes: the unsent job is sent once, the
    // other one is left to wait.
    let mut totals = SchedulerReport::default();
    for _ in 0..120 {
        clock.advance(chrono::Duration::minutes(5));
        let r = scheduler.run_once().await.unwrap();
        totals.resent += r.resent;
        totals.given_up += r.given_up;
    }
    assert_eq!((totals.resent, totals.given_up), (1, 0), "{totals:?}");
    assert_eq!(queue.sent.load(Ordering::SeqCst), 2, "one message each");
    for job in [&sent, &unsent] {
        let now = e.status(job).await;
        assert_eq!(now.status(), JobStatus::Queued);
        assert!(now.sent_at.is_some(), "{now:?}");
    }

    // Past the queue's retention the waiting message is gone: sent again.
    clock.advance(retention);
    let r = scheduler.run_once().await.unwrap();
    assert_eq!((r.resent, r.given_up), (2, 0), "{r:?}");
    let again = e.status(&sent).await;
    assert_eq!((again.sends, again.sent_at), (2, Some(clock.now())));
    e.drain(&[sent, unsent], Duration::from_secs(20)).await;
}

/// A backlog hours deep by the clock: every due integration gets one job at
/// the first tick, two workers take one message at a time while the
/// scheduler keeps ticking, and every job ends succeeded, none dead, none
/// run twice, with no message sent twice.
pub async fn a_backlog_hours_deep_drains_with_every_job_run_once(e: &Engine) {
    let ws = "ws-backlog";
    let n = e.backlog;
    let clock = Arc::new(ManualClock::new(Utc::now()));
    let queue = Arc::new(TestQueue::over(e.queue.clone()));
    let scheduler = Scheduler {
        queue: queue.clone(),
        clock: clock.clone(),
        ..e.scheduler()
    };
    for _ in 0..n {
        e.integration_with(ws, chrono::Duration::days(30), |i| {
            i.sync_interval_minutes = 24 * 60;
            i.next_sync_at = Some(clock.now());
        })
        .await;
    }
    let workers: Vec<Worker> = (0..2)
        .map(|k| Worker {
            clock: clock.clone(),
            ..e.worker(&format!("backlog-{k}"))
        })
        .collect();
    // Per five-minute tick the two workers run this many jobs: the queue
    // stays hours deep for most of the run.
    let per_tick = (n / 100).max(2);
    let mut totals = SchedulerReport::default();
    // Messages whose job ended. A message can come again after its
    // visibility timeout (a slow worker, as SQS allows); its job counts once.
    let mut ended: std::collections::HashSet<String> = std::collections::HashSet::new();
    let (mut retries, mut ticks) = (0, 0);
    while ended.len() < n && ticks < 1_000 {
        ticks += 1;
        clock.advance(chrono::Duration::minutes(5));
        let r = scheduler.run_once().await.unwrap();
        totals.jobs_created += r.jobs_created;
        totals.resent += r.resent;
        totals.given_up += r.given_up;
        for _ in 0..per_tick / 2 {
            let taken = futures::future::join_all(workers.iter().map(|w| async {
                let Some(m) = queue
                    .receive(WORK, 1, Duration::from_millis(50))
                    .await
                    .unwrap()
                    .pop()
                else {
                    return (None, 0);
                };
                match w.handle(&m).await {
                    kpi_sync::Disposition::Done => {
                        queue.delete(WORK, &m.receipt).await.unwrap();
                        (Some(m.message_id.clone()), 0)
                    }
                    other => {
                        // A retry comes back after its delay, as from SQS.
                        // A receipt that outlived its visibility timeout (the
                        // message came again meanwhile) can no longer move
                        // it: the queue's own timeout applies, as in the
                        // functions (`kpi_lambda::delay_message`).
                        if let kpi_sync::Disposition::RetryAfter(d) = other {
                            let _ = queue.change_visibility(WORK, &m.receipt, d).await;
                        }
                        (None, 1)
                    }
                }
            }))
            .await;
            for (done, retried) in taken {
                ended.extend(done);
                retries += retried;
            }
        }
    }
    let hours = ticks as f64 * 5.0 / 60.0;
    assert!(hours >= 3.0, "the backlog lasted {hours:.1} h by the clock");
    assert_eq!(totals.jobs_created, n, "{totals:?}");
    assert_eq!((totals.resent, totals.given_up), (0, 0), "{totals:?}");
    assert_eq!(e.count_jobs(ws, JobStatus::Succeeded).await, n);
    for status in [JobStatus::Dead, JobStatus::Queued, JobStatus::Running] {
        assert_eq!(e.count_jobs(ws, status).await, 0, "{status}");
    }
    // Each job ran once, and again at most once per retry: a message that
    // came back while its job was still running elsewhere is told to wait
    // (a retry without a provider call).
    let calls = e.adapter.sync_calls.load(Ordering::SeqCst) as usize;
    assert!(
        (n..=n + retries).contains(&calls),
        "{calls} provider calls for {n} jobs and {retries} retries"
    );
    let messages = queue.sent.load(Ordering::SeqCst);
    assert!(
        messages <= n + retries,
        "{messages} messages for {n} jobs and {retries} retries"
    );
}
