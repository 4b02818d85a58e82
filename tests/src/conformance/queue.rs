//! The queue contract (SQS semantics), case by case. Backends are built with a
//! visibility timeout of [`VISIBILITY`] and a DLQ after [`MAX_RECEIVES`] receives.

use std::collections::BTreeSet;
use std::time::Duration;

use kpi_core::ports::queue::OutgoingMessage;
use kpi_core::ports::{Queue, QueueName};

use crate::fixtures::{MAX_RECEIVES, VISIBILITY};

const WORK: QueueName = QueueName::Work(kpi_providers::ga4::ID);
const DLQ: QueueName = QueueName::DeadLetter(kpi_providers::ga4::ID);
const WAIT: Duration = Duration::from_secs(1);

fn batch(prefix: &str, n: usize) -> Vec<OutgoingMessage> {
    (0..n)
        .map(|k| OutgoingMessage::new(format!("{prefix}-{k}")))
        .collect()
}

/// Receives until `n` messages arrived or `patience` ran out.
async fn receive_n<Q: Queue>(
    q: &Q,
    queue: QueueName,
    n: usize,
    patience: Duration,
) -> Vec<kpi_core::ports::queue::ReceivedMessage> {
    let deadline = tokio::time::Instant::now() + patience;
    let mut got = Vec::new();
    while got.len() < n && tokio::time::Instant::now() < deadline {
        got.extend(q.receive(queue, 10, WAIT).await.unwrap());
    }
    got
}

pub async fn send_receive_delete<Q: Queue>(q: &Q) {
    q.send_batch(WORK, batch("m", 10)).await.unwrap();
    let got = receive_n(q, WORK, 10, Duration::from_secs(10)).await;
    let bodies: BTreeSet<_> = got.iter().map(|m| m.body.clone()).collect();
    assert_eq!(bodies.len(), 10, "each message once");
    assert!(got.iter().all(|m| m.receive_count == 1));
    for m in &got {
        q.delete(WORK, &m.receipt).await.unwrap();
    }
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        q.receive(WORK, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "deleted for good"
    );
    let stats = q.stats(WORK).await.unwrap();
    assert_eq!((stats.visible, stats.in_flight), (0, 0));
    // Queues are per provider.
    assert!(
        q.receive(
            QueueName::Work(kpi_providers::resend::ID),
            10,
            Duration::ZERO
        )
        .await
        .unwrap()
        .is_empty()
    );
}

pub async fn batches_hold_at_most_ten<Q: Queue>(q: &Q) {
    let err = q.send_batch(WORK, batch("x", 11)).await.unwrap_err();
    assert!(matches!(err.kind(), kpi_core::ErrorKind::Validation { .. }));
    assert_eq!(q.stats(WORK).await.unwrap().visible, 0, "nothing sent");
}

pub async fn redelivered_after_visibility_timeout<Q: Queue>(q: &Q) {
    q.send_batch(WORK, batch("job", 1)).await.unwrap();
    let first = receive_n(q, WORK, 1, Duration::from_secs(5)).await;
    assert_eq!(first.len(), 1);
    // Hidden while in flight...
    assert!(
        q.receive(WORK, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(q.stats(WORK).await.unwrap().in_flight, 1);
    // ...and back once the visibility timeout passes without a delete.
    tokio::time::sleep(VISIBILITY).await;
    let second = receive_n(q, WORK, 1, Duration::from_secs(5)).await;
    assert_eq!(second.len(), 1);
    assert_eq!(second[0].body, first[0].body);
    assert_eq!(second[0].message_id, first[0].message_id);
    assert_eq!(second[0].receive_count, 2);
    q.delete(WORK, &second[0].receipt).await.unwrap();
}

pub async fn moved_to_dlq_after_max_receives<Q: Queue>(q: &Q) {
    q.send_batch(WORK, vec![OutgoingMessage::new("poison")])
        .await
        .unwrap();
    for attempt in 1..=MAX_RECEIVES {
        let got = receive_n(q, WORK, 1, Duration::from_secs(5)).await;
        assert_eq!(got.len(), 1, "attempt {attempt}");
        assert_eq!(got[0].receive_count, attempt);
        tokio::time::sleep(VISIBILITY).await;
    }
    // The next receive finds it out of attempts and moves it to the DLQ.
    let after = q.receive(WORK, 10, Duration::from_secs(2)).await.unwrap();
    assert!(after.is_empty(), "no delivery after the maximum receives");
    let dead = receive_n(q, DLQ, 1, Duration::from_secs(5)).await;
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "poison");
    q.delete(DLQ, &dead[0].receipt).await.unwrap();
}

pub async fn visibility_can_be_changed<Q: Queue>(q: &Q) {
    q.send_batch(WORK, batch("v", 1)).await.unwrap();
    let got = receive_n(q, WORK, 1, Duration::from_secs(5)).await;
    // Back off: hidden well past the default timeout.
    q.change_visibility(WORK, &got[0].receipt, Duration::from_secs(4))
        .await
        .unwrap();
    tokio::time::sleep(VISIBILITY + Duration::from_millis(500)).await;
    assert!(
        q.receive(WORK, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty(),
        "still hidden"
    );
    let again = receive_n(q, WORK, 1, Duration::from_secs(8)).await;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].receive_count, 2);
    q.delete(WORK, &again[0].receipt).await.unwrap();

    // Give up on a message now: visible again at once.
    q.send_batch(WORK, batch("w", 1)).await.unwrap();
    let got = receive_n(q, WORK, 1, Duration::from_secs(5)).await;
    q.change_visibility(WORK, &got[0].receipt, Duration::ZERO)
        .await
        .unwrap();
    let back = receive_n(q, WORK, 1, Duration::from_secs(3)).await;
    assert_eq!(back.len(), 1);
    assert_eq!(back[0].body, got[0].body);
    assert_eq!(back[0].receive_count, 2);
    q.delete(WORK, &back[0].receipt).await.unwrap();
}

/// What the queue says it holds: a message sent now is held now and a day
/// later, so the scheduler leaves its job waiting.
pub async fn a_message_sent_now_is_held_for_a_day<Q: Queue>(q: &Q) {
    let now = chrono::Utc::now();
    for later in [chrono::Duration::zero(), chrono::Duration::days(1)] {
        assert!(q.holds_since(now + later) <= now, "{later}");
    }
}

pub async fn delayed_messages_wait<Q: Queue>(q: &Q) {
    q.send_batch(
        WORK,
        vec![OutgoingMessage {
            body: "later".into(),
            delay: Some(Duration::from_secs(2)),
        }],
    )
    .await
    .unwrap();
    assert!(
        q.receive(WORK, 10, Duration::ZERO)
            .await
            .unwrap()
            .is_empty()
    );
    let got = receive_n(q, WORK, 1, Duration::from_secs(6)).await;
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].body, "later");
}

#[macro_export]
macro_rules! all_queue_cases {
    ($make:path) => {
        $crate::queue_conformance!($make;
            send_receive_delete,
            batches_hold_at_most_ten,
            redelivered_after_visibility_timeout,
            moved_to_dlq_after_max_receives,
            visibility_can_be_changed,
            delayed_messages_wait,
            a_message_sent_now_is_held_for_a_day,
        );
    };
}
