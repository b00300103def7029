//! The coordinator: admits compile requests, places each on a worker with a free slot and a matching
//! toolchain, retries on another worker when one fails, keeps a circuit breaker per worker, and
//! tells the client to compile locally (with a reason) when the farm cannot take the task.

use crate::metrics::CoordinatorMetrics;
use hybridgrid_farm_protocol::config::CoordinatorConfig;
use hybridgrid_transport::serve::GaugeGuard;

use hybridgrid_core::{
    CircuitBreaker, CircuitState, CircuitStatus, DiscoverySource, Outcome, PROTOCOL_VERSION,
    Toolchain, WorkerEvent, WorkerId, WorkerInfo,
};
use hybridgrid_scheduler::{KeyedBreaker, NoPlacement, Placement, PlacementRequest, Registry};
use hybridgrid_transport::pb::{self, coordinator_server, worker_client::WorkerClient};
use hybridgrid_transport::{MAX_MESSAGE_BYTES, check_version, failure_kind_name};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

/// Fallback reasons only a client can see (the coordinator counts its own advice itself).
const CLIENT_FALLBACK_REASONS: &[&str] = &[
    "coordinator_unreachable",
    "coordinator_error",
    "protocol_mismatch",
    "worker_output_missing",
    "output_write_failed",
    "client_error",
];
/// Cache events clients report.
const CLIENT_CACHE_EVENTS: &[&str] = &["hit_local", "hit_shared", "miss", "evictions", "corrupt"];

/// How long a request may wait for a free slot before the client is told to compile locally.
const MAX_QUEUE_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Liveness {
    Up,
    Down,
}

