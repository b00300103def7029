//! The holes a review found in `NatsQueue` (issue 19), each reproduced at the exact protocol step
//! where it opened, through a proxy that cuts or stalls the connection there; against the real
//! NATS JetStream server (127.0.0.1:4222, or `HG_TEST_NATS_URL`). A missing server fails these.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod nats_common;

use hybridgrid_core::{Claim, Enqueued, NewWork, Queue, QueueError, WorkId, WorkerId};
use hybridgrid_queue::{NatsQueue, NatsQueueConfig};
use hybridgrid_testkit::{eventually, unique_prefix};
use nats_common::{Cleanup, Fault, Proxy, open, short_ack_wait};
use std::time::{Duration, Instant};

fn keyed(key: &str) -> NewWork {
    NewWork::new(&b"job"[..]).idempotency_key(key)
}

/// Claims and acks everything that shows up within `window` (claims wait up to 500 ms each).
async fn drain(q: &NatsQueue, window: Duration) -> Vec<Claim> {
    let worker = WorkerId::new("drain");
    let until = Instant::now() + window;
    let mut got = Vec::new();
    while Instant::now() < until {
        if let Some(c) = q
            .claim(&worker, Duration::from_secs(30), Duration::from_millis(500))
            .await
            .unwrap()
        {
            q.ack(&c.token).await.unwrap();
            got.push(c);
        }
    }
    got
}

fn ids(claims: &[Claim]) -> Vec<(WorkId, u32)> {
    claims.iter().map(|c| (c.id.clone(), c.attempt)).collect()
}

/// A producer dies in the middle of a keyed enqueue, just before each of the publishes the
/// enqueue makes. Whatever the step, a retry of the same key (from another process) must leave
/// exactly one item, under the id the retry returns: never a key pointing at nothing (the item
/// silently dropped), never two items.
#[tokio::test]
async fn keyed_enqueue_interrupted_at_any_step_leaves_exactly_one_item() {
    for step in ["key.", "normal"] {
        let name = unique_prefix("natsh");
        let _cleanup = Cleanup(name.clone());
        let proxy = Proxy::start().await;
        let producer = NatsQueue::connect_with(&proxy.url(), &name, short_ack_wait())
            .await
            .unwrap();
        proxy.arm(Fault::CutBefore(format!("{name}.{step}")));
        let interrupted =
            tokio::time::timeout(Duration::from_secs(10), producer.enqueue(keyed("job-1"))).await;
        assert!(
            proxy.fired(),
            "step {step}: the enqueue never published there"
        );
        assert!(
            !matches!(interrupted, Ok(Ok(_))),
            "step {step}: the enqueue cannot have been confirmed: {interrupted:?}"
        );
        drop(producer); // the producer is gone for good

        let q = open(&name, NatsQueueConfig::default()).await;
        let retried = q.enqueue(keyed("job-1")).await.unwrap();
        let got = drain(&q, Duration::from_secs(3)).await;
        assert_eq!(
            ids(&got),
            vec![(retried.id().clone(), 1)],
            "step {step}: expected exactly the item the retry named ({retried:?})"
        );
        assert_eq!(
            q.enqueue(keyed("job-1")).await.unwrap(),
            Enqueued::Duplicate(retried.id().clone()),
            "step {step}: the key keeps naming the item"
        );
    }
}

/// The item's publish reaches the stream but its acknowledgement does not come back in time, so
/// the enqueue fails; the producer retries with the same key. One item, not two.
#[tokio::test]
async fn lost_publish_ack_then_retry_keeps_one_item() {
    let name = unique_prefix("natsh");
    let _cleanup = Cleanup(name.clone());
    let proxy = Proxy::start().await;
    let q = NatsQueue::connect_with(&proxy.url(), &name, short_ack_wait())
        .await
        .unwrap();
    proxy.arm(Fault::StallRepliesAfter(format!("{name}.normal")));
    let first = q.enqueue(keyed("job-2")).await;
    assert!(proxy.fired(), "the enqueue never published the item");
    let err = first.expect_err("the publish acknowledgement was held back");
    assert!(err.retry().is_retryable(), "{err:?}");
    proxy.resume();
    let retried = eventually(Duration::from_secs(10), || async {
        q.enqueue(keyed("job-2")).await.ok()
    })
    .await
    .expect("the retry succeeds once replies flow again");

    let direct = open(&name, NatsQueueConfig::default()).await;
    let got = drain(&direct, Duration::from_secs(3)).await;
    assert_eq!(
        ids(&got),
        vec![(retried.id().clone(), 1)],
        "expected exactly the item the retry named ({retried:?})"
    );
}

