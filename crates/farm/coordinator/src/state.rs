//! The coordinator: admits compile requests, places each on a worker with a free slot and a matching
//! toolchain, retries on another worker when one fails, keeps a circuit breaker per worker, and
//! tells the client to compile locally (with a reason) when the farm cannot take the task.

use crate::history::{FailureView, History, Sample};
use crate::metrics::CoordinatorMetrics;
use crate::peers::{Caller, MismatchGuard, Security};
use hybridgrid_farm_protocol::config::CoordinatorConfig;
use hybridgrid_farm_protocol::{PREPROCESSED_INPUT, parse_command};
use hybridgrid_transport::auth::sanitize;
use hybridgrid_transport::serve::GaugeGuard;
use hybridgrid_transport::tls::{Dial, Expect, Role};

use hybridgrid_core::{
    CircuitBreaker, CircuitState, CircuitStatus, DiscoverySource, Outcome, PROTOCOL_VERSION,
    Toolchain, WorkerEvent, WorkerId, WorkerInfo,
};
use hybridgrid_scheduler::{KeyedBreaker, NoPlacement, Placement, PlacementRequest, Registry};
use hybridgrid_transport::pb;
use hybridgrid_transport::{check_version, failure_kind_name};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tonic::transport::Channel;
use tracing::{info, warn};

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

/// Every `kind` label of `worker_failures`.
const FAILURE_KINDS: &[&str] = &[
    "unspecified",
    "deadline_exceeded",
    "cancelled",
    "spawn",
    "invalid_spec",
    "output_too_large",
    "work_dir",
    "backend",
    "toolchain_unavailable",
    "overloaded",
    "malformed_response",
    "unreachable",
    "timeout",
    "lost",
    "wrong_worker",
];

/// How long a request may wait for a free slot before the client is told to compile locally.
/// Largest count one client report may add to a counter (a build of a million compiles).
const MAX_REPORTED_PER_CALL: u64 = 1_000_000;
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Liveness {
    Up,
    Down,
}

struct Known {
    info: WorkerInfo,
    channel: Channel,
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

/// How a call to a worker ended without an answer.
enum CallEnd {
    Timeout,
    Lost,
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

fn fallback(reason: &str, detail: String) -> pb::CompileResponse {
    pb::CompileResponse {
        result: Some(pb::compile_response::Result::Fallback(pb::Fallback {
            reason: reason.to_owned(),
            detail,
        })),
    }
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

    /// A worker's own registration: refused while another live worker holds the same id at
    /// another address, unless TLS bound the id to the caller's certificate (then the holder of
    /// the key is that worker, e.g. restarted elsewhere).
    pub fn register_worker(&self, info: WorkerInfo) -> Result<(), Status> {
        if self.security.tls.is_none() {
            let workers = self.workers.lock();
            if let Some(k) = workers.get(&info.id)
                && k.liveness == Liveness::Up
                && k.info.addr != info.addr
                && k.last_seen.elapsed() <= *self.config.heartbeat_timeout
            {
                return Err(Status::already_exists(format!(
                    "worker id {:?} is registered from {} and still heartbeating; a second worker cannot take it over",
                    sanitize(info.id.as_str(), 128),
                    sanitize(&k.info.addr, 64)
                )));
            }
        }
        self.worker_up(info)
    }

    /// Checks what a worker announces: an id and address of sane size, slots within
    /// `coordinator.max_worker_slots`; toolchains without a binary hash are dropped (they would
    /// match nothing exactly).
    fn vet(&self, mut info: WorkerInfo) -> Result<WorkerInfo, Status> {
        let id = info.id.as_str();
        if id.len() > 128 || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(Status::invalid_argument(format!(
                "worker id {:?} must be at most 128 characters without spaces or control characters",
                sanitize(id, 128)
            )));
        }
        if info.addr.len() > 256 {
            return Err(Status::invalid_argument(
                "worker address longer than 256 bytes",
            ));
        }
        hybridgrid_farm_protocol::config::validate_host_port(&info.addr).map_err(|e| {
            Status::invalid_argument(format!("worker address: {}", sanitize(&e, 300)))
        })?;
        let max = self.config.max_worker_slots;
        if info.capabilities.slots > max {
            return Err(Status::invalid_argument(format!(
                "worker {} announces {} slots; this coordinator accepts at most {max} (coordinator.max_worker_slots)",
                sanitize(id, 128),
                info.capabilities.slots
            )));
        }
        let before = info.capabilities.toolchains.len();
        info.capabilities.toolchains.retain(|t| {
            !t.binary_hash.is_empty()
                && t.binary_hash.len() <= 128
                && t.name.len() <= 256
                && t.version.len() <= 256
                && t.target.len() <= 256
        });
        if info.capabilities.toolchains.len() != before {
            warn!(worker = %sanitize(id, 128), dropped = before - info.capabilities.toolchains.len(),
                  "toolchains without a binary hash (or with oversized fields) ignored");
        }
        if info.capabilities.toolchains.len() > 64 {
            return Err(Status::invalid_argument(
                "a worker may announce at most 64 toolchains",
            ));
        }
        for s in [&mut info.capabilities.arch, &mut info.capabilities.os] {
            *s = sanitize(s, 32);
        }
        Ok(info)
    }

