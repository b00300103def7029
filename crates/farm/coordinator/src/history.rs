//! What the dashboard and `doctor` show over time: a ring of load samples (tasks in flight,
//! slots, queue) and each worker's last failures with their kind and message.

use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How often a load sample is taken.
pub(crate) const SAMPLE_EVERY: Duration = Duration::from_secs(2);
/// Samples kept: ten minutes at [`SAMPLE_EVERY`].
const SAMPLES_KEPT: usize = 300;
/// Failures kept per worker.
const FAILURES_KEPT: usize = 5;
/// Workers whose failures are kept (bounded against churn of ids).
const WORKERS_KEPT: usize = 4096;

/// One load sample.
#[derive(Clone, Debug, Serialize)]
pub struct Sample {
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
    /// The most tasks on workers at once since the previous sample (a build shorter than
    /// [`SAMPLE_EVERY`] still shows).
    pub in_flight: u64,
    /// Slots on workers that are up and not open.
    pub total_slots: u64,
    /// Free slots on those.
    pub free_slots: u64,
    /// Requests waiting for a slot.
    pub queue_depth: u64,
    /// Workers up.
    pub workers_up: u64,
}

/// One failure of a task on a worker.
#[derive(Clone, Debug, Serialize)]
pub struct FailureView {
    /// Its kind (`timeout`, `unreachable`, `output_mismatch`, ...).
    pub kind: String,
    /// What the worker or the transport said.
    pub message: String,
    /// Seconds ago.
    pub secs_ago: u64,
}

struct Failure {
    kind: String,
    message: String,
    at: Instant,
}

/// The coordinator's recent history.
#[derive(Default)]
pub(crate) struct History {
    samples: Mutex<VecDeque<Sample>>,
    failures: Mutex<HashMap<String, VecDeque<Failure>>>,
    kinds: Mutex<BTreeMap<String, u64>>,
    /// Peak of tasks in flight since the last sample.
    peak: AtomicU64,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl History {
    /// Notes that `n` tasks are in flight now (for the next sample's peak).
    pub(crate) fn note_in_flight(&self, n: u64) {
        self.peak.fetch_max(n, Ordering::Relaxed);
    }

    /// Adds a sample (its `in_flight` raised to the peak noted since the previous one), dropping
    /// the oldest beyond ten minutes.
    pub(crate) fn sample(&self, mut s: Sample) {
        s.at_ms = now_ms();
        s.in_flight = s.in_flight.max(self.peak.swap(0, Ordering::Relaxed));
        let mut q = self.samples.lock();
        if q.len() >= SAMPLES_KEPT {
            q.pop_front();
        }
        q.push_back(s);
    }

    /// The samples, oldest first.
    pub(crate) fn samples(&self) -> Vec<Sample> {
        self.samples.lock().iter().cloned().collect()
    }

    /// Records a task's failure of `kind` on `worker` (counted by kind).
    pub(crate) fn failure(&self, worker: &str, kind: &str, message: &str) {
        *self.kinds.lock().entry(kind.to_owned()).or_default() += 1;
        self.event(worker, kind, message);
    }

    /// Records something that went wrong with `worker` (not counted as a task failure).
    pub(crate) fn event(&self, worker: &str, kind: &str, message: &str) {
        let mut f = self.failures.lock();
        if !f.contains_key(worker) && f.len() >= WORKERS_KEPT {
            return;
        }
        let q = f.entry(worker.to_owned()).or_default();
        if q.len() >= FAILURES_KEPT {
            q.pop_front();
        }
        q.push_back(Failure {
            kind: kind.to_owned(),
            message: message.chars().take(300).collect(),
            at: Instant::now(),
        });
    }

    /// `worker`'s last failures, oldest first.
    pub(crate) fn failures_of(&self, worker: &str) -> Vec<FailureView> {
        self.failures
            .lock()
            .get(worker)
            .map(|q| {
                q.iter()
                    .map(|f| FailureView {
                        kind: f.kind.clone(),
                        message: f.message.clone(),
                        secs_ago: f.at.elapsed().as_secs(),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Failures by kind since start.
    pub(crate) fn kinds(&self) -> BTreeMap<String, u64> {
        self.kinds.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rings_are_bounded() {
        let h = History::default();
        for i in 0..(SAMPLES_KEPT + 10) {
            h.sample(Sample {
                at_ms: 0,
                in_flight: i as u64,
                total_slots: 4,
                free_slots: 4,
                queue_depth: 0,
                workers_up: 1,
            });
        }
        let s = h.samples();
        assert_eq!(s.len(), SAMPLES_KEPT);
        assert_eq!(s[0].in_flight, 10);
        for i in 0..8 {
            h.failure("w1", "timeout", &format!("no answer {i}"));
        }
        let f = h.failures_of("w1");
        assert_eq!(f.len(), FAILURES_KEPT);
        assert_eq!(f.last().unwrap().message, "no answer 7");
        assert_eq!(h.kinds()["timeout"], 8);
    }

    #[test]
    fn a_sample_shows_the_peak_since_the_previous_one() {
        let h = History::default();
        let idle = || Sample {
            at_ms: 0,
            in_flight: 0,
            total_slots: 4,
            free_slots: 4,
            queue_depth: 0,
            workers_up: 1,
        };
        h.note_in_flight(3);
        h.note_in_flight(1);
        h.sample(idle());
        h.sample(idle());
        let s = h.samples();
        assert_eq!((s[0].in_flight, s[1].in_flight), (3, 0));
    }
}
