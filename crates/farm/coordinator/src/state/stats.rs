//! Live figures: `/api/stats`, the dashboard's load samples and the gauges `/metrics` shows.

use super::{CoordinatorState, Liveness};
use crate::history::{FailureView, Sample};

use hybridgrid_core::{
    CircuitBreaker, CircuitState, CircuitStatus, DiscoverySource, PROTOCOL_VERSION, WorkerId,
};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;

/// What `/api/stats` returns.
#[derive(Debug, Serialize)]
pub struct Stats {
    /// This coordinator's id (changes on restart).
    pub coordinator_id: String,
    /// Protocol version spoken.
    pub protocol_version: u32,
    /// Seconds since start.
    pub uptime_secs: u64,
    /// Every worker ever seen since start.
    pub workers: Vec<WorkerView>,
    /// Remote tasks that returned a result (including compile errors in user code).
    pub tasks_done: u64,
    /// Of those, how many were compile errors in user code.
    pub tasks_compile_errors: u64,
    /// Requests the farm could not run (the client compiled locally).
    pub tasks_failed: u64,
    /// Tasks on workers now.
    pub tasks_in_flight: u64,
    /// The most tasks on workers at once since start.
    pub peak_in_flight: u64,
    /// Requests waiting for a slot.
    pub queue_depth: u64,
    /// Local fallbacks by reason: the coordinator's own advice plus those clients reported.
    pub fallbacks: BTreeMap<String, u64>,
    /// Remote results contradicted by a client's local recompile, by worker.
    pub verify_mismatches: BTreeMap<String, u64>,
    /// Compile-cache events reported by clients (`hit_local`, `hit_shared`, `miss`, `evictions`,
    /// `corrupt`); the hit rate is `(hit_local + hit_shared) / (hits + miss)`.
    pub client_cache: BTreeMap<String, u64>,
    /// Compiles clients reported running on their own cores by choice (not fallbacks).
    pub local_by_choice: u64,
    /// Slots on workers that are up and not open.
    pub total_slots: u64,
    /// Free slots on those.
    pub free_slots: u64,
    /// Infrastructure failures on workers by kind since start (`timeout`, `unreachable`, ...).
    pub worker_failures: BTreeMap<String, u64>,
    /// Load over the last ten minutes, one sample every two seconds, oldest first.
    pub history: Vec<Sample>,
}

/// One worker in `/api/stats`.
#[derive(Debug, Serialize)]
pub struct WorkerView {
    /// Id.
    pub id: WorkerId,
    /// gRPC address.
    pub addr: String,
    /// How it became known.
    pub source: DiscoverySource,
    /// `up` or `down`.
    pub state: &'static str,
    /// Architecture.
    pub arch: String,
    /// Toolchains offered (`name version target`).
    pub toolchains: Vec<String>,
    /// Slots.
    pub slots: u32,
    /// Tasks on it now.
    pub in_flight: u32,
    /// Tasks it completed.
    pub done: u64,
    /// Infrastructure failures on it.
    pub failed: u64,
    /// Circuit.
    pub circuit: CircuitStatus,
    /// Moving average task time.
    pub ewma_ms: Option<f64>,
    /// Its last failures (kind and message), oldest first.
    pub last_failures: Vec<FailureView>,
}

