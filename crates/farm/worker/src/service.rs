//! The compile worker: a gRPC `Worker` service running tasks on an [`Executor`] within its slots,
//! only with the toolchains it advertises, plus the loop that registers it with a coordinator.

use crate::metrics::WorkerMetrics;
use crate::spec::compile_spec;
use hybridgrid_core::{
    CancellationToken, Capabilities, DiscoverySource, ExecError, Executor, PROTOCOL_VERSION,
    TaskSpec, Toolchain, WorkerId, WorkerInfo,
};
use hybridgrid_farm_protocol::{OBJECT_OUTPUT, request_key};
use hybridgrid_transport::pb::{self, worker_server};
use hybridgrid_transport::tls::{Dial, Role, peer_identity};
use hybridgrid_transport::{check_version, exec_error_to_failure};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tonic::{Request, Response, Status};
use tracing::{info, warn};

/// A compiler this worker offers: its identity and the binary that has it.
#[derive(Clone, Debug)]
pub struct LocalToolchain {
    /// Exact identity, as advertised.
    pub toolchain: Toolchain,
    /// Resolved binary (inside [`LocalToolchain::image`] when that is set).
    pub path: PathBuf,
    /// The Docker image the compiler lives in (`worker.docker.toolchains`): its compiles run in
    /// a container of it. `None`: a compiler of this host.
    pub image: Option<String>,
}

/// Shared state of one worker.
pub struct WorkerState {
    /// This worker's advertised identity.
    pub info: WorkerInfo,
    executor: Arc<dyn Executor>,
    /// Runs the compiles of toolchains that live in an image ([`LocalToolchain::image`]).
    containers: Option<Arc<dyn Executor>>,
    toolchains: Vec<LocalToolchain>,
    slots: Arc<Semaphore>,
    task_timeout: Duration,
    metrics: Arc<WorkerMetrics>,
    /// Where clean compiles are written for clients to find (the shared tier), if configured.
    result_cache: std::sync::OnceLock<Arc<dyn hybridgrid_core::Cache>>,
    /// How to reach the coordinator (TLS material, identity it must present).
    coordinator_dial: std::sync::OnceLock<Dial>,
    /// Whether calls must come from the coordinator's certificate (TLS is on).
    require_coordinator: std::sync::atomic::AtomicBool,
    /// Draining, health statuses, the mDNS announcement.
    pub(crate) drain: crate::drain::Drain,
    /// Runs rooted compiles (clang DWARF 5), when this worker offers them (`rooted.rs`).
    pub(crate) rooted: Option<crate::rooted::Rooted>,
    /// Bounds of an `ExecuteStream` (`stream.rs`), from the config; defaults until set.
    stream_limits: std::sync::OnceLock<crate::stream::StreamLimits>,
    /// Cancelled when the worker stops: its streams take no new calls and end once the calls
    /// running on them have answered (a graceful stop waits for them, as for unary calls).
    pub(crate) stopping: CancellationToken,
}

impl WorkerState {
    /// A worker with `slots` concurrent tasks, each capped at `task_timeout`.
    pub fn new(
        id: WorkerId,
        advertise_addr: String,
        slots: u32,
        task_timeout: Duration,
        executor: Arc<dyn Executor>,
        toolchains: Vec<LocalToolchain>,
        metrics: Arc<WorkerMetrics>,
    ) -> Arc<Self> {
        Self::with_containers(
            id,
            advertise_addr,
            slots,
            task_timeout,
            executor,
            None,
            toolchains,
            metrics,
        )
    }

