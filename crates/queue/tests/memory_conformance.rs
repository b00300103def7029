//! `MemoryQueue` passes the queue conformance suite, plus checks of memory-specific behaviour
//! (manual clock, key reuse after ack, tokens from another queue, huge durations).
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use hybridgrid_core::clock::ManualClock;
use hybridgrid_core::{
    Depths, Enqueued, LeaseToken, NewWork, Priority, Queue, QueueError, WorkerId,
};
use hybridgrid_queue::MemoryQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(30);

fn worker() -> WorkerId {
    WorkerId::new("memory-test")
}

fn manual() -> (ManualClock, MemoryQueue) {
    let clock = ManualClock::new();
    let queue = MemoryQueue::with_clock(Arc::new(clock.clone()));
    (clock, queue)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_queue_conforms() {
    hybridgrid_testkit::queue::run_queue_suite(|| async {
        Arc::new(MemoryQueue::new()) as Arc<dyn Queue>
    })
    .await;
}

#[tokio::test]
async fn conforms_on_a_current_thread_runtime() {
    hybridgrid_testkit::queue::run_queue_suite(|| async {
        Arc::new(MemoryQueue::default()) as Arc<dyn Queue>
    })
    .await;
}

#[tokio::test]
async fn manual_clock_drives_expiry_redelivery_and_dead_letters() {
    let (clock, q) = manual();
    let id = q
        .enqueue(NewWork::new(&b"x"[..]).max_attempts(2))
        .await
        .unwrap()
        .id()
        .clone();
    let first = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    clock.advance(LEASE - Duration::from_millis(1));
    assert!(
        q.claim(&worker(), LEASE, Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    clock.advance(Duration::from_millis(1));
    // Only claim is called, and the expired lease comes back.
    let second = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((second.id.clone(), second.attempt), (id.clone(), 2));
    assert!(matches!(
        q.ack(&first.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
    clock.advance(LEASE);
    // The last lease expired: depths alone reaps it into the dead letters.
    let d = q.depths().await.unwrap();
    assert_eq!(
        d,
        Depths {
            dead: 1,
            ..Depths::default()
        }
    );
    let dead = q.dead_letters(10).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.clone(), dead[0].attempts), (id, 2));
    assert_eq!(dead[0].reason, "lease expired");
    assert!(matches!(
        q.ack(&second.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
}

#[tokio::test]
async fn nack_reason_and_dead_letter_order_and_limit() {
    let (_clock, q) = manual();
    for name in ["a", "b", "c"] {
        q.enqueue(NewWork::new(name.as_bytes().to_vec()).max_attempts(1))
            .await
            .unwrap();
    }
    for _ in 0..3 {
        let c = q
            .claim(&worker(), LEASE, Duration::ZERO)
            .await
            .unwrap()
            .unwrap();
        q.nack(&c.token, Duration::from_secs(5)).await.unwrap();
    }
    let dead = q.dead_letters(2).await.unwrap();
    let names: Vec<_> = dead.iter().map(|d| d.payload.clone()).collect();
    assert_eq!(names, vec![&b"a"[..], &b"b"[..]]);
    assert!(dead.iter().all(|d| d.reason == "nacked" && d.attempts == 1));
    assert_eq!(q.dead_letters(usize::MAX).await.unwrap().len(), 3);
}

#[tokio::test]
async fn extend_moves_the_deadline_from_now() {
    let (clock, q) = manual();
    q.enqueue(NewWork::new(&b"x"[..])).await.unwrap();
    let c = q
        .claim(&worker(), Duration::from_secs(10), Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    clock.advance(Duration::from_secs(8));
    q.extend(&c.token, Duration::from_secs(10)).await.unwrap();
    clock.advance(Duration::from_secs(9)); // 17 s after the claim, 9 s after the extend
    assert!(
        q.claim(&worker(), LEASE, Duration::ZERO)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(q.depths().await.unwrap().in_flight, 1);
    clock.advance(Duration::from_secs(1));
    let again = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    assert_eq!((again.id, again.attempt), (c.id, 2));
}

#[tokio::test]
async fn delayed_items_join_their_lane_in_due_order() {
    let (clock, q) = manual();
    let low = |n: &str, s| {
        NewWork::new(n.as_bytes().to_vec())
            .priority(Priority::Low)
            .delay(Duration::from_secs(s))
    };
    q.enqueue(low("late", 20)).await.unwrap();
    q.enqueue(low("early", 10)).await.unwrap();
    q.enqueue(
        NewWork::new(&b"high"[..])
            .priority(Priority::High)
            .delay(Duration::from_secs(30)),
    )
    .await
    .unwrap();
    assert_eq!(q.depths().await.unwrap().delayed, 3);
    clock.advance(Duration::from_secs(30));
    let mut order = Vec::new();
    while let Some(c) = q.claim(&worker(), LEASE, Duration::ZERO).await.unwrap() {
        order.push(String::from_utf8_lossy(&c.payload).into_owned());
    }
    assert_eq!(order, ["high", "early", "late"]);
}

#[tokio::test]
async fn idempotency_key_is_reusable_after_ack() {
    let q = MemoryQueue::new();
    let first = q
        .enqueue(NewWork::new(&b"1"[..]).idempotency_key("k"))
        .await
        .unwrap();
    let c = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    q.ack(&c.token).await.unwrap();
    let again = q
        .enqueue(NewWork::new(&b"2"[..]).idempotency_key("k"))
        .await
        .unwrap();
    assert!(matches!(again, Enqueued::Created(ref id) if id != first.id()));
    let dup = q
        .enqueue(NewWork::new(&b"3"[..]).idempotency_key("k"))
        .await
        .unwrap();
    assert_eq!(dup, Enqueued::Duplicate(again.id().clone()));
}

#[tokio::test]
async fn tokens_are_bound_to_their_queue() {
    let (a, b) = (MemoryQueue::new(), MemoryQueue::new());
    a.enqueue(NewWork::new(&b"a"[..])).await.unwrap();
    b.enqueue(NewWork::new(&b"b"[..])).await.unwrap();
    let ca = a
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let cb = b
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    // Both are item 0, attempt 1 of their queue; neither queue accepts the other's token.
    assert!(matches!(
        a.ack(&cb.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
    assert!(matches!(
        b.ack(&ca.token).await,
        Err(QueueError::LeaseLost { .. })
    ));
    for bad in ["", "1", "x-y-z", "1-2-3-4", "ffffffffffffffffffff-0-1"] {
        let err = a.ack(&LeaseToken::new(bad)).await.unwrap_err();
        assert!(matches!(err, QueueError::LeaseLost { ref token } if token.as_str() == bad));
    }
    a.ack(&ca.token).await.unwrap();
    b.ack(&cb.token).await.unwrap();
}

#[tokio::test]
async fn huge_durations_do_not_overflow() {
    let q = MemoryQueue::new();
    q.enqueue(NewWork::new(&b"x"[..]).delay(Duration::MAX))
        .await
        .unwrap();
    q.enqueue(NewWork::new(&b"y"[..])).await.unwrap();
    let c = q
        .claim(&worker(), Duration::MAX, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    q.extend(&c.token, Duration::MAX).await.unwrap();
    q.nack(&c.token, Duration::MAX).await.unwrap();
    let d = q.depths().await.unwrap();
    assert_eq!((d.delayed, d.in_flight, d.ready_total()), (2, 0, 0));
    // A claim with a huge wait still returns when work arrives.
    let waiter = tokio::spawn({
        let q = q.clone();
        async move { q.claim(&worker(), LEASE, Duration::MAX).await }
    });
    q.enqueue(NewWork::new(&b"z"[..])).await.unwrap();
    let got = waiter.await.unwrap().unwrap().unwrap();
    assert_eq!(&got.payload[..], b"z");
}

#[tokio::test]
async fn sleeping_claimer_wakes_when_a_new_deadline_comes_first() {
    // A claimer sleeps until the only deadline it knows (a 30 s lease); shortening that lease
    // must wake it to recompute, so it gets the item when the short lease expires.
    let q = MemoryQueue::new();
    q.enqueue(NewWork::new(&b"x"[..])).await.unwrap();
    let held = q
        .claim(&worker(), LEASE, Duration::ZERO)
        .await
        .unwrap()
        .unwrap();
    let waiter = tokio::spawn({
        let q = q.clone();
        async move {
            let started = Instant::now();
            let c = q.claim(&worker(), LEASE, Duration::from_secs(60)).await;
            (c, started.elapsed())
        }
    });
    // Let the waiter block (current-thread runtime: it runs until it sleeps).
    tokio::time::sleep(Duration::from_millis(20)).await;
    q.extend(&held.token, Duration::from_millis(100))
        .await
        .unwrap();
    let (got, waited) = waiter.await.unwrap();
    let got = got
        .unwrap()
        .expect("the waiter gets the item after the short lease");
    assert_eq!((got.id, got.attempt), (held.id, 2));
    assert!(
        waited < Duration::from_secs(10),
        "waiter slept {waited:?}: it was not re-armed"
    );
}

#[tokio::test]
async fn cancelled_claim_loses_nothing() {
    let q = MemoryQueue::new();
    let attempt = tokio::time::timeout(
        Duration::from_millis(50),
        q.claim(&worker(), LEASE, Duration::from_secs(10)),
    )
    .await;
    assert!(
        attempt.is_err(),
        "claim on an empty queue should still be waiting"
    );
    q.enqueue(NewWork::new(&b"x"[..])).await.unwrap();
    let c = q
        .claim(&worker(), LEASE, Duration::from_secs(1))
        .await
        .unwrap();
    assert_eq!(c.map(|c| c.payload), Some(bytes::Bytes::from_static(b"x")));
    assert_eq!(q.depths().await.unwrap().in_flight, 1);
}

/// A `MemoryQueue` with one behaviour broken, to show the suite catches it.
#[derive(Clone, Copy, Debug)]
enum Bug {
    ClaimIgnoresWait,
    LeasesNeverExpire,
    NackIgnoresRetryAfter,
    ExtendDoesNothing,
    AckAcceptsStaleTokens,
    IdempotencyKeysIgnored,
    MaxAttemptsIgnored,
}

struct Mutant(MemoryQueue, Bug);

#[async_trait::async_trait]
impl Queue for Mutant {
    async fn enqueue(&self, mut work: NewWork) -> Result<Enqueued, QueueError> {
        match self.1 {
            Bug::IdempotencyKeysIgnored => work.idempotency_key = None,
            Bug::MaxAttemptsIgnored if work.max_attempts > 0 => work.max_attempts = 100,
            _ => {}
        }
        self.0.enqueue(work).await
    }
    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<hybridgrid_core::Claim>, QueueError> {
        match self.1 {
            Bug::ClaimIgnoresWait => self.0.claim(worker, lease, Duration::ZERO).await,
            Bug::LeasesNeverExpire => self.0.claim(worker, Duration::MAX, wait).await,
            _ => self.0.claim(worker, lease, wait).await,
        }
    }
    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError> {
        match (self.0.ack(token).await, self.1) {
            (Err(QueueError::LeaseLost { .. }), Bug::AckAcceptsStaleTokens) => Ok(()),
            (r, _) => r,
        }
    }
    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError> {
        match self.1 {
            Bug::NackIgnoresRetryAfter => self.0.nack(token, Duration::ZERO).await,
            _ => self.0.nack(token, retry_after).await,
        }
    }
    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        match self.1 {
            Bug::ExtendDoesNothing => Ok(()),
            _ => self.0.extend(token, by).await,
        }
    }
    async fn depths(&self) -> Result<Depths, QueueError> {
        self.0.depths().await
    }
    async fn dead_letters(
        &self,
        limit: usize,
    ) -> Result<Vec<hybridgrid_core::DeadLetter>, QueueError> {
        self.0.dead_letters(limit).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn suite_catches_broken_queues() {
    use futures::FutureExt;
    let cases = [
        (Bug::ClaimIgnoresWait, "empty_claim_waits_then_returns_none"),
        (
            Bug::LeasesNeverExpire,
            "expired_lease_is_redelivered_exactly_once",
        ),
        (Bug::NackIgnoresRetryAfter, "nack_delays_visibility"),
        (Bug::ExtendDoesNothing, "extend_keeps_lease"),
        (Bug::AckAcceptsStaleTokens, "stale_lease_ack_is_rejected"),
        (Bug::IdempotencyKeysIgnored, "duplicate_key_enqueues_once"),
        (
            Bug::MaxAttemptsIgnored,
            "dead_letter_after_max_attempts_via_expiry",
        ),
    ];
    let runs = cases.map(|(bug, check)| async move {
        let suite = hybridgrid_testkit::queue::run_queue_suite(move || async move {
            Arc::new(Mutant(MemoryQueue::new(), bug)) as Arc<dyn Queue>
        });
        let outcome = std::panic::AssertUnwindSafe(suite).catch_unwind().await;
        let message = match outcome {
            Ok(()) => String::new(),
            Err(panic) => panic.downcast_ref::<String>().cloned().unwrap_or_default(),
        };
        (bug, check, message)
    });
    for (bug, check, message) in futures::future::join_all(runs).await {
        assert!(
            message.contains(&format!("\n{check}: ")),
            "{bug:?}: expected the suite to fail {check}, got {message:?}"
        );
    }
}

#[tokio::test]
async fn memory_enqueue_fenced_checks_the_election_atomically() {
    let q = MemoryQueue::new();
    let election = Arc::new(hybridgrid_queue::MemoryLeaderElection::new());
    q.add_fence("leader", election.clone());
    hybridgrid_testkit::queue::check_fenced_enqueue(Arc::new(q.clone()), election, "leader").await;
    let unknown = q
        .enqueue_fenced(
            NewWork::new(&b"x"[..]),
            "other",
            hybridgrid_core::FencingToken(1),
        )
        .await;
    assert!(
        matches!(&unknown, Err(QueueError::Invalid(m)) if m.contains("\"other\"")),
        "{unknown:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_aging_bounds_the_wait_of_low_work_under_high_load() {
    hybridgrid_testkit::queue::run_aging_suite(|aging| async move {
        Arc::new(MemoryQueue::new().with_aging(aging)) as Arc<dyn Queue>
    })
    .await;
}

#[tokio::test]
async fn memory_reports_a_consumer_that_stopped_fetching() {
    hybridgrid_testkit::queue::run_liveness_check(Arc::new(MemoryQueue::new())).await;
}

#[tokio::test]
async fn memory_dead_letters_are_bounded_and_the_oldest_dropped_with_its_key() {
    let q = MemoryQueue::new().with_dead_letter_limit(3);
    hybridgrid_testkit::queue::check_dead_letter_bound(Arc::new(q), 3, true).await;
}
