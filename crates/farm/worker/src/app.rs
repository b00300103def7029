//! Starting a worker in process: probe its compilers, bind, serve, register with the coordinator.
//! `hg-worker` is a thin wrapper over [`start_native_worker`], and end-to-end tests call it directly.

use crate::metrics::WorkerMetrics;
use crate::sandbox::SandboxStatus;
use crate::service::{LocalToolchain, WorkerService, WorkerState, registration_loop};
use axum::Router;
use hybridgrid_core::{CancellationToken, Executor, WorkerId};
use hybridgrid_farm_protocol::config::{FarmConfig, validate_host_port};
use hybridgrid_transport::admin;
use hybridgrid_transport::pb::worker_server::WorkerServer;
use hybridgrid_transport::serve::{
    GrpcOptions, Handle, StartError, bind, local_addr, spawn_grpc, spawn_http,
};
use hybridgrid_transport::tls::{Dial, Expect, Role, TlsMaterial};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tracing::{info, warn};

/// Starts a worker with `executor` offering `toolchains`; registers with `worker.coordinator` if set.
/// Confining the executor is the caller's business here (`/health` says so);
/// [`start_native_worker`] sandboxes its compilers.
pub async fn start_worker(
    cfg: &FarmConfig,
    executor: Arc<dyn Executor>,
    toolchains: Vec<LocalToolchain>,
) -> Result<Handle<WorkerState>, StartError> {
    start_worker_with(
        cfg,
        executor,
        None,
        toolchains,
        SandboxStatus::External,
        None,
    )
    .await
}

async fn start_worker_with(
    cfg: &FarmConfig,
    executor: Arc<dyn Executor>,
    containers: Option<Arc<dyn Executor>>,
    toolchains: Vec<LocalToolchain>,
    sandbox: SandboxStatus,
    rooted: Option<crate::rooted::Rooted>,
) -> Result<Handle<WorkerState>, StartError> {
    let w = &cfg.worker;
    let t = &cfg.tls;
    let material = TlsMaterial::load_optional(t.ca.as_deref(), t.cert.as_deref(), t.key.as_deref())
        .map_err(|e| StartError::Config(e.to_string()))?;
    let tls_fingerprint = material.as_ref().and_then(|m| m.fingerprint());
    let server_tls = match &material {
        // Only the coordinator (a certificate from the farm CA) may call a worker.
        Some(m) => Some(
            m.server_config(true)
                .map_err(|e| StartError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let opts = GrpcOptions {
        tls: server_tls,
        insecure: t.insecure,
        concurrency_per_connection: w.concurrency_per_connection,
        request_timeout: w.task_timeout.saturating_add(crate::stream::REQUEST_GRACE),
        ..Default::default()
    };
    let grpc = bind("gRPC", &w.grpc_listen(t)).await?;
    let grpc_addr = local_addr(&grpc);
    opts.check_listen("worker.grpc_addr", &grpc_addr)?;
    let http = bind("HTTP", &w.http_addr).await?;
    let http_addr = local_addr(&http);
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
    let state = WorkerState::with_containers(
        WorkerId::new(id),
        advertise,
        w.max_concurrent_tasks,
        *w.task_timeout,
        executor,
        containers,
        toolchains,
        metrics,
    );
    let state = crate::rooted::attach(state, rooted);
    state.set_security(Dial {
        tls: material,
        insecure: t.insecure,
        expect: Some(Expect {
            role: Role::Coordinator,
            name: None,
        }),
        connect_timeout: Duration::from_secs(2),
        timeout: Some(Duration::from_secs(5)),
        keep_alive: None,
    });
    if cfg.cache.enabled {
        match crate::service::shared_tier(&cfg.cache).await {
            Ok(Some(shared)) => {
                if cfg.cache.shared_secret.is_none() {
                    tracing::warn!(
                        "shared cache entries are not authenticated: anyone who can write the server can serve any object; set cache.shared_secret (docs/SECURITY.md)"
                    );
                }
                state.set_result_cache(shared)
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "shared compile cache unavailable; results not shared")
            }
        }
    }
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();
    let max = usize::try_from(w.max_message_bytes).unwrap_or(usize::MAX);
    state.set_stream_limits(crate::stream::StreamLimits {
        max_message_bytes: max,
        calls: w.concurrency_per_connection.max(1),
    });
    // A message on ExecuteStream is a request or reply of up to `max` in a small envelope.
    let wire_max = max.saturating_add(hybridgrid_transport::execute_link::ENVELOPE_BYTES);
    let svc = WorkerServer::new(WorkerService(state.clone()))
        .max_decoding_message_size(wire_max)
        .max_encoding_message_size(wire_max);
    let svc = crate::gate::SlotGate::new(svc, state.slot_gate());
    let health = hybridgrid_transport::health::GrpcHealth::new();
    let sandboxed = !matches!(sandbox, SandboxStatus::Unsandboxed(_));
    state.drain.set_health(health.clone(), sandboxed).await;
    tasks.push(spawn_grpc(
        health.wrap(svc),
        grpc,
        stop.clone(),
        "worker",
        &opts,
    ));
    if cfg.discovery.mdns {
        announce(&state, grpc_addr, tls_fingerprint.as_deref());
    }
    let st = state.clone();
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        s.cancelled().await;
        st.stopping.cancel();
        st.drain.withdraw().await;
    }));
    let router = crate::sandbox::with_health(
        admin::router(registry, Arc::new(|| {}), Router::new()),
        Arc::new(sandbox),
    );
    tasks.push(spawn_http(router, http, stop.clone(), "worker"));
    if let Some(coord) = &w.coordinator {
        validate_host_port(coord)
            .map_err(|e| StartError::Config(format!("worker.coordinator: {e}")))?;
        tasks.push(tokio::spawn(registration_loop(
            state.clone(),
            coord.clone(),
            stop.clone(),
        )));
    }
    info!(worker_id = %state.info.id, grpc = %grpc_addr, http = %http_addr, slots = w.max_concurrent_tasks,
          toolchains = state.info.capabilities.toolchains.len(), "worker serving");
    Ok(Handle::new(state, (grpc_addr, http_addr), stop, tasks))
}

