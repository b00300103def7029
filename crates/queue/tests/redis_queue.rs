//! `RedisQueue` against the real server at 127.0.0.1:6379 (a missing server fails these tests).
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_core::{NewWork, Priority, Queue, QueueError, WorkerId};
use hybridgrid_queue::RedisQueue;
use hybridgrid_testkit::{eventually, service_url, unique_prefix};
use std::time::{Duration, SystemTime};

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// A queue under a fresh prefix; drop it with [`cleanup`].
async fn fresh(tag: &str) -> RedisQueue {
    RedisQueue::connect(&redis_url(), format!("{}:", unique_prefix(tag)))
        .await
        .unwrap()
}

/// Deletes every key under the queue's prefix.
async fn cleanup(q: &RedisQueue) {
    hybridgrid_testkit::redis::delete_prefix(&redis_url(), q.prefix()).await;
}

const LEASE: Duration = Duration::from_secs(30);

fn worker() -> WorkerId {
    WorkerId::new("test-worker")
}

#[tokio::test]
async fn keys_follow_the_guide() {
    let q = fresh("keys").await;
    q.enqueue(NewWork::new(&b"a"[..]).priority(Priority::High))
        .await
        .unwrap();
    q.enqueue(NewWork::new(&b"b"[..]).priority(Priority::Low))
        .await
        .unwrap();
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for (lane, want) in [("high", 1), ("normal", 0), ("low", 1)] {
        let n: u64 = redis::cmd("LLEN")
            .arg(format!("{}work:queue:{lane}", q.prefix()))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(n, want, "LLEN work:queue:{lane}");
    }
    cleanup(&q).await;
}

