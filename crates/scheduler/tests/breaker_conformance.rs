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

/// A breaker that never opens: the suite must reject it.
struct AlwaysClosed;

impl CircuitBreaker for AlwaysClosed {
    fn try_acquire(&self, _: &str) -> Result<(), hybridgrid_core::CircuitOpen> {
        Ok(())
    }
    fn record(&self, _: &str, _: hybridgrid_core::Outcome) {}
    fn trip(&self, _: &str, _: &str) {}
    fn state(&self, _: &str) -> hybridgrid_core::CircuitState {
        hybridgrid_core::CircuitState::Closed
    }
    fn snapshot(&self) -> Vec<(String, hybridgrid_core::CircuitStatus)> {
        Vec::new()
    }
}

#[test]
#[should_panic(expected = "opens_at_threshold")]
fn suite_rejects_a_breaker_that_never_opens() {
    run_breaker_suite(|_, _| Arc::new(AlwaysClosed) as Arc<dyn CircuitBreaker>);
}
