//! `RedisQueue` passes the queue conformance suite against the real server (127.0.0.1:6379, or
//! `HG_TEST_REDIS_URL`); a missing server fails the test.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use hybridgrid_core::Queue;
use hybridgrid_queue::RedisQueue;
use hybridgrid_testkit::{service_url, unique_prefix};
use parking_lot::Mutex;
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_queue_conforms() {
    let url = service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379");
    let prefixes = Arc::new(Mutex::new(Vec::new()));
    hybridgrid_testkit::queue::run_queue_suite(|| {
        let (url, prefixes) = (url.clone(), prefixes.clone());
        async move {
            let prefix = format!("{}:", unique_prefix("conform"));
            prefixes.lock().push(prefix.clone());
            Arc::new(RedisQueue::connect(&url, prefix).await.unwrap()) as Arc<dyn Queue>
        }
    })
    .await;

    // Leave nothing behind.
    let prefixes = prefixes.lock().clone();
    for prefix in prefixes {
        hybridgrid_testkit::redis::delete_prefix(&url, &prefix).await;
    }
}
