//! [`KeyedBreaker`]: one rolling-window circuit per key (per worker, per agent), on an injected clock.
//!
//! Each key keeps its counts in [`BUCKETS`] time buckets spanning [`BreakerConfig::window`]; a call's
//! outcome lands in the bucket of its instant, and buckets older than the window stop counting (so a
//! failure leaves the window between `window - window/BUCKETS` and `window` after it happened).
//!
//! Transitions: closed → open when the window holds at least `min_calls` calls and their failure rate
//! is at least `failure_rate_threshold`; open → half-open once `open_timeout` has passed (noticed
//! lazily, on the next access); half-open lets exactly one probe through; the probe's success closes
//! the circuit with an empty window, its failure opens it again. A probe whose outcome never arrives
//! expires after `open_timeout` and another probe is let through, so a lost probe cannot wedge a key.

use hybridgrid_core::clock::Clock;
use hybridgrid_core::{CircuitBreaker, CircuitOpen, CircuitState, CircuitStatus, Outcome};
use parking_lot::{Mutex, RwLock};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Buckets per rolling window.
pub const BUCKETS: usize = 10;

/// Reason recorded when the failure rate over the window opened a circuit.
pub const REASON_FAILURE_RATE: &str = "failure_rate";
/// Reason recorded when a half-open probe failed.
pub const REASON_PROBE_FAILED: &str = "probe_failed";

/// Settings of a [`KeyedBreaker`].
///
/// ```yaml
/// breaker:
///   window: 60s                  # rolling window the failure rate is measured over
///   min_calls: 5                 # fewer calls in the window never open the circuit
///   failure_rate_threshold: 0.5  # open at or above this rate (0 < rate <= 1)
///   open_timeout: 30s            # refuse this long, then let one probe through
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Rolling window over which the failure rate is measured (default 60s).
    #[serde(with = "crate::duration_serde")]
    pub window: Duration,
    /// Calls the window must hold before the rate can open the circuit (default 5).
    pub min_calls: u32,
    /// Failure rate (0 < rate ≤ 1) at or above which the circuit opens (default 0.5).
    pub failure_rate_threshold: f64,
    /// How long an open circuit refuses calls before letting a probe through (default 30s).
    #[serde(with = "crate::duration_serde")]
    pub open_timeout: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(60),
            min_calls: 5,
            failure_rate_threshold: 0.5,
            open_timeout: Duration::from_secs(30),
        }
    }
}

/// A [`BreakerConfig`] value that cannot work; names the field and the value.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid breaker config: {field} = {value}: {why}")]
pub struct BreakerConfigError {
    /// The offending field (`window`, `failure_rate_threshold`, ...).
    pub field: &'static str,
    /// Its value, as written.
    pub value: String,
    /// What a valid value looks like.
    pub why: &'static str,
}

impl BreakerConfig {
    /// Checks that the window and timeout are non-zero and the threshold is in (0, 1].
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.window.is_zero() {
            return Err(BreakerConfigError {
                field: "window",
                value: "0s".into(),
                why: "must be longer than zero",
            });
        }
        if self.open_timeout.is_zero() {
            return Err(BreakerConfigError {
                field: "open_timeout",
                value: "0s".into(),
                why: "must be longer than zero",
            });
        }
        let t = self.failure_rate_threshold;
        if !(t > 0.0 && t <= 1.0) {
            return Err(BreakerConfigError {
                field: "failure_rate_threshold",
                value: t.to_string(),
                why: "must be above 0 and at most 1",
            });
        }
        Ok(())
    }
}

const CLOSED: u8 = 0;
const OPEN: u8 = 1;
const HALF_OPEN: u8 = 2;

#[derive(Clone, Copy, Debug, Default)]
struct Bucket {
    epoch: u64,
    calls: u32,
    failures: u32,
}

#[derive(Clone, Copy, Debug)]
enum Phase {
    Closed,
    /// Refusing until this instant (nanoseconds since the breaker's origin).
    Open {
        until: u64,
    },
    /// `probe_until` is `Some(t)` while a probe is out; it expires at `t`.
    HalfOpen {
        probe_until: Option<u64>,
    },
}

#[derive(Debug)]
struct KeyState {
    phase: Phase,
    buckets: [Bucket; BUCKETS],
    reason: Option<String>,
    opened_rate: f64,
    times_opened: u64,
}

/// One key's circuit. Its phase and "blocked until" instant are mirrored in atomics so the common
/// cases (closed, or open and still refusing) are answered without taking the lock.
#[derive(Debug)]
pub(crate) struct KeyCircuit {
    key: Box<str>,
    phase: AtomicU8,
    /// While open: end of the refusal; while half-open with a probe out: the probe's expiry; else 0.
    blocked_until: AtomicU64,
    state: Mutex<KeyState>,
}

