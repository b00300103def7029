//! Starting a coordinator or a worker in process: bind, build the parts, serve until shut down.
//! The binaries are thin wrappers over these, and end-to-end tests call them directly.

use crate::config::FarmConfig;
use crate::coordinator::{CoordinatorService, CoordinatorState};
use crate::metrics::{CoordinatorMetrics, WorkerMetrics};
use crate::worker::{LocalToolchain, WorkerService, WorkerState, registration_loop};
use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::StreamExt;
use hybridgrid_core::clock::SystemClock;
use hybridgrid_core::{CancellationToken, Discovery, Executor, WorkerId};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use hybridgrid_transport::pb::{
    coordinator_server::CoordinatorServer, worker_server::WorkerServer,
};
use hybridgrid_transport::{MAX_MESSAGE_BYTES, admin};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// `gRPC` or `HTTP`.
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A config value is unusable.
    #[error("invalid config: {0}")]
    Config(String),
}

/// A running daemon: its bound addresses, and how to stop it.
pub struct Handle<S> {
    /// The daemon's shared state.
    pub state: Arc<S>,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl<S> Handle<S> {
    /// Stops serving and waits for the servers to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A token that stops the daemon when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_owned(),
            source,
        })
}

/// Accepted connections with `TCP_NODELAY` set: tonic's `Server::tcp_nodelay` does not reach a
/// listener we bind ourselves, and without it small replies wait out the peer's delayed ACK (~40 ms).
fn nodelay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|c| {
            let _ = c.set_nodelay(true);
        })
    })
}

/// Serves `routes` over gRPC on `listener` until `stop` fires.
fn spawn_grpc(
    routes: tonic::service::Routes,
    listener: TcpListener,
    stop: CancellationToken,
    daemon: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let r = tonic::transport::Server::builder()
            .add_routes(routes)
            .serve_with_incoming_shutdown(nodelay(listener), stop.cancelled_owned())
            .await;
        if let Err(e) = r {
            tracing::error!(daemon, error = %e, "gRPC server failed");
        }
    })
}

/// Serves the admin HTTP `router` on `listener` until `stop` fires.
fn spawn_http(
    router: Router,
    listener: TcpListener,
    stop: CancellationToken,
    daemon: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = admin::serve(listener, router, stop.cancelled_owned()).await {
            tracing::error!(daemon, error = %e, "HTTP server failed");
        }
    })
}

fn local(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Starts a coordinator: gRPC, the HTTP dashboard and API, the heartbeat monitor, and discovery.
pub async fn start_coordinator(
    cfg: &FarmConfig,
    discovery: Vec<Arc<dyn Discovery>>,
) -> Result<Handle<CoordinatorState>, StartError> {
    let c = &cfg.coordinator;
    let breaker_cfg = BreakerConfig {
        window: *c.breaker.window,
        min_calls: c.breaker.min_calls,
        failure_rate_threshold: c.breaker.failure_rate_threshold,
        open_timeout: *c.breaker.open_timeout,
    };
    let breaker = KeyedBreaker::new(breaker_cfg, Arc::new(SystemClock))
        .map_err(|e| StartError::Config(format!("coordinator.breaker: {e}")))?;
    let (metrics, registry) = CoordinatorMetrics::new();
    let state = CoordinatorState::new(c.clone(), Arc::new(breaker), metrics);
    let grpc = bind("gRPC", &c.grpc_addr).await?;
    let http = bind("HTTP", &c.http_addr).await?;
    let (grpc_addr, http_addr) = (local(&grpc), local(&http));
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let svc = CoordinatorServer::new(CoordinatorService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tasks.push(spawn_grpc(
        tonic::service::Routes::new(svc),
        grpc,
        stop.clone(),
        "coordinator",
    ));

    let st = state.clone();
    let api = Router::new()
        .route("/", get(|| async { Html(include_str!("dashboard.html")) }))
        .route(
            "/api/stats",
            get(move || {
                let st = st.clone();
                async move { axum::Json(st.stats()).into_response() }
            }),
        );
    let st = state.clone();
    let router = admin::router(registry, Arc::new(move || st.refresh_metrics()), api);
    tasks.push(spawn_http(router, http, stop.clone(), "coordinator"));

    let st = state.clone();
    let s = stop.clone();
    let tick = (*c.heartbeat_interval / 2).max(Duration::from_millis(50));
    tasks.push(tokio::spawn(async move {
        while !s.is_cancelled() {
            tokio::select! { _ = tokio::time::sleep(tick) => st.expire_silent_workers(), _ = s.cancelled() => {} }
        }
    }));

    for d in discovery {
        let st = state.clone();
        let s = stop.clone();
        tasks.push(tokio::spawn(async move {
            let mut events = d.watch();
            loop {
                tokio::select! {
                    ev = events.next() => match ev { Some(ev) => st.apply(ev), None => break },
                    _ = s.cancelled() => break,
                }
            }
        }));
    }
    info!(grpc = %grpc_addr, http = %http_addr, coordinator_id = %state.id(), "coordinator serving; dashboard at http://{http_addr}/");
    Ok(Handle {
        state,
        grpc_addr,
        http_addr,
        stop,
        tasks,
    })
}

/// Starts a worker with `executor` offering `toolchains`; registers with `worker.coordinator` if set.
pub async fn start_worker(
    cfg: &FarmConfig,
    executor: Arc<dyn Executor>,
    toolchains: Vec<LocalToolchain>,
) -> Result<Handle<WorkerState>, StartError> {
    let w = &cfg.worker;
    let grpc = bind("gRPC", &w.grpc_addr).await?;
    let http = bind("HTTP", &w.http_addr).await?;
    let (grpc_addr, http_addr) = (local(&grpc), local(&http));
    let advertise = match &w.advertise_addr {
        Some(a) => a.clone(),
        None if grpc_addr.ip().is_unspecified() => format!("127.0.0.1:{}", grpc_addr.port()),
        None => grpc_addr.to_string(),
    };
    let id = w.id.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .map(|h| h.trim().to_owned())
            .unwrap_or_else(|_| "worker".into());
        format!("{host}-{}", grpc_addr.port())
    });
    let (metrics, registry) = WorkerMetrics::new();
    let state = WorkerState::new(
        WorkerId::new(id),
        advertise,
        w.max_concurrent_tasks,
        *w.task_timeout,
        executor,
        toolchains,
        metrics,
    );
    if cfg.cache.enabled {
        match crate::cache::client::shared_tier(&cfg.cache).await {
            Ok(Some(shared)) => state.set_result_cache(Arc::new(shared)),
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "shared compile cache unavailable; results not shared")
            }
        }
    }
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let svc = WorkerServer::new(WorkerService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tasks.push(spawn_grpc(
        tonic::service::Routes::new(svc),
        grpc,
        stop.clone(),
        "worker",
    ));
    let router = admin::router(registry, Arc::new(|| {}), Router::new());
    tasks.push(spawn_http(router, http, stop.clone(), "worker"));
    if let Some(coord) = &w.coordinator {
        crate::config::validate_host_port(coord)
            .map_err(|e| StartError::Config(format!("worker.coordinator: {e}")))?;
        tasks.push(tokio::spawn(registration_loop(
            state.clone(),
            coord.clone(),
            stop.clone(),
        )));
    }
    info!(worker_id = %state.info.id, grpc = %grpc_addr, http = %http_addr, slots = w.max_concurrent_tasks,
          toolchains = state.info.capabilities.toolchains.len(), "worker serving");
    Ok(Handle {
        state,
        grpc_addr,
        http_addr,
        stop,
        tasks,
    })
}

