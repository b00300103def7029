//! The worker's Prometheus metrics (`hybridgrid_worker_*`).

use hybridgrid_transport::serve::{Labels, duration_histogram};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::sync::Arc;

/// Worker metrics.
pub struct WorkerMetrics {
    /// Tasks finished, by `result` (`success`, `compile_error`, or a failure kind).
    pub(crate) tasks: Family<Labels, Counter>,
    /// Tasks running now.
    pub(crate) in_flight: Gauge,
    /// Slots configured.
    pub(crate) slots: Gauge,
    /// Task wall time.
    pub(crate) task_seconds: Histogram,
}

impl WorkerMetrics {
    /// Registers the worker metrics in a new registry.
    pub fn new() -> (Arc<Self>, Arc<Registry>) {
        let mut r = Registry::with_prefix("hybridgrid_worker");
        let m = Self {
            tasks: Family::default(),
            in_flight: Gauge::default(),
            slots: Gauge::default(),
            task_seconds: duration_histogram(),
        };
        r.register("tasks", "Tasks finished, by result", m.tasks.clone());
        r.register("tasks_in_flight", "Tasks running now", m.in_flight.clone());
        r.register("slots", "Concurrent task slots", m.slots.clone());
        r.register(
            "task_duration_seconds",
            "Task wall time",
            m.task_seconds.clone(),
        );
        (Arc::new(m), Arc::new(r))
    }
}