    /// [`WorkerState::new`], with `containers` running the compiles of the toolchains that
    /// name an image (the Docker executor of `worker.docker`).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn with_containers(
        id: WorkerId,
        advertise_addr: String,
        slots: u32,
        task_timeout: Duration,
        executor: Arc<dyn Executor>,
        containers: Option<Arc<dyn Executor>>,
        toolchains: Vec<LocalToolchain>,
        metrics: Arc<WorkerMetrics>,
    ) -> Arc<Self> {
        let mut capabilities = Capabilities::of_this_host(slots);
        capabilities.toolchains = toolchains.iter().map(|t| t.toolchain.clone()).collect();
        capabilities.executors = vec![executor.kind().to_owned()];
        if let Some(c) = &containers {
            capabilities.executors.push(c.kind().to_owned());
        }
        metrics.slots.set(i64::from(slots));
        Arc::new(Self {
            info: WorkerInfo {
                id,
                addr: advertise_addr,
                capabilities,
                protocol_version: PROTOCOL_VERSION,
                source: DiscoverySource::Registration,
            },
            executor,
            containers,
            toolchains,
            slots: Arc::new(Semaphore::new(slots as usize)),
            task_timeout,
            metrics,
            result_cache: std::sync::OnceLock::new(),
            coordinator_dial: std::sync::OnceLock::new(),
            require_coordinator: std::sync::atomic::AtomicBool::new(false),
            drain: crate::drain::Drain::default(),
            rooted: None,
            stream_limits: std::sync::OnceLock::new(),
            stopping: CancellationToken::new(),
        })
    }

    /// Whether the worker is draining (takes no new task).
    pub fn is_draining(&self) -> bool {
        self.drain.is_draining()
    }

    /// Drains: refuses new tasks (as busy: the coordinator places them elsewhere), reports
    /// `NOT_SERVING` in gRPC health, withdraws the mDNS announcement, then waits until the tasks
    /// running now have finished or `timeout` has passed. Returns whether they all finished.
    pub async fn drain(&self, timeout: Duration) -> bool {
        if self.drain.begin().await {
            info!(worker_id = %self.info.id, in_flight = self.in_flight(), "draining: no new tasks, finishing the running ones");
        }
        let deadline = Instant::now() + timeout;
        loop {
            if self.in_flight() == 0 {
                return true;
            }
            if Instant::now() >= deadline {
                warn!(worker_id = %self.info.id, in_flight = self.in_flight(), "drain timeout: tasks still running");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Sets how the worker reaches its coordinator, and (when `dial` carries TLS material) makes
    /// it serve only the coordinator's certificate. Set once, before serving.
    pub fn set_security(&self, dial: Dial) {
        self.require_coordinator
            .store(dial.tls.is_some(), std::sync::atomic::Ordering::Relaxed);
        let _ = self.coordinator_dial.set(dial);
    }

    /// With TLS, only the coordinator may call the worker.
    fn authorize<T>(&self, req: &Request<T>) -> Result<(), Status> {
        if !self
            .require_coordinator
            .load(std::sync::atomic::Ordering::Relaxed)
        {
            return Ok(());
        }
        match peer_identity(req) {
            Some(id) if id.role == Role::Coordinator => Ok(()),
            Some(id) => Err(Status::permission_denied(format!(
                "only the coordinator may call this worker; the caller is {id}"
            ))),
            None => Err(Status::unauthenticated(
                "only the coordinator may call this worker; the caller presented no certificate",
            )),
        }
    }

    /// The slots, for the gate that takes one before a request is decoded.
    pub(crate) fn slot_gate(&self) -> crate::gate::GateParts {
        crate::gate::GateParts {
            slots: self.slots.clone(),
            wait: self.task_timeout,
            draining: self.drain.draining.clone(),
        }
    }

    /// Makes the worker write every clean compile (exit 0, nothing on stderr) to `cache` under its
    /// result key ([`hybridgrid_farm_protocol::request_key`]), the key clients look up. Set once.
    pub fn set_result_cache(&self, cache: Arc<dyn hybridgrid_core::Cache>) {
        let _ = self.result_cache.set(cache);
    }

    /// Sets the bounds of an `ExecuteStream` (`worker.max_message_bytes`,
    /// `worker.concurrency_per_connection`). Set once, before serving.
    pub(crate) fn set_stream_limits(&self, limits: crate::stream::StreamLimits) {
        let _ = self.stream_limits.set(limits);
    }

    pub(crate) fn stream_limits(&self) -> crate::stream::StreamLimits {
        self.stream_limits.get().copied().unwrap_or_default()
    }

    /// The longest a task may run here (`worker.task_timeout`).
    pub(crate) fn task_timeout(&self) -> Duration {
        self.task_timeout
    }

    /// Tasks running now.
    pub fn in_flight(&self) -> u32 {
        self.info.capabilities.slots - self.slots.available_permits() as u32
    }

    fn resolve(&self, wanted: &Toolchain) -> Option<&LocalToolchain> {
        self.toolchains.iter().find(|t| t.toolchain.matches(wanted))
    }

    /// Runs one request: validation, slot, toolchain pinning, deadline, metrics and logs. `slot`
    /// is the slot the gate took before the request was decoded, if it went through one.
    pub(crate) async fn execute(
        &self,
        req: pb::ExecuteRequest,
        slot: Option<OwnedSemaphorePermit>,
    ) -> Result<pb::ExecuteResponse, Status> {
        check_version(req.protocol_version, "coordinator")?;
        let wire = req
            .spec
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field spec"))?;
        let spec = TaskSpec::try_from(wire)?;
        let failure = |kind: pb::task_failure::Kind, message: String| pb::ExecuteResponse {
            worker_id: self.info.id.to_string(),
            result: Some(pb::execute_response::Result::Failure(pb::TaskFailure {
                kind: kind as i32,
                message,
            })),
        };
        let Some(wanted) = req.toolchain.map(Toolchain::from) else {
            return Ok(failure(
                pb::task_failure::Kind::InvalidSpec,
                "compile workers only run tasks that name a toolchain".into(),
            ));
        };
        let Some(local) = self.resolve(&wanted) else {
            return Ok(failure(
                pb::task_failure::Kind::ToolchainUnavailable,
                format!(
                    "no toolchain {} {} for {} on worker {}",
                    wanted.name, wanted.version, wanted.target, self.info.id
                ),
            ));
        };
        // A toolchain in an image compiles in a container of it; the others on this host.
        let executor = match (&local.image, &self.containers) {
            (None, _) => self.executor.clone(),
            (Some(_), Some(containers)) => containers.clone(),
            (Some(image), None) => {
                return Ok(failure(
                    pb::task_failure::Kind::ToolchainUnavailable,
                    format!(
                        "worker {} has no container executor for image {image}",
                        self.info.id
                    ),
                ));
            }
        };
        let image = local.image.clone();
        // Hashing and rewriting the text (up to the message limit) is CPU work: off the async threads.
        let (toolchain, compiler) = (local.toolchain.clone(), local.path.clone());
        // A rooted compile (clang DWARF 5) runs on the rooted executor; a worker without one
        // refuses it as not distributable.
        let rooted = self
            .rooted
            .clone()
            .filter(|_| image.is_none() && crate::rooted::is_rooted(&spec));
        let run_on = match &rooted {
            Some(r) => r.executor(),
            None => executor.clone(),
        };
        let want_key = self.result_cache.get().is_some();
        let prepared = tokio::task::spawn_blocking(move || {
            let key = if want_key {
                request_key(&toolchain, &spec)
            } else {
                None
            };
            match rooted {
                Some(r) => r.compile_spec(spec, &compiler),
                None => compile_spec(executor.as_ref(), spec, &compiler)
                    .map_err(|e| (pb::task_failure::Kind::InvalidSpec, e.to_string())),
            }
            .map(|spec| (spec, key))
        })
        .await
        .map_err(|e| Status::internal(format!("preparing the compile failed: {e}")))?;
        let (spec, cache_key) = match prepared {
            Ok(prepared) => prepared,
            // The one place a refused request becomes its wire outcome.
            Err((kind, message)) => return Ok(failure(kind, message)),
        };
        let mut spec = spec;
        spec.image = image;
        spec.timeout = spec.timeout.min(self.task_timeout);
        // Wait for a slot (unless the gate took one), but never past the task's own deadline.
        let acquire = async {
            match slot {
                Some(p) => Ok(p),
                None => self.slots.clone().acquire_owned().await,
            }
        };
        let permit = match tokio::time::timeout(spec.timeout, acquire).await {
            Ok(Ok(p)) => p,
            _ => {
                return Ok(failure(
                    pb::task_failure::Kind::Overloaded,
                    format!(
                        "worker {} had no free slot within {:?}",
                        self.info.id, spec.timeout
                    ),
                ));
            }
        };
        let (in_flight, _) = hybridgrid_transport::serve::GaugeGuard::hold(&self.metrics.in_flight);
        let task_id = spec.id.clone();
        info!(task_id = %task_id, worker = %self.info.id, compiler = %wanted.name, "task started");
        let started = Instant::now();
        // Dropping this future (the coordinator went away) cancels and kills the task.
        let cancel = CancellationToken::new();
        let _guard = cancel.clone().drop_guard();
        let result = run_on.execute(spec, cancel).await;
        drop(permit);
        drop(in_flight);
        let duration = started.elapsed();
        self.metrics.task_seconds.observe(duration.as_secs_f64());
        let outcome = match result {
            Ok(mut out) => {
                for f in &mut out.files {
                    f.path = OBJECT_OUTPUT.to_owned();
                }
                #[cfg(feature = "fault-injection")]
                if std::env::var_os("HG_FAULT_FLIP_OBJECT_BYTE").is_some() {
                    for f in &mut out.files {
                        let mut bytes = f.contents.to_vec();
                        let middle = bytes.len() / 2;
                        if let Some(b) = bytes.get_mut(middle) {
                            *b ^= 0x01;
                        }
                        f.contents = bytes.into();
                    }
                }
                let label = if out.success() {
                    "success"
                } else {
                    "compile_error"
                };
                self.metrics
                    .tasks
                    .get_or_create(&vec![("result", label.to_owned())])
                    .inc();
                info!(task_id = %task_id, duration = ?duration, success = out.success(), exit_code = out.exit_code, "task completed");
                if !out.success() {
                    // A compile error in the user's code: a result, not a worker failure.
                    let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(2048)])
                        .into_owned();
                    warn!(task_id = %task_id, error = %format!("exit code {}", out.exit_code), stderr = %stderr, "compilation failed");
                }
                if let (Some(cache), Some(key)) = (self.result_cache.get(), cache_key) {
                    share_result(cache.as_ref(), &key, &out).await;
                }
                pb::execute_response::Result::Output(out.into())
            }
            Err(e) => {
                let f = exec_error_to_failure(&e);
                let label = hybridgrid_transport::failure_kind_name(f.kind);
                self.metrics
                    .tasks
                    .get_or_create(&vec![("result", label.to_owned())])
                    .inc();
                log_exec_error(&task_id.to_string(), duration, &e);
                pb::execute_response::Result::Failure(f)
            }
        };
        Ok(pb::ExecuteResponse {
            worker_id: self.info.id.to_string(),
            result: Some(outcome),
        })
    }
}

