//! `NatsQueue` passes the shared `Queue` conformance suite, unchanged, against the real NATS
//! JetStream server (127.0.0.1:4222, or `HG_TEST_NATS_URL`). A missing server fails the test.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use futures::FutureExt;
use hybridgrid_core::Queue;
use hybridgrid_queue::NatsQueue;
use hybridgrid_testkit::{service_url, unique_prefix};
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_queue_conforms() {
    let url = service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222");
    let made: Arc<Mutex<Vec<NatsQueue>>> = Arc::default();
    let suite = hybridgrid_testkit::queue::run_queue_suite(|| {
        let (url, made) = (url.clone(), Arc::clone(&made));
        async move {
            let q = NatsQueue::connect(&url, &unique_prefix("natsq"))
                .await
                .expect(
                    "NATS JetStream must be running on 127.0.0.1:4222 (scripts/services.sh nats)",
                );
            made.lock().unwrap().push(q.clone());
            Arc::new(q) as Arc<dyn Queue>
        }
    });
    let outcome = AssertUnwindSafe(suite).catch_unwind().await;
    // Remove every stream the suite created, pass or fail.
    let queues = std::mem::take(&mut *made.lock().unwrap());
    for q in queues {
        q.destroy().await.unwrap();
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