/// A holder is partitioned from the server while its (long) lease runs. The server redelivers
/// the item after `ack_wait`; the partitioned holder must learn that its lease is lost: `extend`
/// says so, and once the network is back its `ack` neither succeeds nor removes the item from
/// under the new holder.
#[tokio::test]
async fn partitioned_holder_loses_its_lease_when_the_server_redelivers() {
    let name = unique_prefix("natsh");
    let _cleanup = Cleanup(name.clone());
    let proxy = Proxy::start().await;
    let holder = NatsQueue::connect_with(&proxy.url(), &name, short_ack_wait())
        .await
        .unwrap();
    let live = open(&name, short_ack_wait()).await;
    let id = live
        .enqueue(NewWork::new(&b"contested"[..]).max_attempts(5))
        .await
        .unwrap()
        .id()
        .clone();
    let lease = Duration::from_secs(60);
    let first = holder
        .claim(&WorkerId::new("partitioned"), lease, Duration::from_secs(5))
        .await
        .unwrap()
        .expect("item is ready");
    proxy.cut();

    let second = live
        .claim(&WorkerId::new("live"), lease, Duration::from_secs(8))
        .await
        .unwrap()
        .expect("the server redelivers after ack_wait");
    assert_eq!((second.id.clone(), second.attempt), (id.clone(), 2));
    let extended = holder.extend(&first.token, lease).await;
    assert!(
        matches!(extended, Err(QueueError::LeaseLost { .. })),
        "the partitioned holder was told its lease still holds: {extended:?}"
    );

    proxy.restore();
    eventually(Duration::from_secs(10), || async {
        holder.depths().await.ok()
    })
    .await
    .expect("the holder reconnects");
    let acked = holder.ack(&first.token).await;
    assert!(
        matches!(acked, Err(QueueError::LeaseLost { .. })),
        "a stale holder's ack succeeded: {acked:?}"
    );
    assert_eq!(
        live.depths().await.unwrap().in_flight,
        1,
        "the stale ack removed the new holder's item"
    );
    live.ack(&second.token).await.unwrap();
    assert!(drain(&live, Duration::from_millis(1500)).await.is_empty());
}

/// A nack (or a lease expiry) whose message to the server is lost must not leave two copies of
/// the item with their own attempt budgets: exactly one redelivery, with the attempt counted.
#[tokio::test]
async fn give_back_whose_ack_is_lost_does_not_duplicate() {
    for how in ["nack", "lease expiry"] {
        let name = unique_prefix("natsh");
        let _cleanup = Cleanup(name.clone());
        let proxy = Proxy::start().await;
        // Leases shorter than ack_wait: no progress signal goes out before the give-back.
        let config = NatsQueueConfig {
            ack_wait: Duration::from_secs(2),
            request_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let holder = NatsQueue::connect_with(&proxy.url(), &name, config.clone())
            .await
            .unwrap();
        let live = open(&name, config).await;
        let id = live
            .enqueue(NewWork::new(&b"retried"[..]).max_attempts(5))
            .await
            .unwrap()
            .id()
            .clone();
        let claim = holder
            .claim(
                &WorkerId::new("holder"),
                Duration::from_secs(1),
                Duration::from_secs(5),
            )
            .await
            .unwrap()
            .expect("item is ready");
        // The first acknowledgement-subject message from the holder is lost with its connection.
        proxy.arm(Fault::CutBefore("$JS.ACK.".into()));
        if how == "nack" {
            let _ = holder.nack(&claim.token, Duration::ZERO).await;
        }
        // The server redelivers 2 s (ack_wait) after the claim; a copy would show up by then too.
        let got = drain(&live, Duration::from_secs(4)).await;
        assert!(proxy.fired(), "{how}: nothing was sent to the server");
        assert_eq!(
            ids(&got),
            vec![(id, 2)],
            "{how}: expected one redelivery of the item, attempt 2"
        );
    }
}

/// Caller-supplied durations far beyond any deadline (`Duration::MAX`) are cut to a long but
/// representable time instead of overflowing `Instant + Duration` (a panic).
#[tokio::test]
async fn huge_durations_do_not_panic() {
    let name = unique_prefix("natsh");
    let _cleanup = Cleanup(name.clone());
    let q = open(&name, NatsQueueConfig::default()).await;
    let w = WorkerId::new("w");
    let id = q
        .enqueue(NewWork::new(&b"x"[..]))
        .await
        .unwrap()
        .id()
        .clone();
    let c = q
        .claim(&w, Duration::MAX, Duration::MAX)
        .await
        .unwrap()
        .expect("item is ready");
    assert_eq!(c.id, id);
    q.extend(&c.token, Duration::MAX).await.unwrap();
    q.nack(&c.token, Duration::MAX).await.unwrap();
    q.enqueue(NewWork::new(&b"y"[..]).delay(Duration::MAX))
        .await
        .unwrap();
    // Nothing is claimable now (one item waits out its retry-after, one its delay); a claim that
    // may wait "for ever" just waits.
    let waited = tokio::time::timeout(
        Duration::from_millis(500),
        q.claim(&w, Duration::MAX, Duration::MAX),
    )
    .await;
    assert!(waited.is_err(), "nothing should be claimable: {waited:?}");
    let d = q.depths().await.unwrap();
    assert_eq!(
        (d.ready_total(), d.delayed, d.in_flight),
        (0, 1, 1),
        "{d:?}"
    );
}
