//! `LeaderElection` conformance for the Redis and in-memory backends, and the `Elector` driver.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use hybridgrid_core::LeaderElection;
use hybridgrid_queue::{Elector, MemoryLeaderElection, RedisLeaderElection};
use hybridgrid_testkit::{election::run_election_suite, eventually, service_url, unique_prefix};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::Duration;

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// Deletes the lease and fence keys a test created.
async fn delete_keys(keys: &[String]) {
    let client = redis::Client::open(redis_url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    for key in keys {
        let _: () = redis::cmd("DEL")
            .arg(key)
            .arg(format!("{key}:fence"))
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn redis_election_conforms() {
    let keys = Arc::new(Mutex::new(Vec::new()));
    let url = redis_url();
    run_election_suite(|| {
        let key = unique_prefix("lease");
        keys.lock().push(key.clone());
        let url = url.clone();
        async move { Arc::new(RedisLeaderElection::new(&url, key).unwrap()) as Arc<dyn LeaderElection> }
    })
    .await;
    let keys = keys.lock().clone();
    delete_keys(&keys).await;
}

#[tokio::test]
async fn memory_election_conforms() {
    run_election_suite(|| async {
        Arc::new(MemoryLeaderElection::new()) as Arc<dyn LeaderElection>
    })
    .await;
}

#[tokio::test]
async fn redis_unreachable_is_a_retryable_error() {
    // Port 1 on loopback refuses connections.
    let e = RedisLeaderElection::new("redis://127.0.0.1:1", "hgtest_unreachable").unwrap();
    let err = e
        .try_acquire("a", Duration::from_secs(1))
        .await
        .unwrap_err();
    assert!(err.retry().is_retryable(), "{err}");
    assert!(
        err.to_string().contains("hgtest_unreachable"),
        "error names the key: {err}"
    );
}

#[tokio::test]
async fn elector_leads_and_hands_over_on_shutdown() {
    let key = unique_prefix("elector");
    let election: Arc<dyn LeaderElection> =
        Arc::new(RedisLeaderElection::new(&redis_url(), key.clone()).unwrap());
    let ttl = Duration::from_secs(2);
    let a = Elector::start(election.clone(), "elector-a", ttl);
    let mut a_watch = a.watch();
    let lead = eventually(Duration::from_secs(5), || async { a.leadership() }).await;
    let lead = lead.expect("a lone elector becomes leader");
    assert_eq!(lead.holder, "elector-a");
    assert_eq!(a_watch.borrow_and_update().as_ref(), Some(&lead));
    election.check_fence(lead.token).await.unwrap();

    let b = Elector::start(election.clone(), "elector-b", ttl);
    // a keeps renewing for two ttls: b never gets in (a generous ttl, so a loaded machine cannot
    // delay a renew past it).
    for _ in 0..6 {
        tokio::time::sleep(ttl / 3).await;
        assert!(!b.is_leader(), "b leads while a is renewing");
    }
    assert_eq!(
        a.leadership().map(|l| l.token),
        Some(lead.token),
        "a kept its lease"
    );

    a.shutdown().await;
    assert_eq!(*a_watch.borrow(), None, "shutdown publishes the loss");
    let b_lead = eventually(Duration::from_secs(5), || async { b.leadership() }).await;
    let b_lead = b_lead.expect("b takes over after a releases");
    assert!(b_lead.token > lead.token);
    election.check_fence(b_lead.token).await.unwrap();
    b.shutdown().await;
    delete_keys(&[key]).await;
}