struct Known {
    info: WorkerInfo,
    client: WorkerClient<Channel>,
    last_seen: Instant,
    liveness: Liveness,
    /// The worker's lease on its placements: cancelled when it is marked down (missed heartbeats,
    /// discovery said gone), which fails its in-flight calls at once so their tasks are placed again.
    lease: CancellationToken,
    /// Its counters when it was marked down, so the dashboard keeps its history.
    history: Option<hybridgrid_scheduler::WorkerStats>,
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
    pub fn new(
        config: CoordinatorConfig,
        breaker: Arc<KeyedBreaker>,
        metrics: Arc<CoordinatorMetrics>,
    ) -> Arc<Self> {
        let admission = Semaphore::new(config.max_concurrent_tasks as usize);
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
        })
    }

    /// This coordinator's id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// Adds or refreshes a worker.
    pub fn worker_up(&self, info: WorkerInfo) -> Result<(), Status> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{}", info.addr))
            .map_err(|e| Status::invalid_argument(format!("worker address {:?}: {e}", info.addr)))?
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(5))
            .keep_alive_timeout(Duration::from_secs(5));
        let channel = endpoint.connect_lazy();
        let client = WorkerClient::new(channel)
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES);
        let mut workers = self.workers.lock();
        let fresh = match workers.get(&info.id) {
            Some(k) => k.liveness == Liveness::Down || k.info != info,
            None => true,
        };
        if fresh {
            info!(worker_id = %info.id, arch = %info.capabilities.arch, slots = info.capabilities.slots,
                  addr = %info.addr, source = %info.source, "worker registered");
        }
        let keep_lease = workers
            .get(&info.id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| k.lease.clone());
        let keep_client = workers
            .get(&info.id)
            .filter(|k| k.info.addr == info.addr)
            .map(|k| k.client.clone());
        workers.insert(
            info.id.clone(),
            Known {
                client: keep_client.unwrap_or(client),
                info: info.clone(),
                last_seen: Instant::now(),
                liveness: Liveness::Up,
                lease: keep_lease.unwrap_or_default(),
                history: None,
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
            warn!(worker = %id, reason = why, "worker down");
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
    }

    /// Applies a discovery event.
    pub fn apply(&self, event: WorkerEvent) {
        match event {
            WorkerEvent::Up(info) => {
                if let Err(e) = self.worker_up(info) {
                    warn!(error = %e.message(), "discovered worker refused");
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

    fn client_of(&self, id: &WorkerId) -> Option<(WorkerClient<Channel>, CancellationToken)> {
        self.workers
            .lock()
            .get(id)
            .filter(|k| k.liveness == Liveness::Up)
            .map(|k| (k.client.clone(), k.lease.clone()))
    }

    /// Runs one compile request to completion or fallback.
    pub async fn compile(&self, req: pb::CompileRequest) -> Result<pb::CompileResponse, Status> {
        check_version(req.protocol_version, "client")?;
        let toolchain: Toolchain = req
            .toolchain
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field toolchain"))?
            .into();
        let spec = req
            .spec
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field spec"))?;
        // Validate once here so a malformed spec is refused before it reaches any worker.
        let task_timeout = spec.validate()?;
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
            let Some((mut client, lease)) = self.client_of(&worker) else {
                drop(placement);
                placement_req.exclude.push(worker);
                continue;
            };
            let (in_flight, now) = GaugeGuard::hold(&self.metrics.in_flight);
            self.peak_in_flight
                .fetch_max(now.max(0) as u64, Ordering::Relaxed);
            let started = Instant::now();
            let call = client.execute(pb::ExecuteRequest {
                protocol_version: PROTOCOL_VERSION,
                spec: Some(spec.clone()),
                toolchain: Some(toolchain.clone().into()),
            });
            let result = tokio::select! {
                r = tokio::time::timeout(task_timeout + Duration::from_secs(10), call) => {
                    r.map_err(|_| CallEnd::Timeout)
                }
                _ = lease.cancelled() => Err(CallEnd::Lost),
            };
            drop(in_flight);
            let elapsed = started.elapsed();
            use pb::execute_response::Result as R;
            use pb::task_failure::Kind;
            let failure_kind: &str = match result {
                Ok(Ok(resp)) => match resp.into_inner().result {
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
                        last_error = f.message.clone();
                        match kind {
                            // The request itself cannot run remotely; the worker is healthy.
                            Kind::InvalidSpec | Kind::OutputTooLarge => {
                                placement.complete(Outcome::Success, elapsed);
                                self.slot_freed.notify_one();
                                self.record_fallback("rejected_by_worker");
                                return Ok(fallback("rejected_by_worker", f.message));
                            }
                            // Busy is not sickness: free the slot without a verdict.
                            Kind::Overloaded => drop(placement),
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
                Ok(Err(status)) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = status.message().to_owned();
                    warn!(worker = %worker, error = %status.message(), "worker unreachable");
                    "unreachable"
                }
                Err(CallEnd::Timeout) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = format!(
                        "no answer within {:?}",
                        task_timeout + Duration::from_secs(10)
                    );
                    warn!(worker = %worker, error = %last_error, "worker unreachable");
                    "timeout"
                }
                Err(CallEnd::Lost) => {
                    placement.complete(Outcome::Failure, elapsed);
                    last_error = "worker lost (missed heartbeats) while running the task".into();
                    warn!(worker = %worker, error = %last_error, "worker unreachable");
                    "lost"
                }
            };
            self.slot_freed.notify_one();
            self.metrics
                .worker_failures
                .get_or_create(&vec![
                    ("worker", worker.to_string()),
                    ("kind", failure_kind.to_owned()),
                ])
                .inc();
            warn!(task_id = %spec.id, worker = %worker, attempt, kind = failure_kind, error = %last_error,
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
        }
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

/// The tonic service wrapper.
#[derive(Clone)]
pub struct CoordinatorService(pub Arc<CoordinatorState>);

#[tonic::async_trait]
impl coordinator_server::Coordinator for CoordinatorService {
    async fn hello(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::HelloResponse>, Status> {
        check_version(req.into_inner().protocol_version, "client")?;
        let (total, free) = self.0.slot_totals();
        Ok(Response::new(pb::HelloResponse {
            protocol_version: PROTOCOL_VERSION,
            coordinator_id: self.0.id.clone(),
            free_slots: free.min(u64::from(u32::MAX)) as u32,
            total_slots: total.min(u64::from(u32::MAX)) as u32,
        }))
    }

    async fn register(
        &self,
        req: Request<pb::RegisterRequest>,
    ) -> Result<Response<pb::RegisterResponse>, Status> {
        let req = req.into_inner();
        check_version(req.protocol_version, "worker")?;
        let info = req
            .worker
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field worker"))?
            .into_core(DiscoverySource::Registration)?;
        check_version(info.protocol_version, "worker")?;
        self.0.worker_up(info)?;
        Ok(Response::new(pb::RegisterResponse {
            protocol_version: PROTOCOL_VERSION,
            coordinator_id: self.0.id.clone(),
            heartbeat_interval_ms: self.0.config.heartbeat_interval.as_millis() as u64,
        }))
    }

    async fn heartbeat(
        &self,
        req: Request<pb::HeartbeatRequest>,
    ) -> Result<Response<pb::HeartbeatResponse>, Status> {
        let req = req.into_inner();
        check_version(req.protocol_version, "worker")?;
        let id = WorkerId::new(req.worker_id);
        let mut workers = self.0.workers.lock();
        let known = match workers.get_mut(&id) {
            Some(k) if k.liveness == Liveness::Up => {
                k.last_seen = Instant::now();
                true
            }
            _ => false,
        };
        Ok(Response::new(pb::HeartbeatResponse { known }))
    }

    async fn compile(
        &self,
        req: Request<pb::CompileRequest>,
    ) -> Result<Response<pb::CompileResponse>, Status> {
        self.0.compile(req.into_inner()).await.map(Response::new)
    }

    async fn report_mismatch(
        &self,
        req: Request<pb::MismatchReport>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let req = req.into_inner();
        check_version(req.protocol_version, "client")?;
        let id = WorkerId::new(req.worker_id);
        if !self.0.workers.lock().contains_key(&id) {
            return Err(Status::not_found(format!("unknown worker {id}")));
        }
        warn!(worker = %id, task_id = %req.task_id, detail = %req.detail, "output mismatch: opening the worker's circuit");
        self.0.breaker.trip(id.as_str(), "output_mismatch");
        self.0.metrics.verify_mismatches.add(id.as_str(), 1);
        Ok(Response::new(pb::ReportResponse {}))
    }

    async fn report(
        &self,
        req: Request<pb::ReportRequest>,
    ) -> Result<Response<pb::ReportResponse>, Status> {
        let req = req.into_inner();
        check_version(req.protocol_version, "client")?;
        // Only known labels: a client must not be able to grow the maps and metric families
        // without bound, and counts saturate instead of wrapping.
        if let Some(bad) = req
            .fallbacks
            .keys()
            .find(|r| !CLIENT_FALLBACK_REASONS.contains(&r.as_str()))
        {
            return Err(Status::invalid_argument(format!(
                "unknown fallback reason {bad:?} (expected one of {CLIENT_FALLBACK_REASONS:?})"
            )));
        }
        if let Some(bad) = req
            .cache
            .keys()
            .find(|e| !CLIENT_CACHE_EVENTS.contains(&e.as_str()))
        {
            return Err(Status::invalid_argument(format!(
                "unknown cache event {bad:?} (expected one of {CLIENT_CACHE_EVENTS:?})"
            )));
        }
        for (reason, n) in req.fallbacks {
            self.0.metrics.fallbacks.add(&reason, n);
        }
        for (event, n) in req.cache {
            self.0.metrics.client_cache.add(&event, n);
        }
        self.0.metrics.local_by_choice.inc_by(req.local_by_choice);
        Ok(Response::new(pb::ReportResponse {}))
    }
}
