//! `KeyedBreaker` passes the `CircuitBreaker` conformance suite.

#![allow(clippy::unwrap_used)]

use hybridgrid_core::CircuitBreaker;
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use hybridgrid_testkit::breaker::{BreakerSettings, run_breaker_suite};
use std::sync::Arc;

fn config(s: BreakerSettings) -> BreakerConfig {
    BreakerConfig {
        window: s.window,
        min_calls: s.min_calls,
        failure_rate_threshold: s.failure_rate_threshold,
        open_timeout: s.open_timeout,
    }
}

#[test]
fn keyed_breaker_conforms() {
    run_breaker_suite(|clock, s| {
        Arc::new(KeyedBreaker::new(config(s), Arc::new(clock)).unwrap()) as Arc<dyn CircuitBreaker>
    });
}