/// What placement can tell about a circuit without taking its lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hint {
    /// Calls flow.
    Closed,
    /// Refusing calls now.
    Blocked,
    /// Open past its timeout or half-open with no probe out: a permit may be had (as the probe).
    Probe,
}

/// A transition to log once the key's lock is released.
enum Event {
    Opened { rate: f64, reason: String },
    HalfOpen,
    Closed,
    ProbeExpired,
}

/// A circuit breaker per key, with a rolling bucketed window, on an injected [`Clock`].
///
/// ```
/// use hybridgrid_core::clock::ManualClock;
/// use hybridgrid_core::{CircuitBreaker, CircuitState, Outcome};
/// use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let breaker = KeyedBreaker::new(BreakerConfig::default(), Arc::new(clock.clone())).unwrap();
/// for _ in 0..5 {
///     breaker.try_acquire("w1").unwrap();
///     breaker.record("w1", Outcome::Failure);
/// }
/// assert_eq!(breaker.state("w1"), CircuitState::Open);
/// clock.advance(Duration::from_secs(30));
/// assert!(breaker.try_acquire("w1").is_ok()); // the probe
/// breaker.record("w1", Outcome::Success);
/// assert_eq!(breaker.state("w1"), CircuitState::Closed);
/// ```
pub struct KeyedBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    origin: Instant,
    bucket_nanos: u64,
    open_nanos: u64,
    keys: RwLock<HashMap<Box<str>, Arc<KeyCircuit>, foldhash::fast::RandomState>>,
}

impl std::fmt::Debug for KeyedBreaker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyedBreaker")
            .field("config", &self.config)
            .field("keys", &self.keys.read().len())
            .finish()
    }
}

fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

