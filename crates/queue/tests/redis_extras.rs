//! `RedisQueue` beyond the core suite, against the real server at 127.0.0.1:6379 (or
//! `HG_TEST_REDIS_URL`; a missing server fails): the fenced enqueue against a real
//! `RedisLeaderElection`, priority aging under a sustained high load, consumer liveness.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use hybridgrid_core::{FencingToken, NewWork, Queue, QueueError};
use hybridgrid_queue::{RedisLeaderElection, RedisQueue};
use hybridgrid_testkit::{service_url, unique_prefix};
use std::sync::Arc;

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

async fn fresh(tag: &str) -> RedisQueue {
    RedisQueue::connect(&redis_url(), format!("{}:", unique_prefix(tag)))
        .await
        .unwrap()
}

async fn cleanup(prefix: &str) {
    hybridgrid_testkit::redis::delete_prefix(&redis_url(), prefix).await;
}

#[tokio::test]
async fn enqueue_fenced_refuses_a_deposed_leaders_token_in_the_same_script() {
    let q = fresh("fenced").await;
    // The election's keys under the queue's prefix, so cleanup removes them too.
    let election = RedisLeaderElection::new(&redis_url(), format!("{}leader", q.prefix())).unwrap();
    let fence = election.fence_key().to_owned();
    assert_eq!(fence, format!("{}leader:fence", q.prefix()));
    hybridgrid_testkit::queue::check_fenced_enqueue(
        Arc::new(q.clone()),
        Arc::new(election),
        &fence,
    )
    .await;
    // A token from the future is refused too: only the newest issued is current.
    let err = q
        .enqueue_fenced(NewWork::new(&b"x"[..]), &fence, FencingToken(99))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::Fenced {
                presented: FencingToken(99),
                current: FencingToken(2),
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(q.depths().await.unwrap().ready_total(), 0);
    cleanup(q.prefix()).await;
}

#[tokio::test]
async fn enqueue_fenced_with_no_counter_yet_accepts_only_token_zero() {
    let q = fresh("fence0").await;
    let fence = format!("{}never-elected:fence", q.prefix());
    let err = q
        .enqueue_fenced(NewWork::new(&b"x"[..]), &fence, FencingToken(1))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            QueueError::Fenced {
                current: FencingToken(0),
                ..
            }
        ),
        "{err:?}"
    );
    cleanup(q.prefix()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aging_bounds_the_wait_of_low_work_under_high_load() {
    let prefix = format!("{}:", unique_prefix("aging"));
    let url = redis_url();
    let p = prefix.clone();
    hybridgrid_testkit::queue::run_aging_suite(move |aging| {
        let (url, p) = (url.clone(), p.clone());
        async move {
            Arc::new(
                RedisQueue::connect(&url, p)
                    .await
                    .unwrap()
                    .with_aging(aging),
            ) as Arc<dyn Queue>
        }
    })
    .await;
    cleanup(&prefix).await;
}

#[tokio::test]
async fn reports_a_consumer_that_stopped_fetching() {
    let q = fresh("live").await;
    hybridgrid_testkit::queue::run_liveness_check(Arc::new(q.clone())).await;
    cleanup(q.prefix()).await;
}

#[tokio::test]
async fn dead_letters_are_bounded_and_the_oldest_dropped_with_its_key() {
    let q = fresh("deadcap").await.with_dead_letter_limit(3);
    hybridgrid_testkit::queue::check_dead_letter_bound(Arc::new(q.clone()), 3, true).await;
    cleanup(q.prefix()).await;
}
