//! The coordinator's Prometheus metrics (`hybridgrid_*`).

use hybridgrid_transport::counts::Counts;
use hybridgrid_transport::serve::{Labels, duration_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Coordinator metrics.
pub struct CoordinatorMetrics {
    /// Compile requests finished, by `result` (`remote`, `fallback`).
    pub tasks: Family<Labels, Counter>,
    /// `tasks{result="remote"}`, resolved once (no label allocation per task).
    pub tasks_remote: Counter,
    /// `tasks{result="fallback"}`, resolved once.
    pub tasks_fallback: Counter,
    /// Fallbacks to local compilation, by `fallback_reason`: the coordinator's own advice plus
    /// those clients reported (the one count behind `/metrics` and `/api/stats`).
    pub fallbacks: Counts,
    /// Compile-cache events reported by clients, by `event` (`hit_local`, `hit_shared`, `miss`,
    /// `evictions`, `corrupt`).
    pub client_cache: Counts,
    /// Compiles clients ran on their own cores by choice (no farm slot free at once).
    pub local_by_choice: Counter,
    /// Attempts that failed on a worker, by `worker` and `kind`.
    pub worker_failures: Family<Labels, Counter>,
    /// Sampled remote results that a client's local recompile contradicted, by `worker`.
    pub verify_mismatches: Counts,
    /// Tasks in flight across the farm.
    pub in_flight: Gauge,
    /// Requests waiting for admission.
    pub queue_depth: Gauge,
    /// Known workers, by `state` (`up`, `down`).
    pub workers: Family<Labels, Gauge>,
    /// Circuit state per worker: 0 closed, 1 half-open, 2 open.
    pub circuit_state: Family<Labels, Gauge>,
    /// Free slots on healthy workers.
    pub free_slots: Gauge,
    /// Time from request arrival to placement.
    pub schedule_seconds: Histogram,
    /// Remote task wall time, end to end.
    pub task_seconds: Histogram,
}

impl CoordinatorMetrics {
    /// Registers the coordinator metrics in a new registry.
    pub fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut r = Registry::with_prefix("hybridgrid");
        let tasks = Family::<Labels, Counter>::default();
        let tasks_remote = tasks
            .get_or_create(&vec![("result", "remote".to_owned())])
            .clone();
        let tasks_fallback = tasks
            .get_or_create(&vec![("result", "fallback".to_owned())])
            .clone();
        let m = Self {
            tasks,
            tasks_remote,
            tasks_fallback,
            fallbacks: Counts::new(
                "fallbacks",
                "Local fallbacks, by fallback_reason",
                "fallback_reason",
            ),
            client_cache: Counts::new(
                "client_cache_events",
                "Compile-cache events reported by hgbuild clients, by event",
                "event",
            ),
            local_by_choice: Counter::default(),
            worker_failures: Family::default(),
            verify_mismatches: Counts::new(
                "verify_mismatches",
                "Remote results contradicted by a local recompile, by worker",
                "worker",
            ),
            in_flight: Gauge::default(),
            queue_depth: Gauge::default(),
            workers: Family::default(),
            circuit_state: Family::default(),
            free_slots: Gauge::default(),
            schedule_seconds: Histogram::new([
                0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0,
            ]),
            task_seconds: duration_histogram(),
        };
        r.register(
            "tasks",
            "Compile requests finished, by result",
            m.tasks.clone(),
        );
        r.register_collector(Box::new(m.fallbacks.clone()));
        r.register_collector(Box::new(m.client_cache.clone()));
        r.register(
            "client_local_by_choice",
            "Compiles hgbuild clients ran on their own cores by choice (no farm slot free at once)",
            m.local_by_choice.clone(),
        );
        r.register(
            "worker_failures",
            "Failed attempts on workers, by worker and kind",
            m.worker_failures.clone(),
        );
        r.register_collector(Box::new(m.verify_mismatches.clone()));
        r.register(
            "tasks_in_flight",
            "Tasks in flight across the farm",
            m.in_flight.clone(),
        );
        r.register(
            "queue_depth",
            "Requests waiting for admission",
            m.queue_depth.clone(),
        );
        r.register("workers", "Known workers by state", m.workers.clone());
        r.register(
            "circuit_state",
            "Circuit state per worker (0 closed, 1 half-open, 2 open)",
            m.circuit_state.clone(),
        );
        r.register(
            "free_slots",
            "Free slots on healthy workers",
            m.free_slots.clone(),
        );
        r.register(
            "schedule_latency_seconds",
            "Time from request to placement",
            m.schedule_seconds.clone(),
        );
        r.register(
            "task_duration_seconds",
            "Remote compile wall time",
            m.task_seconds.clone(),
        );
        (Arc::new(m), Arc::new(r))
    }
}
