//! Conformance suite for [`CircuitBreaker`]: every transition, driven by a [`ManualClock`] (no sleeps).
//!
//! ```no_run
//! // In crates/scheduler/tests/breaker_conformance.rs:
//! // hybridgrid_testkit::breaker::run_breaker_suite(|clock, s| {
//! //     Arc::new(KeyedBreaker::new(config_from(s), Arc::new(clock)).unwrap()) as Arc<dyn CircuitBreaker>
//! // });
//! ```

use hybridgrid_core::clock::ManualClock;
use hybridgrid_core::{CircuitBreaker, CircuitState, CircuitStatus, Outcome};
use std::sync::Arc;
use std::time::Duration;

/// The settings a check asks the factory for; map them onto the backend's own config.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BreakerSettings {
    /// Calls the window must hold before the failure rate can open the circuit.
    pub min_calls: u32,
    /// Failure rate (0 < rate ≤ 1) at or above which the circuit opens.
    pub failure_rate_threshold: f64,
    /// How long an open circuit refuses before a probe, and how long a probe may stay unreported.
    pub open_timeout: Duration,
    /// Rolling window of the failure rate.
    pub window: Duration,
}

/// What every check uses: 4 calls, 50 %, 10 s open, 60 s window.
pub const SETTINGS: BreakerSettings = BreakerSettings {
    min_calls: 4,
    failure_rate_threshold: 0.5,
    open_timeout: Duration::from_secs(10),
    window: Duration::from_secs(60),
};

type Check = fn(&ManualClock, &dyn CircuitBreaker) -> Result<(), String>;

/// Runs every check, each on a fresh breaker built by `make` from a fresh clock and [`SETTINGS`],
/// then fails once listing every failed check.
pub fn run_breaker_suite(make: impl Fn(ManualClock, BreakerSettings) -> Arc<dyn CircuitBreaker>) {
    let checks: &[(&str, Check)] = &[
        ("unknown_key_is_closed", unknown_key_is_closed),
        ("stays_closed_below_min_calls", stays_closed_below_min_calls),
        ("opens_at_threshold", opens_at_threshold),
        ("refuses_while_open_with_retry_in", refuses_while_open),
        (
            "half_open_after_timeout_lets_one_probe",
            half_open_one_probe,
        ),
        (
            "probe_success_closes_with_fresh_window",
            probe_success_closes,
        ),
        ("probe_failure_reopens", probe_failure_reopens),
        ("trip_opens_with_reason", trip_opens_with_reason),
        ("keys_are_independent", keys_are_independent),
        ("old_failures_slide_out_of_window", old_failures_slide_out),
        ("snapshot_lists_keys_sorted", snapshot_sorted),
        (
            "unrecorded_probe_does_not_wedge",
            unrecorded_probe_does_not_wedge,
        ),
    ];
    let mut failed = Vec::new();
    for (name, check) in checks {
        let clock = ManualClock::new();
        let breaker = make(clock.clone(), SETTINGS);
        if let Err(e) = check(&clock, &*breaker) {
            failed.push(format!("{name}: {e}"));
        }
    }
    assert!(
        failed.is_empty(),
        "CircuitBreaker conformance failures:\n{}",
        failed.join("\n")
    );
}

fn expect_state(
    b: &dyn CircuitBreaker,
    key: &str,
    want: CircuitState,
    when: &str,
) -> Result<(), String> {
    match b.state(key) {
        got if got == want => Ok(()),
        got => Err(format!("{when}: expected {key} {want}, got {got}")),
    }
}

fn expect_permit(b: &dyn CircuitBreaker, key: &str, when: &str) -> Result<(), String> {
    b.try_acquire(key)
        .map_err(|e| format!("{when}: expected a permit for {key}, got refused: {e}"))
}

fn expect_refusal(b: &dyn CircuitBreaker, key: &str, when: &str) -> Result<Duration, String> {
    match b.try_acquire(key) {
        Ok(()) => Err(format!("{when}: expected {key} refused, got a permit")),
        Err(e) if e.key != key => Err(format!(
            "{when}: refusal names key {:?}, expected {key:?}",
            e.key
        )),
        Err(e) => Ok(e.retry_in),
    }
}

/// Acquires and records `outcomes` in order, every call permitted.
fn calls(b: &dyn CircuitBreaker, key: &str, outcomes: &[Outcome]) -> Result<(), String> {
    for (i, o) in outcomes.iter().enumerate() {
        expect_permit(b, key, &format!("call {i} of {outcomes:?}"))?;
        b.record(key, *o);
    }
    Ok(())
}