fn log_exec_error(task_id: &str, duration: Duration, e: &ExecError) {
    warn!(task_id, duration = ?duration, success = false, error = %e, "task completed");
}

/// The tonic service wrapper.
#[derive(Clone)]
pub struct WorkerService(pub Arc<WorkerState>);

#[tonic::async_trait]
impl worker_server::Worker for WorkerService {
    async fn info(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::WorkerInfo>, Status> {
        self.0.authorize(&req)?;
        check_version(req.into_inner().protocol_version, "coordinator")?;
        Ok(Response::new(self.0.info.clone().into()))
    }

    async fn execute(
        &self,
        req: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        self.0.authorize(&req)?;
        let slot = req
            .extensions()
            .get::<crate::gate::SlotPermit>()
            .and_then(crate::gate::SlotPermit::take);
        self.0
            .execute(req.into_inner(), slot)
            .await
            .map(Response::new)
    }

    type ExecuteStreamStream = crate::stream::ResponseStream;

    async fn execute_stream(
        &self,
        req: Request<tonic::Streaming<pb::ExecuteStreamRequest>>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        self.0.authorize(&req)?;
        Ok(Response::new(crate::stream::serve(
            self.0.clone(),
            req.into_inner(),
        )))
    }
}

/// Registers with the coordinator at `coordinator`, then heartbeats; registers again whenever the
/// coordinator forgets the worker (it restarted) or cannot be reached. Runs until `stop` fires.
pub async fn registration_loop(
    state: Arc<WorkerState>,
    coordinator: String,
    stop: CancellationToken,
) {
    let how = state
        .coordinator_dial
        .get()
        .cloned()
        .unwrap_or_else(|| Dial {
            timeout: Some(Duration::from_secs(5)),
            ..Dial::plain(Duration::from_secs(2))
        });
    let mut backoff = Duration::from_millis(200);
    'outer: while !stop.is_cancelled() {
        let client = hybridgrid_transport::tls::dial(&coordinator, &how)
            .await
            .map(pb::coordinator_client::CoordinatorClient::new);
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                warn!(coordinator = %coordinator, error = %e, "coordinator unreachable, will retry");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => break }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let reg = client
            .register(pb::RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                worker: Some(state.info.clone().into()),
            })
            .await;
        let interval = match reg {
            Ok(r) => {
                let r = r.into_inner();
                info!(coordinator = %coordinator, coordinator_id = %r.coordinator_id, "registered with coordinator");
                backoff = Duration::from_millis(200);
                Duration::from_millis(r.heartbeat_interval_ms.clamp(100, 60_000))
            }
            Err(e) => {
                warn!(coordinator = %coordinator, error = %e.message(), "registration refused, will retry");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => break }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            tokio::select! { _ = tokio::time::sleep(interval) => {}, _ = stop.cancelled() => break 'outer }
            let hb = client
                .heartbeat(pb::HeartbeatRequest {
                    protocol_version: PROTOCOL_VERSION,
                    worker_id: state.info.id.to_string(),
                    in_flight: state.in_flight(),
                })
                .await;
            match hb {
                Ok(r) if r.get_ref().known => {}
                Ok(_) => {
                    info!(coordinator = %coordinator, "coordinator does not know this worker, registering again");
                    continue 'outer;
                }
                Err(e) => {
                    warn!(coordinator = %coordinator, error = %e.message(), "heartbeat failed, reconnecting");
                    continue 'outer;
                }
            }
        }
    }
}