impl CoordinatorState {
    /// Live figures for `/api/stats`, the dashboard and `/metrics`.
    pub fn stats(&self) -> Stats {
        let reg: HashMap<WorkerId, hybridgrid_scheduler::WorkerStats> = self
            .registry
            .snapshot()
            .into_iter()
            .map(|w| (w.id.clone(), w))
            .collect();
        let circuits: HashMap<String, CircuitStatus> =
            self.breaker.snapshot().into_iter().collect();
        let workers = self.workers.lock();
        let mut views: Vec<WorkerView> = workers
            .values()
            .map(|k| {
                let r = reg.get(&k.info.id).or(k.history.as_ref());
                // The breaker's own snapshot is live for every key, down workers included.
                let circuit = circuits
                    .get(k.info.id.as_str())
                    .cloned()
                    .or_else(|| r.map(|r| r.circuit.clone()))
                    .unwrap_or(CircuitStatus {
                        state: CircuitState::Closed,
                        failure_rate: 0.0,
                        calls_in_window: 0,
                        reason: None,
                        times_opened: 0,
                    });
                WorkerView {
                    id: k.info.id.clone(),
                    addr: k.info.addr.clone(),
                    source: k.info.source,
                    state: match k.liveness {
                        Liveness::Up => "up",
                        Liveness::Down => "down",
                    },
                    arch: k.info.capabilities.arch.clone(),
                    toolchains: k
                        .info
                        .capabilities
                        .toolchains
                        .iter()
                        .map(|t| format!("{} {} {}", t.name, t.version, t.target))
                        .collect(),
                    slots: k.info.capabilities.slots,
                    in_flight: r.map_or(0, |r| r.in_flight),
                    done: r.map_or(0, |r| r.done),
                    failed: r.map_or(0, |r| r.failed),
                    circuit,
                    ewma_ms: r.and_then(|r| r.ewma_ms),
                    last_failures: self.history.failures_of(k.info.id.as_str()),
                }
            })
            .collect();
        drop(workers);
        views.sort_by(|a, b| a.id.cmp(&b.id));
        let Capacity {
            total_slots,
            free_slots,
            ..
        } = self.capacity();
        Stats {
            coordinator_id: self.id.clone(),
            protocol_version: PROTOCOL_VERSION,
            uptime_secs: self.started.elapsed().as_secs(),
            tasks_in_flight: views.iter().map(|w| u64::from(w.in_flight)).sum(),
            workers: views,
            tasks_done: self.done.load(Ordering::Relaxed),
            tasks_compile_errors: self.compile_errors.load(Ordering::Relaxed),
            tasks_failed: self.metrics.fallbacks.total(),
            queue_depth: self.metrics.queue_depth.get().max(0) as u64,
            peak_in_flight: self.peak_in_flight.load(Ordering::Relaxed),
            fallbacks: self.metrics.fallbacks.snapshot(),
            verify_mismatches: self.metrics.verify_mismatches.snapshot(),
            client_cache: self.metrics.client_cache.snapshot(),
            local_by_choice: self.metrics.local_by_choice.get(),
            total_slots,
            free_slots,
            worker_failures: self.history.kinds(),
            history: self.history.samples(),
        }
    }

    /// Takes one load sample for the dashboard's chart (every [`crate::history::SAMPLE_EVERY`]).
    pub(crate) fn sample_load(&self) {
        let Capacity {
            total_slots,
            free_slots,
            ..
        } = self.capacity();
        let in_flight: u64 = self
            .registry
            .snapshot()
            .iter()
            .map(|w| u64::from(w.in_flight))
            .sum();
        let workers_up = self
            .workers
            .lock()
            .values()
            .filter(|k| k.liveness == Liveness::Up)
            .count() as u64;
        self.history.sample(Sample {
            at_ms: 0,
            in_flight,
            total_slots,
            free_slots,
            queue_depth: self.metrics.queue_depth.get().max(0) as u64,
            workers_up,
        });
    }

    /// Slots and CPUs on workers that are up (in the registry) and whose circuit is not open.
    /// Cheap enough for `Hello`, which every compile sends.
    pub fn capacity(&self) -> Capacity {
        self.registry
            .snapshot()
            .iter()
            .filter(|w| w.circuit.state != CircuitState::Open)
            .fold(Capacity::default(), |c, w| Capacity {
                total_slots: c.total_slots + u64::from(w.slots),
                free_slots: c.free_slots + u64::from(w.slots.saturating_sub(w.in_flight)),
                total_cpus: c.total_cpus + u64::from(w.cpus),
                free_cpus: c.free_cpus + u64::from(w.cpus.saturating_sub(w.in_flight)),
            })
    }

    /// Refreshes gauges computed from live state; called before each `/metrics` scrape.
    pub fn refresh_metrics(&self) {
        let stats = self.stats();
        let (mut up, mut down) = (0, 0);
        for w in &stats.workers {
            if w.state == "up" {
                up += 1
            } else {
                down += 1
            }
            let v = match w.circuit.state {
                CircuitState::Closed => 0,
                CircuitState::HalfOpen => 1,
                CircuitState::Open => 2,
            };
            self.metrics
                .circuit_state
                .get_or_create(&vec![("worker", w.id.to_string())])
                .set(v);
        }
        self.metrics
            .workers
            .get_or_create(&vec![("state", "up".to_owned())])
            .set(up);
        self.metrics
            .workers
            .get_or_create(&vec![("state", "down".to_owned())])
            .set(down);
        self.metrics.free_slots.set(stats.free_slots as i64);
    }
}

/// The farm's capacity now, for `Hello`: slots and CPUs in all, and those no task holds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Capacity {
    /// Slots in all.
    pub total_slots: u64,
    /// Slots no task holds.
    pub free_slots: u64,
    /// CPUs in all.
    pub total_cpus: u64,
    /// CPUs no task holds (per worker, `cpus - in_flight` floored at 0).
    pub free_cpus: u64,
}
