//! How long after a provider outage ends each integration it hit has synced
//! again, with every default setting: a scheduler tick every 5 minutes, the
//! 6-hour sync interval, the worker's retry policy, 5 receives before the
//! dead-letter queue (`MaxReceives`), and the next sync at most 30 minutes
//! after a job the outage outlasted.
//!
//! The clock is simulated in steps of 10 seconds, so hours of outage take
//! seconds. The scheduler, the workers and the dead-letter handler are the real
//! ones, on SQLite; the provider is the engine's mock, failing with 5xx while
//! the outage lasts. What SQS does in time is done by the loop: a message a
//! worker gives back becomes visible after the delay it asked for, and after
//! its fifth receive the next one moves it to the dead-letter handler.
//!
//! `outage [integrations]` writes `outage.json`.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kpi_core::job::SyncMessage;
use kpi_core::ports::Clock;
use kpi_core::ports::clock::ManualClock;
use kpi_core::ports::queue::{ReceiptHandle, ReceivedMessage};
use kpi_core::{Integration, JobStatus};
use kpi_sync::dlq::DlqHandler;
use kpi_sync::scheduler::SchedulerSettings;
use kpi_sync::{Disposition, Scheduler, Worker, WorkerSettings};
use kpi_tests::conformance::sync::{Engine, WORK};
use serde_json::json;

const STEP: chrono::Duration = chrono::Duration::seconds(10);
const TICK: chrono::Duration = chrono::Duration::minutes(5);
/// The template's `MaxReceives` default.
const MAX_RECEIVES: u32 = 5;
const WS: &str = "ws-outage";

/// A message as SQS holds it: when it is visible next, and its receives.
struct Held {
    body: String,
    visible_at: DateTime<Utc>,
    receives: u32,
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let mut runs = Vec::new();
    for minutes in [15, 60, 240, 720] {
        let run = simulate(n, chrono::Duration::minutes(minutes)).await;
        println!("{run}");
        runs.push(run);
    }
    let out = kpi_bench::results_dir().join("outage.json");
    std::fs::write(
        &out,
        serde_json::to_string_pretty(&json!({"integrations": n, "runs": runs})).unwrap(),
    )
    .unwrap();
    println!("written: {}", out.display());
}

/// One outage of `length`, an hour after the start, over `n` integrations
/// whose regular syncs are spread evenly over their interval.
async fn simulate(n: usize, length: chrono::Duration) -> serde_json::Value {
    let e = kpi_tests::fixtures::local_engine().await;
    let start = Utc::now();
    let clock = Arc::new(ManualClock::new(start));
    let interval = chrono::Duration::minutes(i64::from(Integration::DEFAULT_SYNC_INTERVAL_MINUTES));
    for k in 0..n {
        let offset = interval * k as i32 / n as i32;
        e.integration_with(WS, chrono::Duration::days(60), |i| {
            i.next_sync_at = Some(start + offset);
        })
        .await;
    }
    let scheduler = Scheduler {
        clock: clock.clone(),
        settings: SchedulerSettings {
            claims_at_once: kpi_sync::scheduler::EMBEDDED_CLAIMS_AT_ONCE,
            ..SchedulerSettings::default()
        },
        ..e.scheduler()
    };
    let worker = Worker {
        clock: clock.clone(),
        settings: WorkerSettings::default(),
        ..e.worker("outage")
    };
    let dlq = DlqHandler {
        clock: clock.clone(),
        ..e.dlq()
    };
    let outage_from = start + chrono::Duration::hours(1);
    let outage_to = outage_from + length;
    let end = outage_to + interval + chrono::Duration::hours(1);
    let mut held: Vec<Held> = Vec::new();
    let mut hit = std::collections::HashSet::new();
    let mut recovered: std::collections::HashMap<_, chrono::Duration> = Default::default();
    let (mut dead, mut attempts_in_outage) = (0, 0);
    let mut next_tick = start;
    while clock.now() < end {
        let now = clock.now();
        e.adapter
            .outage
            .store(now >= outage_from && now < outage_to, Ordering::SeqCst);
        if now >= next_tick {
            scheduler.run_once().await.unwrap();
            next_tick = now + TICK;
        }
        // What the scheduler sent: now held by "SQS".
        loop {
            let got = e.queue.receive(WORK, 10, Duration::ZERO).await.unwrap();
            if got.is_empty() {
                break;
            }
            for m in got {
                e.queue.delete(WORK, &m.receipt).await.unwrap();
                held.push(Held {
                    body: m.body,
                    visible_at: now,
                    receives: 0,
                });
            }
        }
        let (due, waiting): (Vec<Held>, Vec<Held>) =
            held.into_iter().partition(|h| h.visible_at <= now);
        held = waiting;
        for mut h in due {
            let message: SyncMessage = serde_json::from_str(&h.body).unwrap();
            let received = ReceivedMessage {
                message_id: message.job.to_string(),
                body: h.body.clone(),
                receipt: ReceiptHandle(message.job.to_string()),
                receive_count: h.receives + 1,
            };
            if h.receives == MAX_RECEIVES {
                // Past maxReceiveCount: SQS moves it to the dead-letter queue.
                assert!(matches!(dlq.handle(&received).await, Disposition::Done));
                dead += 1;
                continue;
            }
            h.receives += 1;
            match worker.handle_within(&received, None).await {
                Disposition::Done => {
                    let scope = Engine::scope(WS);
                    let job = e.store.get_job(&scope, message.job).await.unwrap();
                    if job.status() == JobStatus::Succeeded {
                        if now >= outage_to && hit.contains(&message.integration) {
                            recovered
                                .entry(message.integration)
                                .or_insert(now - outage_to);
                        }
                    } else if now < outage_to {
                        hit.insert(message.integration);
                    }
                }
                Disposition::RetryAfter(delay) => {
                    if now < outage_to {
                        hit.insert(message.integration);
                        attempts_in_outage += 1;
                    }
                    h.visible_at = now + chrono::Duration::from_std(delay).unwrap();
                    held.push(h);
                }
            }
        }
        clock.advance(STEP);
    }
    let mut minutes: Vec<f64> = recovered
        .values()
        .map(|d| d.num_seconds() as f64 / 60.0)
        .collect();
    minutes.sort_by(f64::total_cmp);
    json!({
        "outage_minutes": length.num_minutes(),
        "integrations_hit": hit.len(),
        "recovered": recovered.len(),
        "jobs_dead": dead,
        "failed_attempts": attempts_in_outage,
        "provider_calls": e.adapter.sync_calls.load(Ordering::SeqCst),
        "minutes_to_first_success": {
            "min": kpi_bench::quantile(&minutes, 0.0),
            "median": kpi_bench::quantile(&minutes, 0.5),
            "p95": kpi_bench::quantile(&minutes, 0.95),
            "max": kpi_bench::quantile(&minutes, 1.0),
        },
    })
}