/// Writes a worker's clean compile (exit 0, empty stderr, one output file) to `cache` under
/// `key`. Best effort: a failure is logged, the compile's answer is not affected.
async fn share_result(
    cache: &dyn hybridgrid_core::Cache,
    key: &hybridgrid_core::Digest,
    out: &hybridgrid_core::TaskOutput,
) {
    let [object] = out.files.as_slice() else {
        return;
    };
    if !out.success() || !out.stderr.is_empty() {
        return;
    }
    let result = hybridgrid_farm_protocol::CachedResult {
        exit_code: 0,
        stderr: Vec::new(),
        diag_env: [0; 32],
        object: object.contents.to_vec(),
    };
    match cache.put(key, result.encode().into()).await {
        Ok(()) => tracing::debug!(key = %key, "compile result shared"),
        Err(e) => tracing::warn!(key = %key, error = %e, "cannot share compile result"),
    }
}

/// Opens the shared tier of `cfg` (`cache.shared`), if one is configured: where the worker
/// writes every clean compile for clients to find.
pub(crate) async fn shared_tier(
    cfg: &hybridgrid_farm_protocol::config::CacheConfig,
) -> Result<Option<Arc<dyn hybridgrid_core::Cache>>, hybridgrid_core::spec::SpecError> {
    match cfg.shared_spec()? {
        Some(spec) => hybridgrid_cache::open_cache(&spec).await.map(Some),
        None => Ok(None),
    }
}