fn status(b: &dyn CircuitBreaker, key: &str) -> Result<CircuitStatus, String> {
    b.snapshot()
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, s)| s)
        .ok_or_else(|| format!("snapshot has no entry for {key}"))
}

/// Opens `key` through failures, checks it did, and returns.
fn open_by_failures(b: &dyn CircuitBreaker, key: &str) -> Result<(), String> {
    calls(b, key, &[Outcome::Failure; 4])?;
    expect_state(b, key, CircuitState::Open, "after 4 failures of 4 calls")
}

const S: Outcome = Outcome::Success;
const F: Outcome = Outcome::Failure;

fn unknown_key_is_closed(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    expect_state(b, "never-seen", CircuitState::Closed, "before any call")?;
    expect_permit(b, "never-seen", "before any call")
}

fn stays_closed_below_min_calls(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    calls(b, "w", &[F, F, F])?;
    expect_state(b, "w", CircuitState::Closed, "3 failures, min_calls 4")?;
    expect_permit(b, "w", "3 failures, min_calls 4")
}

fn opens_at_threshold(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    calls(b, "w", &[S, S, S, F])?;
    expect_state(b, "w", CircuitState::Closed, "rate 1/4 below 0.5")?;
    calls(b, "w", &[F])?;
    expect_state(b, "w", CircuitState::Closed, "rate 2/5 below 0.5")?;
    calls(b, "w", &[F])?;
    expect_state(b, "w", CircuitState::Open, "rate 3/6 at threshold 0.5")?;
    let st = status(b, "w")?;
    if (st.failure_rate - 0.5).abs() > 1e-9 || st.times_opened != 1 {
        return Err(format!(
            "expected failure_rate 0.5, times_opened 1; got {st:?}"
        ));
    }
    Ok(())
}

fn refuses_while_open(clock: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    open_by_failures(b, "w")?;
    let first = expect_refusal(b, "w", "just opened")?;
    if first.is_zero() || first > SETTINGS.open_timeout {
        return Err(format!("retry_in {first:?} not in (0, open_timeout]"));
    }
    clock.advance(Duration::from_secs(4));
    let later = expect_refusal(b, "w", "4s after opening")?;
    if later.is_zero() || later > Duration::from_secs(6) {
        return Err(format!(
            "4s into a 10s open: retry_in {later:?}, expected in (0, 6s]"
        ));
    }
    expect_state(b, "w", CircuitState::Open, "4s after opening")
}

fn half_open_one_probe(clock: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    open_by_failures(b, "w")?;
    clock.advance(SETTINGS.open_timeout);
    expect_state(b, "w", CircuitState::HalfOpen, "open_timeout later")?;
    expect_permit(b, "w", "first caller in half-open (the probe)")?;
    expect_refusal(b, "w", "second caller while the probe is out")?;
    expect_refusal(b, "w", "third caller while the probe is out")?;
    expect_state(b, "w", CircuitState::HalfOpen, "probe out")
}

fn probe_success_closes(clock: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    open_by_failures(b, "w")?;
    clock.advance(SETTINGS.open_timeout);
    calls(b, "w", &[S])?;
    expect_state(b, "w", CircuitState::Closed, "after the probe succeeded")?;
    // The window restarted: three failures are below min_calls again.
    calls(b, "w", &[F, F, F])?;
    expect_state(b, "w", CircuitState::Closed, "3 failures after closing")?;
    let st = status(b, "w")?;
    if st.calls_in_window != 3 || st.reason.is_some() {
        return Err(format!(
            "after closing: expected 3 calls in window and no reason, got {st:?}"
        ));
    }
    Ok(())
}

fn probe_failure_reopens(clock: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    open_by_failures(b, "w")?;
    clock.advance(SETTINGS.open_timeout);
    calls(b, "w", &[F])?;
    expect_state(b, "w", CircuitState::Open, "after the probe failed")?;
    let retry_in = expect_refusal(b, "w", "after the probe failed")?;
    if retry_in.is_zero() || retry_in > SETTINGS.open_timeout {
        return Err(format!(
            "reopened: retry_in {retry_in:?} not in (0, open_timeout]"
        ));
    }
    let st = status(b, "w")?;
    if st.times_opened != 2 {
        return Err(format!(
            "expected times_opened 2 after reopening, got {st:?}"
        ));
    }
    Ok(())
}

