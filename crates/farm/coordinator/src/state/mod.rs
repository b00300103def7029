//! The coordinator: admits compile requests, places each on a worker with a free slot and a matching
//! toolchain, retries on another worker when one fails, keeps a circuit breaker per worker, and
//! tells the client to compile locally (with a reason) when the farm cannot take the task.

use crate::history::History;
use crate::metrics::CoordinatorMetrics;
use crate::peers::{MismatchGuard, Security};
use hybridgrid_farm_protocol::config::CoordinatorConfig;

use hybridgrid_core::{CircuitBreaker, WorkerId, WorkerInfo};
use hybridgrid_scheduler::{KeyedBreaker, Registry};
use hybridgrid_transport::execute_link::ExecuteLink;
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;

mod compile;
mod rooted;
mod stats;
mod workers;

pub use stats::{Stats, WorkerView};

/// Fallback reasons only a client can see (the coordinator counts its own advice itself).
pub(crate) const CLIENT_FALLBACK_REASONS: &[&str] = &[
    "coordinator_unreachable",
    "auth_refused",
    "coordinator_error",
    "protocol_mismatch",
    "worker_output_missing",
    "output_write_failed",
    "client_error",
];
/// Cache events clients report.
pub(crate) const CLIENT_CACHE_EVENTS: &[&str] =
    &["hit_local", "hit_shared", "miss", "evictions", "corrupt"];

/// Largest count one client report may add to a counter (a build of a million compiles).
const MAX_REPORTED_PER_CALL: u64 = 1_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Liveness {
    Up,
    Down,
}

struct Known {
    info: WorkerInfo,
    /// How tasks reach it: one long-lived `ExecuteStream`, or unary calls to an older worker.
    link: Arc<ExecuteLink>,
    last_seen: Instant,
    liveness: Liveness,
    /// The worker's lease on its placements: cancelled when it is marked down (missed heartbeats,
    /// discovery said gone), which fails its in-flight calls at once so their tasks are placed again.
    lease: CancellationToken,
    /// Its counters when it was marked down, so the dashboard keeps its history.
    history: Option<hybridgrid_scheduler::WorkerStats>,
    /// When it was marked down (it is forgotten `prune_after` later).
    down_since: Option<Instant>,
}

/// Shared state of one coordinator.
pub struct CoordinatorState {
    id: String,
    config: CoordinatorConfig,
    registry: Registry,
    breaker: Arc<KeyedBreaker>,
    workers: Mutex<HashMap<WorkerId, Known>>,
    admission: Semaphore,
    slot_freed: Notify,
    metrics: Arc<CoordinatorMetrics>,
    done: AtomicU64,
    compile_errors: AtomicU64,
    peak_in_flight: AtomicU64,
    started: Instant,
    /// Who may call what.
    pub(crate) security: Security,
    /// Mismatch reports: only for one's own recent results, rate-bounded.
    pub(crate) mismatches: MismatchGuard,
    /// Load samples and each worker's last failures.
    history: History,
}

impl CoordinatorState {
    /// A coordinator with no workers yet.
    pub(crate) fn new(
        config: CoordinatorConfig,
        breaker: Arc<KeyedBreaker>,
        metrics: Arc<CoordinatorMetrics>,
        security: Security,
    ) -> Arc<Self> {
        let admission = Semaphore::new(config.max_concurrent_tasks as usize);
        let mismatches = MismatchGuard::new(config.mismatch_reports_per_minute);
        Arc::new(Self {
            id: format!("coord-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]),
            registry: Registry::new(breaker.clone()),
            breaker,
            workers: Mutex::new(HashMap::new()),
            admission,
            slot_freed: Notify::new(),
            metrics,
            done: AtomicU64::new(0),
            compile_errors: AtomicU64::new(0),
            peak_in_flight: AtomicU64::new(0),
            started: Instant::now(),
            config,
            security,
            mismatches,
            history: History::default(),
        })
    }

    /// The coordinator's settings.
    pub fn config(&self) -> &CoordinatorConfig {
        &self.config
    }

    fn max_message_bytes(&self) -> usize {
        usize::try_from(self.config.max_message_bytes).unwrap_or(usize::MAX)
    }

    /// Whether `id` is registered (up or down).
    pub fn knows(&self, id: &WorkerId) -> bool {
        self.workers.lock().contains_key(id)
    }

    /// Records a heartbeat from `id`; false when it is not registered and up (register again).
    pub fn heartbeat(&self, id: &WorkerId) -> bool {
        match self.workers.lock().get_mut(id) {
            Some(k) if k.liveness == Liveness::Up => {
                k.last_seen = Instant::now();
                true
            }
            _ => false,
        }
    }

    /// Opens `id`'s circuit for `reason` and counts it.
    pub fn trip(&self, id: &WorkerId, reason: &str) {
        self.breaker.trip(id.as_str(), reason);
        self.metrics.verify_mismatches.add(id.as_str(), 1);
        self.history.failure(
            id.as_str(),
            reason,
            "a client's local recompile produced other bytes than this worker's result",
        );
    }

    /// Adds a client's reported counts (labels already checked).
    pub(crate) fn add_client_report(
        &self,
        fallbacks: std::collections::HashMap<String, u64>,
        cache: std::collections::HashMap<String, u64>,
        local_by_choice: u64,
    ) {
        // One build's report: bounded so a client cannot wrap the counter.
        self.metrics
            .local_by_choice
            .inc_by(local_by_choice.min(MAX_REPORTED_PER_CALL));
        for (reason, n) in fallbacks {
            self.metrics.fallbacks.add(&reason, n);
        }
        for (event, n) in cache {
            self.metrics.client_cache.add(&event, n);
        }
    }

    /// This coordinator's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}