#[tokio::test]
async fn binary_payload_round_trips_and_lease_ops_check_tokens() {
    let q = fresh("ops").await;
    let payload = Bytes::from((0u8..=255).collect::<Vec<_>>());
    let id = q.enqueue(NewWork::new(payload.clone())).await.unwrap();
    let c = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (&c.id, &c.payload, c.attempt, c.max_attempts),
        (id.id(), &payload, 1, 3)
    );
    assert_eq!(c.priority, Priority::Normal);
    q.extend(&c.token, LEASE).await.unwrap();
    let d = q.depths().await.unwrap();
    assert_eq!((d.ready_total(), d.in_flight), (0, 1));
    q.ack(&c.token).await.unwrap();
    for r in [
        q.ack(&c.token).await,
        q.nack(&c.token, Duration::ZERO).await,
        q.extend(&c.token, LEASE).await,
    ] {
        assert!(matches!(r, Err(QueueError::LeaseLost { .. })), "{r:?}");
    }
    let bogus = hybridgrid_core::LeaseToken::new("not-a-token");
    assert!(matches!(
        q.ack(&bogus).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert_eq!(q.depths().await.unwrap(), Default::default());
    cleanup(&q).await;
}

#[tokio::test]
async fn delayed_work_waits_and_blocking_claim_wakes_for_it() {
    let q = fresh("delay").await;
    q.enqueue(NewWork::new(&b"later"[..]).delay(Duration::from_millis(300)))
        .await
        .unwrap();
    assert_eq!(q.depths().await.unwrap().delayed, 1);
    assert!(
        q.claim(&worker(), LEASE, Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    let c = q
        .claim(&worker(), LEASE, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(c.map(|c| c.payload), Some(Bytes::from_static(b"later")));
    cleanup(&q).await;
}

#[tokio::test]
async fn blocked_claimer_wakes_on_enqueue() {
    let q = fresh("wake").await;
    let waiter = {
        let q = q.clone();
        tokio::spawn(async move { q.claim(&worker(), LEASE, Duration::from_secs(20)).await })
    };
    // Let the claimer block first, then enqueue; it must wake well before its 20 s wait ends.
    tokio::time::sleep(Duration::from_millis(100)).await;
    q.enqueue(NewWork::new(&b"now"[..])).await.unwrap();
    let got = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the blocked claimer woke")
        .unwrap()
        .unwrap();
    assert_eq!(got.map(|c| c.payload), Some(Bytes::from_static(b"now")));
    cleanup(&q).await;
}

#[tokio::test]
async fn nack_retries_then_dead_letters_with_reason() {
    let q = fresh("dead").await;
    let key = "job-1";
    let id = q
        .enqueue(
            NewWork::new(&b"doomed"[..])
                .max_attempts(2)
                .idempotency_key(key),
        )
        .await
        .unwrap();
    for attempt in 1..=2 {
        let c = q
            .claim(&worker(), LEASE, Duration::from_secs(5))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(c.attempt, attempt);
        q.nack(&c.token, Duration::ZERO).await.unwrap();
    }
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (&dead[0].id, dead[0].attempts, dead[0].reason.as_str()),
        (id.id(), 2, "nacked")
    );
    assert_eq!(q.depths().await.unwrap().dead, 1);
    // The key stays taken while the item is dead.
    let again = q
        .enqueue(NewWork::new(&b"doomed"[..]).idempotency_key(key))
        .await
        .unwrap();
    assert_eq!(again, hybridgrid_core::Enqueued::Duplicate(id.id().clone()));
    assert!(q.dead_letters(0).await.unwrap().is_empty());
    cleanup(&q).await;
}

#[tokio::test]
async fn ack_frees_the_idempotency_key() {
    let q = fresh("idem").await;
    let first = q
        .enqueue(NewWork::new(&b"x"[..]).idempotency_key("k"))
        .await
        .unwrap();
    let dup = q
        .enqueue(NewWork::new(&b"x"[..]).idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!(
        dup,
        hybridgrid_core::Enqueued::Duplicate(first.id().clone())
    );
    let c = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    q.ack(&c.token).await.unwrap();
    let next = q
        .enqueue(NewWork::new(&b"x"[..]).idempotency_key("k"))
        .await
        .unwrap();
    assert!(
        matches!(next, hybridgrid_core::Enqueued::Created(ref id) if id != first.id()),
        "{next:?}"
    );
    cleanup(&q).await;
}

#[tokio::test]
async fn expired_lease_with_no_attempts_left_is_dead_lettered() {
    let q = fresh("expire").await;
    q.enqueue(NewWork::new(&b"once"[..]).max_attempts(1))
        .await
        .unwrap();
    let c = q
        .claim(&worker(), Duration::from_millis(100), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let dead = eventually(Duration::from_secs(10), || async {
        q.dead_letters(10).await.unwrap().pop()
    })
    .await
    .expect("dead-lettered after the lease expired");
    assert_eq!((dead.id, dead.reason.as_str()), (c.id, "lease expired"));
    assert!(matches!(
        q.ack(&c.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
    cleanup(&q).await;
}

#[tokio::test]
async fn invalid_requests_are_refused() {
    let q = fresh("invalid").await;
    let r = q.enqueue(NewWork::new(&b"x"[..]).max_attempts(0)).await;
    assert!(matches!(r, Err(QueueError::Invalid(_))), "{r:?}");
    let r = RedisQueue::connect("not a url", "").await;
    assert!(matches!(r, Err(QueueError::Invalid(_))), "{r:?}");
    let r = RedisQueue::connect("redis://127.0.0.1:1", "").await;
    match r {
        Err(
            e @ QueueError::Backend {
                backend: "redis", ..
            },
        ) => assert!(e.retry().is_retryable()),
        other => panic!("expected a redis backend error, got {other:?}"),
    }
    cleanup(&q).await;
}

#[tokio::test]
async fn backoff_is_stored_per_key() {
    let q = fresh("backoff").await;
    assert_eq!(q.backoff_until("agent-a").await.unwrap(), None);
    let until = SystemTime::now() + Duration::from_secs(60);
    q.set_backoff("agent-a", until).await.unwrap();
    let got = q
        .backoff_until("agent-a")
        .await
        .unwrap()
        .expect("backed off");
    let diff = got.duration_since(until).unwrap_or_else(|e| e.duration());
    assert!(
        diff < Duration::from_millis(1),
        "stored {got:?}, set {until:?}"
    );
    assert_eq!(q.backoff_until("agent-b").await.unwrap(), None);
    q.set_backoff("agent-b", SystemTime::now() - Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(
        q.backoff_until("agent-b").await.unwrap(),
        None,
        "a past backoff is over"
    );
    q.clear_backoff("agent-a").await.unwrap();
    assert_eq!(q.backoff_until("agent-a").await.unwrap(), None);
    cleanup(&q).await;
}

/// Item fields are `|`-separated strings: keys and worker names containing `|` (or newlines)
/// still round-trip, deduplicate and ack.
#[tokio::test]
async fn separators_in_keys_and_worker_names_are_safe() {
    let q = fresh("sep").await;
    let key = "a|b|\nc|";
    let id = q
        .enqueue(NewWork::new(&b"p"[..]).idempotency_key(key))
        .await
        .unwrap();
    let again = q
        .enqueue(NewWork::new(&b"q"[..]).idempotency_key(key))
        .await
        .unwrap();
    assert_eq!(again, hybridgrid_core::Enqueued::Duplicate(id.id().clone()));
    let worker = WorkerId::new("w|1|\n");
    let c = q
        .claim(&worker, LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((&c.id, c.attempt, c.max_attempts), (id.id(), 1, 3));
    let seen = q.consumers().await.unwrap();
    assert!(seen.iter().any(|s| s.worker == worker), "{seen:?}");
    q.ack(&c.token).await.unwrap();
    let fresh_again = q
        .enqueue(NewWork::new(&b"r"[..]).idempotency_key(key))
        .await
        .unwrap();
    assert!(matches!(fresh_again, hybridgrid_core::Enqueued::Created(_)));
    cleanup(&q).await;
}
