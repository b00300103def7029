//! A circuit breaker around a flaky call. The breaker counts outcomes per key over a window; when
//! the failure rate crosses the threshold it opens and refuses calls at once (no waiting on a dead
//! target); after `open_timeout` it lets one probe through, whose success closes it again.
//!
//! The clock is a `ManualClock`, so the example runs instantly and the same way every time.
//!
//! Run: `cargo run -p hybridgrid-examples --example breaker`

use anyhow::ensure;
use hybridgrid_core::clock::ManualClock;
use hybridgrid_core::{CircuitBreaker, CircuitState, Outcome};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// A remote call that fails while `down` is set.
fn flaky_call(down: &AtomicBool) -> Result<&'static str, &'static str> {
    if down.load(Ordering::Relaxed) {
        Err("connection refused")
    } else {
        Ok("ok")
    }
}

/// The call under the breaker: refused while open, outcome recorded otherwise.
fn guarded(breaker: &KeyedBreaker, key: &str, down: &AtomicBool) -> String {
    match breaker.try_acquire(key) {
        Err(open) => format!("refused: {open}"),
        Ok(()) => match flaky_call(down) {
            Ok(v) => {
                breaker.record(key, Outcome::Success);
                v.to_owned()
            }
            Err(e) => {
                breaker.record(key, Outcome::Failure);
                format!("failed: {e}")
            }
        },
    }
}

fn main() -> anyhow::Result<()> {
    let clock = ManualClock::new();
    let config = BreakerConfig {
        window: Duration::from_secs(60),
        min_calls: 4,
        failure_rate_threshold: 0.5,
        open_timeout: Duration::from_secs(30),
    };
    let breaker = KeyedBreaker::new(config, Arc::new(clock.clone()))?;
    let key = "worker-7";
    let down = AtomicBool::new(true);

    for i in 1..=6 {
        println!(
            "call {i}: {} (circuit {})",
            guarded(&breaker, key, &down),
            breaker.state(key)
        );
    }
    ensure!(
        breaker.state(key) == CircuitState::Open,
        "failures opened the circuit"
    );

    // The target recovers; after open_timeout one probe goes through and closes the circuit.
    down.store(false, Ordering::Relaxed);
    clock.advance(Duration::from_secs(31));
    println!(
        "31 s later, probe: {} (circuit {})",
        guarded(&breaker, key, &down),
        breaker.state(key)
    );
    ensure!(
        breaker.state(key) == CircuitState::Closed,
        "a good probe closed it"
    );
    println!("next call: {}", guarded(&breaker, key, &down));
    Ok(())
}
