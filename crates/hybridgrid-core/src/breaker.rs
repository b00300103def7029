//! The [`CircuitBreaker`] seam: keep failing targets out, probe them back in.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Duration;

/// State of one key's circuit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls flow; failures are counted over a window.
    Closed,
    /// Calls are refused until `open_timeout` passes.
    Open,
    /// One probe call is let through; its outcome closes or reopens the circuit.
    HalfOpen,
}

impl CircuitState {
    /// `closed`, `open` or `half_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::Open => "open",
            CircuitState::HalfOpen => "half_open",
        }
    }
}

impl fmt::Display for CircuitState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Outcome of a call made under a permit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The target did its job (a compile error in user code is a success for the target).
    Success,
    /// An infrastructure failure: unreachable, crashed, timed out.
    Failure,
}

/// A snapshot of one key's circuit, for `/api/stats`, metrics and the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CircuitStatus {
    /// Current state.
    pub state: CircuitState,
    /// Failure rate over the current window (0.0–1.0).
    pub failure_rate: f64,
    /// Calls recorded in the current window.
    pub calls_in_window: u32,
    /// Why it last opened (`failure_rate`, `output_mismatch`, ...), while not closed.
    pub reason: Option<String>,
    /// How many times it has opened in all.
    pub times_opened: u64,
}

/// Refusal from [`CircuitBreaker::try_acquire`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("circuit breaker open for {key} (retry in {retry_in:?})")]
pub struct CircuitOpen {
    /// The refused key.
    pub key: String,
    /// Time until a probe will be let through.
    pub retry_in: Duration,
}

/// A circuit breaker per key (per worker, per agent).
///
/// The caller asks [`try_acquire`](Self::try_acquire) before a call and reports its
/// [`Outcome`] with [`record`](Self::record) after.
pub trait CircuitBreaker: Send + Sync + 'static {
    /// Permits a call to `key`, or refuses it while open. In half-open, exactly one caller gets
    /// through (the probe) until its outcome is recorded.
    fn try_acquire(&self, key: &str) -> Result<(), CircuitOpen>;
    /// Records the outcome of a permitted call.
    fn record(&self, key: &str, outcome: Outcome);
    /// Opens the circuit now, whatever the window says, for `reason` (e.g. `output_mismatch`).
    fn trip(&self, key: &str, reason: &str);
    /// Current state, without taking a permit. A key never seen is closed.
    fn state(&self, key: &str) -> CircuitState;
    /// Every known key with its status, sorted by key.
    fn snapshot(&self) -> Vec<(String, CircuitStatus)>;
}