    /// This coordinator's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds or refreshes a worker (from its registration or from discovery), after [`Self::vet`].
    pub fn worker_up(&self, info: WorkerInfo) -> Result<(), Status> {
        let info = self.vet(info)?;
        let how = Dial {
            tls: self.security.tls.clone(),
            insecure: self.security.insecure,
            expect: Some(Expect {
                role: Role::Worker,
                name: Some(info.id.to_string()),
            }),
            connect_timeout: Duration::from_secs(2),
            timeout: None,
            keep_alive: Some(Duration::from_secs(5)),
        };
        let channel = hybridgrid_transport::tls::dial_lazy(&info.addr, &how).map_err(|e| {
            Status::invalid_argument(format!("worker {}: {}", sanitize(info.id.as_str(), 128), e))
        })?;
        let mut workers = self.workers.lock();
        let fresh = match workers.get(&info.id) {
            Some(k) => k.liveness == Liveness::Down || k.info != info,
            None => true,
        };
        if fresh {
            info!(worker_id = %sanitize(info.id.as_str(), 128), arch = %info.capabilities.arch, slots = info.capabilities.slots,
                  addr = %sanitize(&info.addr, 64), source = %info.source, "worker registered");
        }
        let keep_lease = workers
            .get(&info.id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| k.lease.clone());
        let keep_channel = workers
            .get(&info.id)
            .filter(|k| k.info.addr == info.addr)
            .map(|k| k.channel.clone());
        workers.insert(
            info.id.clone(),
            Known {
                channel: keep_channel.unwrap_or(channel),
                info: info.clone(),
                last_seen: Instant::now(),
                liveness: Liveness::Up,
                lease: keep_lease.unwrap_or_default(),
                history: None,
                down_since: None,
            },
        );
        drop(workers);
        self.registry.upsert_worker(info);
        self.slot_freed.notify_waiters();
        Ok(())
    }

    /// Marks a worker down: no new tasks go to it; its in-flight calls fail and are placed again.
    pub fn worker_down(&self, id: &WorkerId, why: &str) {
        let last = self.registry.snapshot().into_iter().find(|w| &w.id == id);
        let mut workers = self.workers.lock();
        if let Some(k) = workers.get_mut(id)
            && k.liveness == Liveness::Up
        {
            k.liveness = Liveness::Down;
            k.lease.cancel();
            k.history = last;
            k.down_since = Some(Instant::now());
            warn!(worker = %sanitize(id.as_str(), 128), reason = why, "worker down");
            self.history.event(id.as_str(), "down", why);
        }
        drop(workers);
        self.registry.remove_worker(id);
    }

