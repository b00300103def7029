//! # hybridgrid-testkit
//!
//! One conformance suite per hybridgrid seam trait. A backend proves itself by calling one function
//! with a factory that builds a fresh, isolated instance per check:
//!
//! ```no_run
//! # async fn demo() {
//! // In crates/queue/tests/conformance.rs:
//! // hybridgrid_testkit::queue::run_queue_suite(|| async { Arc::new(MemoryQueue::new()) as Arc<dyn Queue> }).await;
//! let url = hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379");
//! let prefix = hybridgrid_testkit::unique_prefix("queue");
//! # let _ = (url, prefix);
//! # }
//! ```
//!
//! Every check returns `Err(String)` naming what it expected and what it got; a suite runs all its
//! checks and then fails once, listing every failure. Checks poll until a deadline rather than sleep.
//!
//! Helpers: [`service_url`], [`unique_prefix`], [`eventually`]; [`bench`], the queue round-trip
//! harness of the queue benches; `redis::RedisPrefix` (feature `redis`), a key prefix deleted when
//! the test ends.

pub mod bench;
pub mod breaker;
pub mod cache;
pub mod discovery;
#[cfg(feature = "docker")]
pub mod docker;
pub mod election;
pub mod event;
pub mod executor;
#[cfg(feature = "fake-dagger")]
pub mod fake_dagger;
#[cfg(feature = "fake-llm")]
pub mod fake_llm;
pub mod queue;
#[cfg(feature = "redis")]
pub mod redis;
pub mod store;
mod store_flow;

use std::future::Future;
use std::time::{Duration, Instant};

/// The URL of a test service: the environment variable `var` if set, else `default`.
/// Tests that need the service fail (they never skip) when it does not answer.
pub fn service_url(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// A unique name for isolating a test's keys, streams or schemas: `hgtest_<tag>_<random>`.
pub fn unique_prefix(tag: &str) -> String {
    format!("hgtest_{tag}_{}", uuid::Uuid::new_v4().simple())
}

/// Runs one named check and records its failure, if any, in `failed`.
pub async fn check<F>(failed: &mut Vec<String>, name: &str, fut: F)
where
    F: Future<Output = Result<(), String>>,
{
    if let Err(e) = fut.await {
        failed.push(format!("{name}: {e}"));
    }
}

/// Polls `probe` every 10 ms until it returns `Some`, or returns `None` after `timeout`.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut probe: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe().await {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
