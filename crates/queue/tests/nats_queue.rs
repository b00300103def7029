//! `NatsQueue` against the real NATS JetStream server (127.0.0.1:4222, or `HG_TEST_NATS_URL`).
//! A missing server fails these tests. Every test uses its own queue name and deletes its streams.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod nats_common;

use hybridgrid_core::{NewWork, Priority, Queue, QueueError, WorkerId};
use hybridgrid_queue::{NatsQueue, NatsQueueConfig};
use hybridgrid_testkit::{eventually, unique_prefix};
use nats_common::{Cleanup, Proxy, open, short_ack_wait};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;

/// A claimer whose connection dies while it holds a lease: the server redelivers the item once its
/// `ack_wait` runs out, to exactly one of the claimers waiting, with the attempt counted; a live
/// holder's progress signals keep the redelivered item from going out again.
#[tokio::test]
async fn dead_claimer_is_redelivered_once_after_its_lease() {
    let name = unique_prefix("natsq");
    let _cleanup = Cleanup(name.clone());
    let proxy = Proxy::start().await;
    let dying = NatsQueue::connect_with(&proxy.url(), &name, short_ack_wait())
        .await
        .unwrap();
    let live = Arc::new(open(&name, short_ack_wait()).await);
    let id = live
        .enqueue(NewWork::new(&b"job"[..]))
        .await
        .unwrap()
        .id()
        .clone();

    let first = dying
        .claim(
            &WorkerId::new("doomed"),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .expect("item is ready");
    assert_eq!((first.id.clone(), first.attempt), (id.clone(), 1));
    proxy.cut(); // the claimer is gone: no ack, no nack, no re-queue from it

    // Three claimers wait together; each takes a lease far longer than ack_wait (1 s).
    let mut claimers = JoinSet::new();
    for i in 0..3 {
        let q = Arc::clone(&live);
        claimers.spawn(async move {
            q.claim(
                &WorkerId::new(format!("survivor-{i}")),
                Duration::from_secs(30),
                Duration::from_secs(6),
            )
            .await
            .unwrap()
        });
    }
    let mut got = Vec::new();
    while let Some(res) = claimers.join_next().await {
        if let Some(claim) = res.unwrap() {
            got.push(claim);
        }
    }
    assert_eq!(
        got.len(),
        1,
        "exactly one claimer gets the expired item: {got:?}"
    );
    assert_eq!((got[0].id.clone(), got[0].attempt), (id, 2));
    let depths = live.depths().await.unwrap();
    assert_eq!(
        (depths.ready_total(), depths.in_flight),
        (0, 1),
        "{depths:?}"
    );
    live.ack(&got[0].token).await.unwrap();
    assert_eq!(live.depths().await.unwrap().in_flight, 0);
    // The vanished claimer's token is dead everywhere; in its own process it fails (retryably,
    // as the connection is down) or reports the lease lost; it never succeeds.
    assert!(dying.ack(&first.token).await.is_err());
}

/// At the last attempt, a claimer that vanishes sends the item to the dead letters (reason
/// `lease expired`) when it comes back from the server.
#[tokio::test]
async fn dead_claimer_on_last_attempt_dead_letters() {
    let name = unique_prefix("natsq");
    let _cleanup = Cleanup(name.clone());
    let proxy = Proxy::start().await;
    let dying = NatsQueue::connect_with(&proxy.url(), &name, short_ack_wait())
        .await
        .unwrap();
    let live = open(&name, short_ack_wait()).await;
    let id = live
        .enqueue(NewWork::new(&b"fragile"[..]).max_attempts(1))
        .await
        .unwrap()
        .id()
        .clone();
    let claim = dying
        .claim(
            &WorkerId::new("doomed"),
            Duration::from_secs(1),
            Duration::from_secs(5),
        )
        .await
        .unwrap()
        .expect("item is ready");
    assert_eq!(claim.id, id);
    proxy.cut();

    let dead = eventually(Duration::from_secs(10), || async {
        // Claiming is what notices the server-side expiry.
        let c = live
            .claim(
                &WorkerId::new("w"),
                Duration::from_secs(5),
                Duration::from_millis(200),
            )
            .await
            .unwrap();
        assert!(
            c.is_none(),
            "an item past its budget must not be handed out: {c:?}"
        );
        let dead = live.dead_letters(10).await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await
    .expect("item dead-lettered after the server-side expiry");
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.clone(), dead[0].attempts), (id, 1));
    assert_eq!(dead[0].reason, "lease expired");
    assert_eq!(&dead[0].payload[..], b"fragile");
}

/// Cutting the client's connection makes operations fail with a retryable error; once the network
/// is back they work again, the interrupted ack can be repeated, and nothing acknowledged is lost.
#[tokio::test]
async fn operations_fail_retryably_while_disconnected_and_recover() {
    let name = unique_prefix("natsq");
    let _cleanup = Cleanup(name.clone());
    let proxy = Proxy::start().await;
    let config = NatsQueueConfig {
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let q = NatsQueue::connect_with(&proxy.url(), &name, config)
        .await
        .unwrap();
    let worker = WorkerId::new("w");
    let lease = Duration::from_secs(60);
    let mut must_deliver = HashSet::new();
    for p in [&b"a"[..], b"b", b"c"] {
        must_deliver.insert(q.enqueue(NewWork::new(p)).await.unwrap().id().clone());
    }
    let acked = q
        .claim(&worker, lease, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();
    q.ack(&acked.token).await.unwrap();
    must_deliver.remove(&acked.id);
    let held = q
        .claim(&worker, lease, Duration::from_secs(2))
        .await
        .unwrap()
        .unwrap();

    proxy.cut();
    let err = q
        .enqueue(NewWork::new(&b"during the cut"[..]))
        .await
        .expect_err("enqueue cannot be confirmed without a connection");
    assert!(matches!(err, QueueError::Backend { .. }), "{err:?}");
    assert!(err.retry().is_retryable());
    let err = q
        .ack(&held.token)
        .await
        .expect_err("ack cannot be confirmed");
    assert!(err.retry().is_retryable(), "{err:?}");
    assert!(q.depths().await.unwrap_err().retry().is_retryable());

    proxy.restore();
    let late = eventually(Duration::from_secs(15), || async {
        q.enqueue(NewWork::new(&b"after"[..])).await.ok()
    })
    .await
    .expect("enqueue works again after the connection is restored");
    must_deliver.insert(late.id().clone());
    q.ack(&held.token)
        .await
        .expect("the interrupted ack can be repeated on the held lease");
    must_deliver.remove(&held.id);

    // Drain through a fresh, direct client: every confirmed enqueue is there, no acked item is.
    let direct = open(&name, NatsQueueConfig::default()).await;
    let mut seen = HashSet::new();
    while let Some(c) = direct
        .claim(&worker, lease, Duration::from_millis(500))
        .await
        .unwrap()
    {
        assert_ne!(c.id, acked.id, "an acked item came back");
        assert_ne!(c.id, held.id, "an acked item came back");
        seen.insert(c.id.clone());
        direct.ack(&c.token).await.unwrap();
    }
    assert!(
        must_deliver.is_subset(&seen),
        "lost items: {:?}",
        must_deliver.difference(&seen).collect::<Vec<_>>()
    );
    // The only item allowed beyond those is the enqueue whose confirmation was cut off.
    assert!(seen.len() <= must_deliver.len() + 1, "{seen:?}");
    let depths = direct.depths().await.unwrap();
    assert_eq!((depths.ready_total(), depths.in_flight), (0, 0));
}

/// NATS-specific bookkeeping: depths per state, delayed items, attempts across nacks, priorities.
#[tokio::test]
async fn depths_follow_items_through_their_states() {
    let name = unique_prefix("natsq");
    let _cleanup = Cleanup(name.clone());
    let q = open(&name, NatsQueueConfig::default()).await;
    let w = WorkerId::new("w");
    q.enqueue(NewWork::new(&b"low"[..]).priority(Priority::Low))
        .await
        .unwrap();
    q.enqueue(NewWork::new(&b"high"[..]).priority(Priority::High))
        .await
        .unwrap();
    q.enqueue(NewWork::new(&b"later"[..]).delay(Duration::from_secs(60)))
        .await
        .unwrap();
    let d = q.depths().await.unwrap();
    assert_eq!(
        (d.ready, d.delayed, d.in_flight, d.dead),
        ([1, 0, 1], 1, 0, 0)
    );

    let c = q
        .claim(&w, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&c.payload[..], b"high");
    assert_eq!(q.depths().await.unwrap().in_flight, 1);
    q.nack(&c.token, Duration::from_millis(300)).await.unwrap();
    // A nacked item stays on its consumer's pending list (the server holds it for the
    // retry-after): counted in flight, not delayed.
    let d = q.depths().await.unwrap();
    assert_eq!((d.ready, d.delayed, d.in_flight), ([0, 0, 1], 1, 1));

    // While the nacked high item waits out its retry-after, the low one is claimable.
    let low = q
        .claim(&w, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&low.payload[..], low.attempt), (&b"low"[..], 1));
    q.ack(&low.token).await.unwrap();
    // Then the high item comes back, its attempt counted.
    let again = q
        .claim(&w, Duration::from_secs(30), Duration::from_secs(5))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&again.payload[..], again.attempt), (&b"high"[..], 2));
    q.nack(&again.token, Duration::ZERO).await.unwrap();
    let third = q
        .claim(&w, Duration::from_secs(30), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&third.payload[..], third.attempt), (&b"high"[..], 3));
    q.nack(&third.token, Duration::ZERO).await.unwrap(); // budget (3) used up
    let d = q.depths().await.unwrap();
    assert_eq!(
        (d.ready, d.delayed, d.in_flight, d.dead),
        ([0, 0, 0], 1, 0, 1)
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!((dead[0].attempts, dead[0].reason.as_str()), (3, "nacked"));
    assert!(matches!(
        q.ack(&third.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
}

/// A second handle on the same queue name sees the same items and keys.
#[tokio::test]
async fn two_handles_share_one_queue() {
    let name = unique_prefix("natsq");
    let _cleanup = Cleanup(name.clone());
    let a = open(&name, NatsQueueConfig::default()).await;
    let b = open(&name, NatsQueueConfig::default()).await;
    let first = a
        .enqueue(NewWork::new(&b"x"[..]).idempotency_key("k/1 é"))
        .await
        .unwrap();
    let second = b
        .enqueue(NewWork::new(&b"x"[..]).idempotency_key("k/1 é"))
        .await
        .unwrap();
    assert_eq!(
        second,
        hybridgrid_core::Enqueued::Duplicate(first.id().clone())
    );
    let c = b
        .claim(
            &WorkerId::new("w"),
            Duration::from_secs(30),
            Duration::from_secs(1),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&c.id, first.id());
    // The lease lives in b's process; a does not hold it.
    assert!(matches!(
        a.ack(&c.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
    b.ack(&c.token).await.unwrap();
}

/// The dead-letter stream keeps at most `dead_letter_limit` messages, discarding the oldest.
/// (Idempotency keys are remembered for their window whatever happens to the item.)
#[tokio::test]
async fn dead_letters_are_bounded_and_the_oldest_dropped() {
    let name = unique_prefix("natsdead");
    let _cleanup = Cleanup(name.clone());
    let config = NatsQueueConfig {
        dead_letter_limit: 3,
        ..Default::default()
    };
    let q = open(&name, config).await;
    hybridgrid_testkit::queue::check_dead_letter_bound(Arc::new(q), 3, false).await;
}