    /// Marks down every registered worker silent for longer than the heartbeat timeout.
    pub fn expire_silent_workers(&self) {
        let timeout = *self.config.heartbeat_timeout;
        let silent: Vec<WorkerId> = self
            .workers
            .lock()
            .values()
            .filter(|k| {
                k.liveness == Liveness::Up
                    && k.info.source == DiscoverySource::Registration
                    && k.last_seen.elapsed() > timeout
            })
            .map(|k| k.info.id.clone())
            .collect();
        for id in silent {
            self.worker_down(&id, "heartbeat timeout");
        }
        self.prune_down_workers();
    }

    /// Forgets workers down for longer than `coordinator.prune_after`, with their metric series
    /// and circuits, so ids that come and go cannot grow the coordinator's state without bound.
    pub fn prune_down_workers(&self) {
        let after = *self.config.prune_after;
        let gone: Vec<WorkerId> = {
            let mut workers = self.workers.lock();
            let gone: Vec<WorkerId> = workers
                .values()
                .filter(|k| k.down_since.is_some_and(|t| t.elapsed() >= after))
                .map(|k| k.info.id.clone())
                .collect();
            for id in &gone {
                workers.remove(id);
            }
            gone
        };
        for id in gone {
            let label = id.to_string();
            self.metrics
                .circuit_state
                .remove(&vec![("worker", label.clone())]);
            for kind in FAILURE_KINDS {
                self.metrics.worker_failures.remove(&vec![
                    ("worker", label.clone()),
                    ("kind", (*kind).to_owned()),
                ]);
            }
            self.metrics.verify_mismatches.remove(&label);
            self.breaker.forget(&label);
            info!(worker = %sanitize(&label, 128), "worker pruned after being down for coordinator.prune_after");
        }
    }

    /// Applies a discovery event.
    pub fn apply(&self, event: WorkerEvent) {
        match event {
            WorkerEvent::Up(info) => {
                if let Err(e) = self.worker_up(info) {
                    warn!(error = %sanitize(e.message(), 300), "discovered worker refused");
                }
            }
            WorkerEvent::Down(id) => self.worker_down(&id, "discovery reported it gone"),
        }
    }

    fn record_fallback(&self, reason: &str) {
        self.metrics.fallbacks.add(reason, 1);
        self.metrics
            .tasks
            .get_or_create(&vec![("result", "fallback".to_owned())])
            .inc();
    }

    /// Waits for a placement, up to [`MAX_QUEUE_WAIT`] while every matching worker is busy.
    async fn place(&self, req: &PlacementRequest) -> Result<Placement, NoPlacement> {
        let deadline = Instant::now() + MAX_QUEUE_WAIT;
        let mut queued: Option<GaugeGuard> = None;
        let result = loop {
            let notified = self.slot_freed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            match self.registry.place(req) {
                Ok(p) => break Ok(p),
                Err(NoPlacement::AllBusy) if Instant::now() < deadline => {
                    if queued.is_none() {
                        queued = Some(GaugeGuard::hold(&self.metrics.queue_depth).0);
                    }
                    // Also wake periodically: a circuit turning half-open frees capacity without a notification.
                    let _ = tokio::time::timeout(Duration::from_millis(250), notified).await;
                }
                Err(e) => break Err(e),
            }
        };
        drop(queued);
        result
    }

    fn channel_of(&self, id: &WorkerId) -> Option<(Channel, CancellationToken)> {
        self.workers
            .lock()
            .get(id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| (k.channel.clone(), k.lease.clone()))
    }