/// Announces the worker over mDNS on the network of its gRPC listen address (nothing on a
/// loopback address); a failure is logged once with the fix, and the worker serves on.
fn announce(state: &WorkerState, grpc_addr: std::net::SocketAddr, tls_fingerprint: Option<&str>) {
    use hybridgrid_discovery::{Announcement, MdnsAnnouncer, MdnsInterfaces};
    let Some(interfaces) = MdnsInterfaces::for_listen_addr(grpc_addr.ip()) else {
        info!(grpc = %grpc_addr, "mDNS announcement off: gRPC listens on loopback only, where no other machine can reach it");
        return;
    };
    if let Err(e) = hybridgrid_discovery::check_mdns_port() {
        warn!(error = %e, "mDNS unavailable: cannot use udp/5353, so the coordinator will not find this worker by itself. Fix: free or allow 5353/udp (e.g. `sudo ufw allow 5353/udp`), or point the worker at the coordinator with --coordinator (worker.coordinator), or set discovery.mdns: false");
        return;
    }
    let how = Announcement {
        port: grpc_addr.port(),
        tls_fingerprint: tls_fingerprint.map(str::to_owned),
        interfaces,
    };
    match MdnsAnnouncer::announce_with(&state.info, &how) {
        Ok(a) => state.drain.set_announcer(a),
        Err(e) => {
            warn!(error = %e, "mDNS announcement failed; the coordinator will not find this worker by itself. Fix: allow 5353/udp, or use --coordinator (worker.coordinator), or set discovery.mdns: false")
        }
    }
}

/// Probes `worker.compilers` and starts a worker on the native executor, every compile in the
/// compiler sandbox (see `crate::sandbox`); refuses to start where no sandbox works, unless
/// `worker.allow_unsandboxed`.
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
                let Some(resolved) = find_program(path).and_then(|p| std::fs::canonicalize(p).ok())
                else {
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
                    image: None,
                });
            }
            Err(e) => tracing::debug!(compiler = %name, error = %e, "toolchain not offered"),
        }
    }
    let work_root = cfg
        .worker
        .work_dir
        .clone()
        .unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&work_root)
        .map_err(|e| StartError::Config(format!("worker.work_dir {}: {e}", work_root.display())))?;
    let images = crate::container::start(cfg, &work_root).await?;
    if toolchains.is_empty() && images.is_none() {
        return Err(StartError::Config(format!(
            "worker.compilers: none of {:?} could be found and identified on this machine (and worker.docker.toolchains is empty)",
            cfg.worker.compilers
        )));
    }
    let exec = hybridgrid_executors::NativeExecutor::new(hybridgrid_executors::NativeConfig {
        work_root: work_root.clone(),
        path: None,
    });
    let (exec, sandbox) = if toolchains.is_empty() {
        // Nothing runs on the host: every compile is in a container.
        let what = "no host compilers; image toolchains compile in containers".to_owned();
        (exec, SandboxStatus::Enforced(what))
    } else {
        crate::sandbox::confine(cfg, &toolchains, exec).await?
    };
    let sandboxed = matches!(sandbox, SandboxStatus::Enforced(_));
    let rooted = crate::rooted::start(cfg, &toolchains, &work_root, sandboxed).await;
    let containers = match images {
        Some(images) => {
            toolchains.extend(images.toolchains);
            Some(images.executor)
        }
        None => None,
    };
    start_worker_with(cfg, Arc::new(exec), containers, toolchains, sandbox, rooted).await
}

/// `name` as given when it is a path, else the first executable of that name on `PATH`.
fn find_program(name: &Path) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let executable = |p: &Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.components().count() > 1 {
        return executable(name).then(|| name.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| executable(p))
}