/// Static discovery over `coordinator.static_workers`, probing each worker with the gRPC `Info` call.
pub fn static_discovery(addrs: Vec<String>) -> Result<Arc<dyn Discovery>, StartError> {
    use hybridgrid_core::{BoxError, DiscoverySource, PROTOCOL_VERSION, WorkerInfo};
    use hybridgrid_transport::pb;
    let prober = |addr: String| async move {
        let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))?
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(3))
            .connect()
            .await?;
        let info = pb::worker_client::WorkerClient::new(ch)
            .info(pb::InfoRequest {
                protocol_version: PROTOCOL_VERSION,
            })
            .await?
            .into_inner();
        let info: WorkerInfo = info.into_core(DiscoverySource::Static)?;
        Ok::<_, BoxError>(info)
    };
    let d = hybridgrid_discovery::StaticDiscovery::new(addrs, Arc::new(prober))
        .map_err(|e| StartError::Config(format!("coordinator.static_workers: {e}")))?;
    Ok(Arc::new(d))
}

/// Probes `worker.compilers` and starts a worker on the native executor.
pub async fn start_native_worker(cfg: &FarmConfig) -> Result<Handle<WorkerState>, StartError> {
    let mut toolchains: Vec<LocalToolchain> = Vec::new();
    for name in &cfg.worker.compilers {
        let path = std::path::Path::new(name);
        match hybridgrid_compiler::probe_toolchain(path) {
            Ok(tc) => {
                if toolchains.iter().any(|t| t.toolchain == tc) {
                    continue;
                }
                // Run exactly the file whose hash is advertised: the canonical path, checked.
                let resolved = crate::client::resolve_compiler(path.as_os_str()).and_then(|p| {
                    std::fs::canonicalize(&p).map_err(|_| {
                        crate::client::ClientError::CompilerNotFound { name: name.clone() }
                    })
                });
                let Ok(resolved) = resolved else {
                    tracing::warn!(compiler = %name, "toolchain not offered: cannot resolve its binary");
                    continue;
                };
                let hash = std::fs::read(&resolved).map(|b| blake3::hash(&b).to_hex().to_string());
                if hash.as_deref().ok() != Some(tc.binary_hash.as_str()) {
                    tracing::warn!(compiler = %name, path = %resolved.display(),
                        "toolchain not offered: the binary on PATH is not the one that was identified");
                    continue;
                }
                info!(compiler = %name, name = %tc.name, version = %tc.version, target = %tc.target,
                      path = %resolved.display(), "toolchain found");
                toolchains.push(LocalToolchain {
                    toolchain: tc,
                    path: resolved,
                });
            }
            Err(e) => tracing::debug!(compiler = %name, error = %e, "toolchain not offered"),
        }
    }
    if toolchains.is_empty() {
        return Err(StartError::Config(format!(
            "worker.compilers: none of {:?} could be found and identified on this machine",
            cfg.worker.compilers
        )));
    }
    let work_root = cfg
        .worker
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root)
        .map_err(|e| StartError::Config(format!("worker.work_dir {}: {e}", work_root.display())))?;
    let exec = hybridgrid_executors::NativeExecutor::new(hybridgrid_executors::NativeConfig {
        work_root,
        path: None,
    });
    start_worker(cfg, Arc::new(exec), toolchains).await
}

/// Waits for SIGINT or SIGTERM, or for `stop` to be cancelled.
pub async fn wait_for_signal(stop: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
        _ = term => info!("SIGTERM received, shutting down"),
        _ = stop.cancelled() => {}
    }
}