fn trip_opens_with_reason(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    calls(b, "w", &[S])?;
    b.trip("w", "output_mismatch");
    expect_state(b, "w", CircuitState::Open, "after trip")?;
    expect_refusal(b, "w", "after trip")?;
    let st = status(b, "w")?;
    if st.reason.as_deref() != Some("output_mismatch") || st.times_opened != 1 {
        return Err(format!(
            "expected reason output_mismatch, times_opened 1; got {st:?}"
        ));
    }
    Ok(())
}

fn keys_are_independent(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    calls(b, "b", &[F, F, F])?;
    open_by_failures(b, "a")?;
    expect_state(b, "b", CircuitState::Closed, "a open, b with 3 failures")?;
    expect_permit(b, "b", "a open")?;
    b.trip("c", "output_mismatch");
    expect_state(b, "a", CircuitState::Open, "c tripped")?;
    expect_state(b, "b", CircuitState::Closed, "c tripped")?;
    calls(b, "b", &[F])?;
    expect_state(b, "b", CircuitState::Open, "b's own fourth failure")
}

fn old_failures_slide_out(clock: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    // Failures still inside the window count...
    calls(b, "inside", &[F, F, F])?;
    clock.advance(SETTINGS.window / 2);
    calls(b, "inside", &[F])?;
    expect_state(
        b,
        "inside",
        CircuitState::Open,
        "4 failures within half a window",
    )?;
    // ...and failures older than the window do not.
    calls(b, "w", &[F, F, F])?;
    clock.advance(SETTINGS.window + Duration::from_secs(1));
    calls(b, "w", &[F])?;
    expect_state(b, "w", CircuitState::Closed, "3 old failures + 1 new")?;
    let st = status(b, "w")?;
    if st.calls_in_window != 1 {
        return Err(format!(
            "expected 1 call in window after sliding, got {st:?}"
        ));
    }
    calls(b, "w", &[F, F, F])?;
    expect_state(
        b,
        "w",
        CircuitState::Open,
        "4 failures in the current window",
    )
}

fn snapshot_sorted(_: &ManualClock, b: &dyn CircuitBreaker) -> Result<(), String> {
    calls(b, "c", &[S, S, S, F])?;
    calls(b, "a", &[F, S])?;
    b.trip("b", "output_mismatch");
    let snap = b.snapshot();
    let keys: Vec<&str> = snap.iter().map(|(k, _)| k.as_str()).collect();
    if keys != ["a", "b", "c"] {
        return Err(format!("expected keys [a, b, c], got {keys:?}"));
    }
    let (a, bb, c) = (&snap[0].1, &snap[1].1, &snap[2].1);
    let close = |x: f64, y: f64| (x - y).abs() < 1e-9;
    if a.state != CircuitState::Closed
        || !close(a.failure_rate, 0.5)
        || a.calls_in_window != 2
        || a.times_opened != 0
    {
        return Err(format!(
            "a: expected closed, rate 0.5, 2 calls, opened 0; got {a:?}"
        ));
    }
    if bb.state != CircuitState::Open
        || bb.times_opened != 1
        || bb.reason.as_deref() != Some("output_mismatch")
    {
        return Err(format!(
            "b: expected open, opened 1, reason output_mismatch; got {bb:?}"
        ));
    }
    if c.state != CircuitState::Closed || !close(c.failure_rate, 0.25) || c.calls_in_window != 4 {
        return Err(format!("c: expected closed, rate 0.25, 4 calls; got {c:?}"));
    }
    Ok(())
}

fn unrecorded_probe_does_not_wedge(
    clock: &ManualClock,
    b: &dyn CircuitBreaker,
) -> Result<(), String> {
    open_by_failures(b, "w")?;
    clock.advance(SETTINGS.open_timeout);
    expect_permit(b, "w", "the probe")?;
    // The probe's outcome never arrives.
    clock.advance(SETTINGS.open_timeout / 2);
    expect_refusal(b, "w", "half an open_timeout into the probe")?;
    clock.advance(SETTINGS.open_timeout / 2 + Duration::from_millis(1));
    expect_permit(b, "w", "a probe out longer than open_timeout")?;
    expect_refusal(b, "w", "the second probe is out")?;
    b.record("w", Outcome::Success);
    expect_state(b, "w", CircuitState::Closed, "the second probe succeeded")
}