impl KeyedBreaker {
    /// A breaker with `config`, reading time from `clock`.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Result<Self, BreakerConfigError> {
        config.validate()?;
        let window = nanos(config.window);
        Ok(Self {
            bucket_nanos: (window / BUCKETS as u64).max(1),
            open_nanos: nanos(config.open_timeout),
            origin: clock.now(),
            clock,
            config,
            keys: RwLock::new(HashMap::default()),
        })
    }

    /// The settings in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Drops `key`'s circuit (a worker that is gone for good), so keys do not accumulate.
    /// Returns whether it was known.
    pub fn forget(&self, key: &str) -> bool {
        self.keys.write().remove(key).is_some()
    }

    /// Now, in nanoseconds since the breaker was built.
    pub(crate) fn now(&self) -> u64 {
        nanos(self.clock.now().saturating_duration_since(self.origin))
    }

    /// Runs `f` on `key`'s circuit under the map's read lock (no reference count touched), or
    /// returns `None` for a key never seen.
    fn with_known<R>(&self, key: &str, f: impl FnOnce(&KeyCircuit) -> R) -> Option<R> {
        self.keys.read().get(key).map(|c| f(c))
    }

    /// Runs `f` on `key`'s circuit, creating it closed if new.
    fn with_circuit<R>(&self, key: &str, f: impl FnOnce(&KeyCircuit) -> R) -> R {
        if let Some(c) = self.keys.read().get(key) {
            return f(c);
        }
        f(&self.circuit(key))
    }

    /// The circuit of `key`, created closed if new.
    pub(crate) fn circuit(&self, key: &str) -> Arc<KeyCircuit> {
        if let Some(c) = self.keys.read().get(key) {
            return c.clone();
        }
        self.keys
            .write()
            .entry(key.into())
            .or_insert_with(|| {
                Arc::new(KeyCircuit {
                    key: key.into(),
                    phase: AtomicU8::new(CLOSED),
                    blocked_until: AtomicU64::new(0),
                    state: Mutex::new(KeyState {
                        phase: Phase::Closed,
                        buckets: [Bucket::default(); BUCKETS],
                        reason: None,
                        opened_rate: 0.0,
                        times_opened: 0,
                    }),
                })
            })
            .clone()
    }

    /// Lock-free view of `c` for placement; `now` is read only when the answer depends on it.
    pub(crate) fn hint(&self, c: &KeyCircuit, now: &mut Option<u64>) -> Hint {
        if c.phase.load(Ordering::Acquire) == CLOSED {
            return Hint::Closed;
        }
        let now = *now.get_or_insert_with(|| self.now());
        if c.blocked_until.load(Ordering::Acquire) > now {
            Hint::Blocked
        } else {
            Hint::Probe
        }
    }

    /// [`CircuitBreaker::try_acquire`] on a circuit already looked up.
    pub(crate) fn acquire(&self, c: &KeyCircuit) -> Result<(), CircuitOpen> {
        if c.phase.load(Ordering::Acquire) == CLOSED {
            return Ok(());
        }
        let now = self.now();
        let blocked = c.blocked_until.load(Ordering::Acquire);
        if blocked > now {
            return Err(self.refusal(c, blocked - now));
        }
        let mut st = c.state.lock();
        let (result, event) = match st.phase {
            Phase::Closed => (Ok(()), None),
            Phase::Open { until } if until > now => (Err(self.refusal(c, until - now)), None),
            Phase::Open { .. } => {
                self.set_phase(
                    c,
                    &mut st,
                    Phase::HalfOpen {
                        probe_until: Some(now.saturating_add(self.open_nanos)),
                    },
                );
                (Ok(()), Some(Event::HalfOpen))
            }
            Phase::HalfOpen {
                probe_until: Some(t),
            } if t > now => (Err(self.refusal(c, t - now)), None),
            Phase::HalfOpen { probe_until } => {
                self.set_phase(
                    c,
                    &mut st,
                    Phase::HalfOpen {
                        probe_until: Some(now.saturating_add(self.open_nanos)),
                    },
                );
                (Ok(()), probe_until.map(|_| Event::ProbeExpired))
            }
        };
        drop(st);
        self.log(c, event);
        result
    }

    /// [`CircuitBreaker::record`] on a circuit already looked up.
    pub(crate) fn record_on(&self, c: &KeyCircuit, outcome: Outcome) {
        let now = self.now();
        let mut st = c.state.lock();
        let event = match st.phase {
            // A late outcome of a call permitted before the circuit opened: the circuit is already
            // refusing, and the window restarts when it closes.
            Phase::Open { .. } | Phase::HalfOpen { probe_until: None } => None,
            Phase::Closed => {
                self.add(&mut st, now, outcome);
                let (calls, rate) = self.window(&st, now);
                if calls >= self.config.min_calls && rate >= self.config.failure_rate_threshold {
                    Some(self.open(c, &mut st, now, rate, REASON_FAILURE_RATE))
                } else {
                    None
                }
            }
            Phase::HalfOpen {
                probe_until: Some(_),
            } => match outcome {
                Outcome::Success => {
                    st.buckets = [Bucket::default(); BUCKETS];
                    st.reason = None;
                    self.set_phase(c, &mut st, Phase::Closed);
                    Some(Event::Closed)
                }
                Outcome::Failure => {
                    self.add(&mut st, now, outcome);
                    let (_, rate) = self.window(&st, now);
                    Some(self.open(c, &mut st, now, rate, REASON_PROBE_FAILED))
                }
            },
        };
        drop(st);
        self.log(c, event);
    }

    /// Gives back a half-open probe whose call was abandoned (no outcome will come), so the next
    /// caller may probe at once instead of waiting for the probe to expire.
    pub(crate) fn abandon_probe(&self, c: &KeyCircuit) {
        let mut st = c.state.lock();
        if let Phase::HalfOpen {
            probe_until: Some(_),
        } = st.phase
        {
            self.set_phase(c, &mut st, Phase::HalfOpen { probe_until: None });
        }
    }

    fn trip_on(&self, c: &KeyCircuit, reason: &str) {
        let now = self.now();
        let mut st = c.state.lock();
        let event = if let Phase::Open { .. } = st.phase {
            // Already refusing: restart the timeout under the new reason; it did not open again.
            st.reason = Some(reason.to_owned());
            self.set_phase(
                c,
                &mut st,
                Phase::Open {
                    until: now.saturating_add(self.open_nanos),
                },
            );
            None
        } else {
            let (_, rate) = self.window(&st, now);
            Some(self.open(c, &mut st, now, rate, reason))
        };
        drop(st);
        self.log(c, event);
    }

    /// Current state of `c`, noticing an elapsed open timeout (open → half-open) on the way.
    fn state_of(&self, c: &KeyCircuit, now: u64) -> (CircuitState, Option<Event>) {
        let mut st = c.state.lock();
        match st.phase {
            Phase::Closed => (CircuitState::Closed, None),
            Phase::Open { until } if until > now => (CircuitState::Open, None),
            Phase::Open { .. } => {
                self.set_phase(c, &mut st, Phase::HalfOpen { probe_until: None });
                (CircuitState::HalfOpen, Some(Event::HalfOpen))
            }
            Phase::HalfOpen { .. } => (CircuitState::HalfOpen, None),
        }
    }

    /// The status of `c` for snapshots.
    pub(crate) fn status_of(&self, c: &KeyCircuit) -> CircuitStatus {
        let now = self.now();
        let (state, event) = self.state_of(c, now);
        self.log(c, event);
        let st = c.state.lock();
        let (calls, rate) = self.window(&st, now);
        CircuitStatus {
            state,
            failure_rate: if state == CircuitState::Closed {
                rate
            } else {
                st.opened_rate
            },
            calls_in_window: calls,
            reason: if state == CircuitState::Closed {
                None
            } else {
                st.reason.clone()
            },
            times_opened: st.times_opened,
        }
    }

    fn refusal(&self, c: &KeyCircuit, retry_in: u64) -> CircuitOpen {
        CircuitOpen {
            key: c.key.to_string(),
            retry_in: Duration::from_nanos(retry_in),
        }
    }

    fn set_phase(&self, c: &KeyCircuit, st: &mut KeyState, phase: Phase) {
        st.phase = phase;
        let (tag, blocked) = match phase {
            Phase::Closed => (CLOSED, 0),
            Phase::Open { until } => (OPEN, until),
            Phase::HalfOpen { probe_until } => (HALF_OPEN, probe_until.unwrap_or(0)),
        };
        // Blocked instant first: a reader seeing the new phase also sees its instant.
        c.blocked_until.store(blocked, Ordering::Release);
        c.phase.store(tag, Ordering::Release);
    }

    fn open(&self, c: &KeyCircuit, st: &mut KeyState, now: u64, rate: f64, reason: &str) -> Event {
        st.times_opened += 1;
        st.opened_rate = rate;
        st.reason = Some(reason.to_owned());
        self.set_phase(
            c,
            st,
            Phase::Open {
                until: now.saturating_add(self.open_nanos),
            },
        );
        Event::Opened {
            rate,
            reason: reason.to_owned(),
        }
    }

    fn add(&self, st: &mut KeyState, now: u64, outcome: Outcome) {
        let epoch = now / self.bucket_nanos;
        let b = &mut st.buckets[(epoch % BUCKETS as u64) as usize];
        if b.epoch != epoch {
            *b = Bucket {
                epoch,
                calls: 0,
                failures: 0,
            };
        }
        b.calls = b.calls.saturating_add(1);
        if outcome == Outcome::Failure {
            b.failures = b.failures.saturating_add(1);
        }
    }

    /// Calls and failure rate over the window ending now.
    fn window(&self, st: &KeyState, now: u64) -> (u32, f64) {
        let epoch = now / self.bucket_nanos;
        let (mut calls, mut failures) = (0u32, 0u32);
        for b in &st.buckets {
            if b.epoch <= epoch && b.epoch + BUCKETS as u64 > epoch {
                calls = calls.saturating_add(b.calls);
                failures = failures.saturating_add(b.failures);
            }
        }
        let rate = if calls == 0 {
            0.0
        } else {
            f64::from(failures) / f64::from(calls)
        };
        (calls, rate)
    }

    fn log(&self, c: &KeyCircuit, event: Option<Event>) {
        let key = &*c.key;
        match event {
            None => {}
            Some(Event::Opened { rate, reason }) => {
                let failure_rate = rate;
                let reason = reason.as_str();
                warn!(worker = %key, failure_rate, reason, "circuit opened");
            }
            Some(Event::HalfOpen) => info!(worker = %key, "circuit half-open"),
            Some(Event::Closed) => info!(worker = %key, "circuit closed"),
            Some(Event::ProbeExpired) => {
                debug!(worker = %key, "half-open probe never reported; letting another probe through")
            }
        }
    }
}

