//! [`Backoff`]: exponential retry delays with jitter.

use serde::{Deserialize, Serialize};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exponential backoff with "equal jitter": attempt `n` waits a random time in
/// `[cap(n) / 2, cap(n)]`, where `cap(n) = min(max, base × factor^n)`.
///
/// ```yaml
/// backoff:
///   base: 100ms   # cap of the first retry (attempt 0)
///   max: 30s      # no delay is ever longer
///   factor: 2.0   # growth per attempt (≥ 1)
/// ```
///
/// ```
/// use hybridgrid_scheduler::Backoff;
/// use std::time::Duration;
/// let b = Backoff::default();
/// assert_eq!(b.cap(0), Duration::from_millis(100));
/// assert_eq!(b.cap(3), Duration::from_millis(800));
/// assert_eq!(b.cap(60), Duration::from_secs(30));
/// let d = b.delay(3);
/// assert!(d >= Duration::from_millis(400) && d <= Duration::from_millis(800));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Backoff {
    /// Cap of the first retry (default 100ms).
    #[serde(with = "crate::duration_serde")]
    pub base: Duration,
    /// Longest delay ever returned (default 30s).
    #[serde(with = "crate::duration_serde")]
    pub max: Duration,
    /// Growth per attempt; values below 1 (or NaN) are taken as 1 (default 2.0).
    pub factor: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(100),
            max: Duration::from_secs(30),
            factor: 2.0,
        }
    }
}

impl Backoff {
    /// The upper bound of attempt `attempt`'s delay (attempt 0 is the first retry):
    /// `min(max, base × factor^attempt)`. Never decreases as `attempt` grows.
    pub fn cap(&self, attempt: u32) -> Duration {
        let factor = if self.factor >= 1.0 { self.factor } else { 1.0 };
        let max = self.max.as_secs_f64();
        let grown = self.base.as_secs_f64() * factor.powi(attempt.min(i32::MAX as u32) as i32);
        if grown.is_finite() && grown < max {
            Duration::from_secs_f64(grown).min(self.max)
        } else {
            self.max
        }
    }

    /// A jittered delay for attempt `attempt`: uniform in `[cap / 2, cap]`, never above `max`.
    pub fn delay(&self, attempt: u32) -> Duration {
        self.delay_with(attempt, unit_random())
    }

    /// [`delay`](Self::delay) with the random draw supplied: `unit` in `[0, 1]` picks the point in
    /// `[cap / 2, cap]` (values outside are clamped). For deterministic callers and tests.
    pub fn delay_with(&self, attempt: u32, unit: f64) -> Duration {
        let cap = self.cap(attempt);
        let unit = if unit.is_nan() {
            0.0
        } else {
            unit.clamp(0.0, 1.0)
        };
        let half = cap / 2;
        (half + (cap - half).mul_f64(unit)).min(cap)
    }
}

/// A uniform draw in `[0, 1)`: SplitMix64 over a process-wide counter, seeded once from the wall
/// clock so that processes do not retry in lockstep. Jitter needs nothing stronger.
fn unit_random() -> f64 {
    const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;
    static SEED: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let seed = *SEED.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(GOLDEN, |d| d.as_nanos() as u64)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut z = seed.wrapping_add(n.wrapping_add(1).wrapping_mul(GOLDEN));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn backoff() -> impl Strategy<Value = Backoff> {
        (0u64..10_000_000_000, 0u64..100_000_000_000, 0.0f64..10.0).prop_map(
            |(base, max, factor)| Backoff {
                base: Duration::from_nanos(base),
                max: Duration::from_nanos(max),
                factor,
            },
        )
    }

    proptest! {
        #[test]
        fn cap_is_monotone_and_bounded(b in backoff(), attempt in 0u32..200) {
            prop_assert!(b.cap(attempt) <= b.cap(attempt + 1), "{:?} vs {:?}", b.cap(attempt), b.cap(attempt + 1));
            prop_assert!(b.cap(attempt) <= b.max);
        }

        #[test]
        fn delay_stays_within_half_cap_and_cap(b in backoff(), attempt in 0u32..200, unit in -1.0f64..2.0) {
            let cap = b.cap(attempt);
            for d in [b.delay_with(attempt, unit), b.delay(attempt)] {
                prop_assert!(d <= cap && d <= b.max, "{d:?} above cap {cap:?}");
                prop_assert!(d >= cap / 2, "{d:?} below half of {cap:?}");
            }
        }

        #[test]
        fn delay_with_is_monotone_in_attempt(b in backoff(), attempt in 0u32..200, unit in 0.0f64..=1.0) {
            prop_assert!(b.delay_with(attempt, unit) <= b.delay_with(attempt + 1, unit));
        }
    }

    #[test]
    fn huge_attempts_saturate_at_max() {
        let b = Backoff::default();
        assert_eq!(b.cap(u32::MAX), b.max);
        assert_eq!(b.delay_with(u32::MAX, 1.0), b.max);
    }

    #[test]
    fn draws_spread_over_the_unit_interval() {
        let draws: Vec<f64> = (0..1000).map(|_| unit_random()).collect();
        assert!(draws.iter().all(|u| (0.0..1.0).contains(u)));
        assert!(draws.iter().any(|u| *u < 0.25) && draws.iter().any(|u| *u > 0.75));
    }

    #[test]
    fn parses_human_durations() {
        let b: Backoff = serde_json::from_str(r#"{"base":"250ms","max":"1m","factor":3}"#).unwrap();
        assert_eq!(b.base, Duration::from_millis(250));
        assert_eq!(b.max, Duration::from_secs(60));
        assert_eq!(b.factor, 3.0);
    }
}