    /// Runs one compile request for `caller` to completion or fallback.
    pub(crate) async fn compile(
        &self,
        req: pb::CompileRequest,
        caller: &Caller,
    ) -> Result<pb::CompileResponse, Status> {
        check_version(req.protocol_version, "client")?;
        let toolchain: Toolchain = req
            .toolchain
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field toolchain"))?
            .into();
        let mut spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field spec"))?;
        // Validate once here so a malformed spec is refused before it reaches any worker.
        let asked = spec.validate()?;
        if toolchain.binary_hash.is_empty() {
            // An exact compile needs the exact binary: no hash matches nothing.
            self.record_fallback("no_matching_toolchain");
            return Ok(fallback(
                "no_matching_toolchain",
                "the request names a toolchain without a binary hash".into(),
            ));
        }
        // The coordinator's own verdict on the request: a worker refusing a request that passes
        // it (INVALID_SPEC) is failing, not the request.
        let distributable = matches!(
            parse_command(&spec.command),
            hybridgrid_compiler::Invocation::Distributable(_)
        ) && spec.inputs.iter().any(|f| f.path == PREPROCESSED_INPUT);
        if !distributable {
            self.record_fallback("rejected_by_coordinator");
            return Ok(fallback(
                "rejected_by_coordinator",
                "not a compile the farm runs exactly (the client should run it locally)".into(),
            ));
        }
        if spec.id.is_empty() || spec.id.len() > 64 {
            spec.id = hybridgrid_core::TaskId::random().to_string();
        }
        // Per-call deadline from the coordinator's own config, whatever the client asked.
        let task_timeout = asked.min(*self.config.task_timeout);
        spec.timeout_ms = u64::try_from(task_timeout.as_millis()).unwrap_or(u64::MAX);
        // The worker enforces the task's deadline itself; the call waits a little longer.
        let grace = (task_timeout / 10).clamp(Duration::from_millis(500), Duration::from_secs(10));
        let call_timeout = task_timeout.saturating_add(grace);
        let task_id = spec.id.clone();
        // Encoded once per attempt from this one copy: never cloned per worker tried.
        let request = Arc::new(pb::ExecuteRequest {
            protocol_version: PROTOCOL_VERSION,
            spec: Some(spec),
            toolchain: Some(toolchain.clone().into()),
        });
        let received = Instant::now();
        let Ok(_admitted) = tokio::time::timeout(MAX_QUEUE_WAIT, self.admission.acquire())
            .await
            .map_err(|_| ())
            .and_then(|r| r.map_err(|_| ()))
        else {
            self.record_fallback("admission_full");
            return Ok(fallback(
                "admission_full",
                format!(
                    "coordinator.max_concurrent_tasks={} reached",
                    self.config.max_concurrent_tasks
                ),
            ));
        };
        let mut placement_req = PlacementRequest {
            toolchain: Some(toolchain.clone()),
            ..Default::default()
        };
        let mut last_error = String::new();
        for attempt in 1..=self.config.max_attempts.max(1) {
            let placement = match self.place(&placement_req).await {
                Ok(p) => p,
                Err(NoPlacement::AllExcluded) => break,
                Err(reason) => {
                    self.record_fallback(reason.as_str());
                    return Ok(fallback(
                        reason.as_str(),
                        format!(
                            "{reason} (toolchain {} {} {})",
                            toolchain.name, toolchain.version, toolchain.target
                        ),
                    ));
                }
            };
            if attempt == 1 {
                self.metrics
                    .schedule_seconds
                    .observe(received.elapsed().as_secs_f64());
            }
            let worker = placement.worker_id().clone();
            let Some((channel, lease)) = self.channel_of(&worker) else {
                drop(placement);
                placement_req.exclude.push(worker);
                continue;
            };
            let (in_flight, now) = GaugeGuard::hold(&self.metrics.in_flight);
            self.peak_in_flight
                .fetch_max(now.max(0) as u64, Ordering::Relaxed);
            self.history.note_in_flight(now.max(0) as u64);
            let started = Instant::now();
            let call = hybridgrid_transport::shared::execute_shared(
                channel,
                request.clone(),
                call_timeout,
                self.max_message_bytes(),
            );
            let result = tokio::select! {
                r = tokio::time::timeout(call_timeout, call) => r.map_err(|_| CallEnd::Timeout),
                _ = lease.cancelled() => Err(CallEnd::Lost),
            };
            drop(in_flight);
            let elapsed = started.elapsed();
            use pb::execute_response::Result as R;
            use pb::task_failure::Kind;
            let failure_kind: &str = match result {
                Ok(Ok(resp)) if resp.worker_id != worker.as_str() => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = format!(
                        "worker {} answered as {:?}",
                        sanitize(worker.as_str(), 128),
                        sanitize(&resp.worker_id, 128)
                    );
                    "wrong_worker"
                }
                Ok(Ok(resp)) => match resp.result {
                    Some(R::Output(out)) => {
                        placement.complete(Outcome::Success, elapsed);
                        self.slot_freed.notify_one();
                        self.done.fetch_add(1, Ordering::Relaxed);
                        if out.exit_code != 0 {
                            self.compile_errors.fetch_add(1, Ordering::Relaxed);
                        }
                        self.metrics
                            .tasks
                            .get_or_create(&vec![("result", "remote".to_owned())])
                            .inc();
                        self.metrics.task_seconds.observe(elapsed.as_secs_f64());
                        self.mismatches.served(&task_id, &worker, caller);
                        return Ok(pb::CompileResponse {
                            result: Some(pb::compile_response::Result::Completed(pb::Completed {
                                output: Some(out),
                                worker_id: worker.to_string(),
                                attempts: attempt,
                            })),
                        });
                    }
                    Some(R::Failure(f)) => {
                        let kind = Kind::try_from(f.kind).unwrap_or(Kind::Unspecified);
                        last_error = sanitize(&f.message, 512);
                        match kind {
                            // The output is over the limits the request itself set.
                            Kind::OutputTooLarge => {
                                placement.complete(Outcome::Success, elapsed);
                                self.slot_freed.notify_one();
                                self.record_fallback("rejected_by_worker");
                                return Ok(fallback("rejected_by_worker", last_error));
                            }
                            // Busy is not sickness: free the slot without a verdict.
                            Kind::Overloaded => drop(placement),
                            // Includes INVALID_SPEC: the coordinator found the request valid,
                            // so a worker refusing it is failing (and is routed around).
                            _ => placement.complete(Outcome::Failure, elapsed),
                        }
                        failure_kind_name(f.kind)
                    }
                    None => {
                        placement.complete(Outcome::Failure, elapsed);
                        last_error = "worker sent an empty response".into();
                        "malformed_response"
                    }
                },
                Ok(Err(status)) if status.code() == tonic::Code::ResourceExhausted => {
                    // The worker's slot gate refused the call before reading it: busy, not sick.
                    drop(placement);
                    last_error = sanitize(status.message(), 512);
                    "overloaded"
                }
                Ok(Err(status)) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = sanitize(status.message(), 512);
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "unreachable"
                }
                Err(CallEnd::Timeout) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = format!("no answer within {call_timeout:?}");
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "timeout"
                }
                Err(CallEnd::Lost) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = "worker lost (missed heartbeats) while running the task".into();
                    warn!(worker = %sanitize(worker.as_str(), 128), error = %last_error, "worker unreachable");
                    "lost"
                }
            };
            self.slot_freed.notify_one();
            if failure_kind != "overloaded" {
                self.history
                    .failure(worker.as_str(), failure_kind, &last_error);
            }
            self.metrics
                .worker_failures
                .get_or_create(&vec![
                    ("worker", worker.to_string()),
                    ("kind", failure_kind.to_owned()),
                ])
                .inc();
            warn!(task_id = %task_id, worker = %sanitize(worker.as_str(), 128), attempt, kind = failure_kind, error = %last_error,
                  "task failed on worker, placing it again");
            placement_req.exclude.push(worker);
        }
        self.record_fallback("workers_failed");
        Ok(fallback("workers_failed", last_error))
    }

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
        let (total_slots, free_slots) = self.slot_totals();
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
        let (total_slots, free_slots) = self.slot_totals();
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

    /// (total, free) slots on workers that are up (in the registry) and whose circuit is not open.
    /// Cheap enough for `Hello`, which every compile sends.
    pub fn slot_totals(&self) -> (u64, u64) {
        self.registry
            .snapshot()
            .iter()
            .filter(|w| w.circuit.state != CircuitState::Open)
            .fold((0, 0), |(t, f), w| {
                (
                    t + u64::from(w.slots),
                    f + u64::from(w.slots.saturating_sub(w.in_flight)),
                )
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