impl CircuitBreaker for KeyedBreaker {
    fn try_acquire(&self, key: &str) -> Result<(), CircuitOpen> {
        self.with_known(key, |c| self.acquire(c)).unwrap_or(Ok(()))
    }

    fn record(&self, key: &str, outcome: Outcome) {
        self.with_circuit(key, |c| self.record_on(c, outcome));
    }

    fn trip(&self, key: &str, reason: &str) {
        self.with_circuit(key, |c| self.trip_on(c, reason));
    }

    fn state(&self, key: &str) -> CircuitState {
        self.with_known(key, |c| {
            let (state, event) = self.state_of(c, self.now());
            self.log(c, event);
            state
        })
        .unwrap_or(CircuitState::Closed)
    }

    fn snapshot(&self) -> Vec<(String, CircuitStatus)> {
        let circuits: Vec<Arc<KeyCircuit>> = self.keys.read().values().cloned().collect();
        let mut out: Vec<(String, CircuitStatus)> = circuits
            .iter()
            .map(|c| (c.key.to_string(), self.status_of(c)))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hybridgrid_core::clock::ManualClock;

    fn breaker(clock: &ManualClock) -> KeyedBreaker {
        KeyedBreaker::new(BreakerConfig::default(), Arc::new(clock.clone())).unwrap()
    }

    #[test]
    fn config_defaults_and_yaml() {
        let cfg: BreakerConfig =
            serde_json::from_str(r#"{"window":"2m","open_timeout":"45s"}"#).unwrap();
        assert_eq!(cfg.window, Duration::from_secs(120));
        assert_eq!(cfg.open_timeout, Duration::from_secs(45));
        assert_eq!(cfg.min_calls, 5);
        assert_eq!(cfg.failure_rate_threshold, 0.5);
        let err = serde_json::from_str::<BreakerConfig>(r#"{"windw":"2m"}"#).unwrap_err();
        assert!(err.to_string().contains("windw"), "{err}");
        let round = serde_json::to_value(BreakerConfig::default()).unwrap();
        assert_eq!(round["window"], "1m");
        assert_eq!(round["open_timeout"], "30s");
    }

    #[test]
    fn invalid_config_names_the_field() {
        let clock: Arc<dyn Clock> = Arc::new(ManualClock::new());
        for (cfg, field) in [
            (
                BreakerConfig {
                    failure_rate_threshold: 0.0,
                    ..Default::default()
                },
                "failure_rate_threshold",
            ),
            (
                BreakerConfig {
                    failure_rate_threshold: 1.5,
                    ..Default::default()
                },
                "failure_rate_threshold",
            ),
            (
                BreakerConfig {
                    window: Duration::ZERO,
                    ..Default::default()
                },
                "window",
            ),
            (
                BreakerConfig {
                    open_timeout: Duration::ZERO,
                    ..Default::default()
                },
                "open_timeout",
            ),
        ] {
            let err = KeyedBreaker::new(cfg, clock.clone()).unwrap_err();
            assert_eq!(err.field, field);
        }
    }

    #[test]
    fn success_recorded_while_reaching_min_calls_can_open() {
        // F F F S S: the fifth call is a success, but 3/5 = 0.6 ≥ 0.5 with 5 calls.
        let clock = ManualClock::new();
        let b = breaker(&clock);
        for o in [
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Failure,
            Outcome::Success,
        ] {
            b.record("w", o);
        }
        assert_eq!(b.state("w"), CircuitState::Closed);
        b.record("w", Outcome::Success);
        assert_eq!(b.state("w"), CircuitState::Open);
    }

    #[test]
    fn late_outcomes_while_open_are_ignored() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        b.trip("w", "output_mismatch");
        b.record("w", Outcome::Success);
        assert_eq!(b.state("w"), CircuitState::Open);
        clock.advance(Duration::from_secs(30));
        // Half-open with no probe out: a late outcome does not decide.
        assert_eq!(b.state("w"), CircuitState::HalfOpen);
        b.record("w", Outcome::Success);
        assert_eq!(b.state("w"), CircuitState::HalfOpen);
        assert!(b.try_acquire("w").is_ok());
        b.record("w", Outcome::Success);
        assert_eq!(b.state("w"), CircuitState::Closed);
    }

    #[test]
    fn retrip_while_open_restarts_timeout_without_counting() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        b.trip("w", "failure_rate");
        clock.advance(Duration::from_secs(20));
        b.trip("w", "output_mismatch");
        let err = b.try_acquire("w").unwrap_err();
        assert_eq!(err.retry_in, Duration::from_secs(30));
        let snap = b.snapshot();
        assert_eq!(snap[0].1.times_opened, 1);
        assert_eq!(snap[0].1.reason.as_deref(), Some("output_mismatch"));
    }

    #[test]
    fn hint_tracks_phase() {
        let clock = ManualClock::new();
        let b = breaker(&clock);
        let c = b.circuit("w");
        assert_eq!(b.hint(&c, &mut None), Hint::Closed);
        b.trip("w", "x");
        assert_eq!(b.hint(&c, &mut None), Hint::Blocked);
        clock.advance(Duration::from_secs(30));
        assert_eq!(b.hint(&c, &mut None), Hint::Probe);
        b.acquire(&c).unwrap();
        assert_eq!(b.hint(&c, &mut None), Hint::Blocked);
    }
}
