//! Starting a coordinator in process: bind, build the parts, serve until shut down. `hg-coord` is
//! a thin wrapper over [`start_coordinator`], and end-to-end tests call it directly.

use crate::metrics::CoordinatorMetrics;
use crate::peers::Security;
use crate::service::CoordinatorService;
use crate::state::CoordinatorState;
use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::StreamExt;
use hybridgrid_core::clock::SystemClock;
use hybridgrid_core::{CancellationToken, Discovery};
use hybridgrid_farm_protocol::config::{FarmConfig, TlsSection};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use hybridgrid_transport::admin;
use hybridgrid_transport::auth::TokenSet;
use hybridgrid_transport::pb::coordinator_server::CoordinatorServer;
use hybridgrid_transport::serve::{
    GrpcOptions, Handle, StartError, bind, local_addr, spawn_grpc, spawn_http,
};
use hybridgrid_transport::tls::{Dial, Expect, Role, TlsMaterial};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Loads the `tls:` section's material, if TLS is on; errors name the file.
pub fn tls_material(tls: &TlsSection) -> Result<Option<Arc<TlsMaterial>>, StartError> {
    TlsMaterial::load_optional(tls.ca.as_deref(), tls.cert.as_deref(), tls.key.as_deref())
        .map_err(|e| StartError::Config(e.to_string()))
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
    let material = tls_material(&cfg.tls)?;
    let server_tls = match &material {
        Some(m) => Some(
            m.server_config(false)
                .map_err(|e| StartError::Config(e.to_string()))?,
        ),
        None => None,
    };
    let opts = GrpcOptions {
        tls: server_tls,
        insecure: cfg.tls.insecure,
        concurrency_per_connection: c.concurrency_per_connection,
        // A compile may wait for admission, then try `max_attempts` workers.
        request_timeout: Duration::from_secs(60).saturating_add(
            c.task_timeout
                .saturating_add(Duration::from_secs(10))
                .saturating_mul(c.max_attempts.max(1)),
        ),
        ..Default::default()
    };
    let listen = c.grpc_listen(&cfg.tls);
    let grpc = bind("gRPC", &listen).await?;
    let grpc_addr = local_addr(&grpc);
    opts.check_listen("coordinator.grpc_addr", &grpc_addr)?;
    let security = Security {
        tls: material,
        tokens: TokenSet::new(c.client_tokens.iter().map(|t| t.expose())),
        insecure: cfg.tls.insecure,
    };
    let (metrics, registry) = CoordinatorMetrics::new();
    let state = CoordinatorState::new(c.clone(), Arc::new(breaker), metrics, security);
    let http = bind("HTTP", &c.http_addr).await?;
    let http_addr = local_addr(&http);
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let max = usize::try_from(c.max_message_bytes).unwrap_or(usize::MAX);
    let svc = CoordinatorServer::new(CoordinatorService(state.clone()))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let health = hybridgrid_transport::health::GrpcHealth::new();
    for service in ["", COORDINATOR_SERVICE] {
        health.set(service, true).await;
    }
    tasks.push(spawn_grpc(
        health.wrap(svc),
        grpc,
        stop.clone(),
        "coordinator",
        &opts,
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
    let api = crate::http_auth::guard(api, c.api_token.as_ref().map(|t| t.expose().to_owned()));
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

    let st = state.clone();
    let s = stop.clone();
    tasks.push(tokio::spawn(async move {
        while !s.is_cancelled() {
            st.sample_load();
            tokio::select! { _ = tokio::time::sleep(crate::history::SAMPLE_EVERY) => {}, _ = s.cancelled() => {} }
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
    let mode = if opts.tls.is_some() {
        "TLS"
    } else {
        "plain text"
    };
    info!(grpc = %grpc_addr, http = %http_addr, coordinator_id = %state.id(), transport = mode,
          "coordinator serving; dashboard at http://{http_addr}/");
    Ok(Handle::new(state, (grpc_addr, http_addr), stop, tasks))
}

/// The gRPC service name of the coordinator in health checks (`grpc.health.v1.Health`).
pub const COORDINATOR_SERVICE: &str = "hybridgrid.v1.Coordinator";

/// Static discovery over `coordinator.static_workers`, probing each worker with the gRPC `Info`
/// call (over TLS with the coordinator's certificate when `tls` is configured).
pub fn static_discovery(
    cfg: &FarmConfig,
    addrs: Vec<String>,
) -> Result<Arc<dyn Discovery>, StartError> {
    let d = hybridgrid_discovery::StaticDiscovery::new(addrs, info_prober(cfg)?)
        .map_err(|e| StartError::Config(format!("coordinator.static_workers: {e}")))?;
    Ok(Arc::new(d))
}

/// mDNS discovery when `discovery.mdns` is on (the default): browses `_hybridgrid._tcp.local.` on
/// the network of the coordinator's gRPC listen address, and confirms every announced worker
/// with the gRPC `Info` call (mutual TLS when TLS is on) before using it; the TXT records are
/// never trusted. Workers are probed every `coordinator.heartbeat_interval` and dropped after
/// `coordinator.heartbeat_timeout` without an answer. `None` (with one log line saying why) when
/// mDNS is off, the coordinator listens on loopback only, or udp/5353 cannot be used.
pub fn mdns_discovery(cfg: &FarmConfig) -> Result<Option<Arc<dyn Discovery>>, StartError> {
    use hybridgrid_discovery::{MdnsDiscovery, MdnsInterfaces, ProbedDiscovery, ProbedOptions};
    if !cfg.discovery.mdns {
        return Ok(None);
    }
    let c = &cfg.coordinator;
    let listen = c.grpc_listen(&cfg.tls);
    let ip = listen
        .parse::<std::net::SocketAddr>()
        .map(|a| a.ip())
        .map_err(|_| {
            StartError::Config(format!(
                "coordinator.grpc_addr: {listen:?} is not an IP:port socket address"
            ))
        })?;
    let Some(interfaces) = MdnsInterfaces::for_listen_addr(ip) else {
        info!(grpc = %listen, "mDNS discovery off: gRPC listens on loopback only, where no worker on another machine can reach it");
        return Ok(None);
    };
    if let Err(e) = hybridgrid_discovery::check_mdns_port() {
        tracing::warn!(error = %e, "mDNS discovery unavailable: cannot use udp/5353, so workers are not found automatically. Fix: free or allow 5353/udp (e.g. `sudo ufw allow 5353/udp`; `ss -ulpn 'sport = :5353'` shows who holds it), or list workers in coordinator.static_workers, or set discovery.mdns: false");
        return Ok(None);
    }
    let browser = match MdnsDiscovery::on(interfaces) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "mDNS discovery unavailable, workers are not found automatically. Fix: allow 5353/udp, or list workers in coordinator.static_workers, or set discovery.mdns: false");
            return Ok(None);
        }
    };
    info!(interfaces = ?interfaces, service = hybridgrid_discovery::SERVICE_TYPE, "browsing for workers over mDNS");
    let options = ProbedOptions::heartbeat(*c.heartbeat_interval, *c.heartbeat_timeout);
    Ok(Some(Arc::new(ProbedDiscovery::new(
        Arc::new(browser),
        hint_prober(cfg)?,
        options,
    ))))
}

/// How the coordinator dials a worker to ask who it is: over TLS with the coordinator's
/// certificate when TLS is configured, accepting only a worker certificate from the farm CA
/// (issued for `name`, when given).
fn info_dial(cfg: &FarmConfig, name: Option<String>) -> Result<Dial, StartError> {
    Ok(Dial {
        tls: tls_material(&cfg.tls)?,
        insecure: cfg.tls.insecure,
        expect: Some(Expect {
            role: Role::Worker,
            name,
        }),
        connect_timeout: Duration::from_secs(2),
        timeout: Some(Duration::from_secs(3)),
        keep_alive: None,
    })
}

/// The gRPC `Info` call to the worker at `addr`.
async fn ask_info(
    addr: &str,
    how: &Dial,
) -> Result<hybridgrid_core::WorkerInfo, hybridgrid_core::BoxError> {
    use hybridgrid_core::{DiscoverySource, PROTOCOL_VERSION};
    use hybridgrid_transport::pb;
    let ch = hybridgrid_transport::tls::dial(addr, how).await?;
    let info = pb::worker_client::WorkerClient::new(ch)
        .info(pb::InfoRequest {
            protocol_version: PROTOCOL_VERSION,
        })
        .await?
        .into_inner();
    Ok(info.into_core(DiscoverySource::Static)?)
}

/// Probes a listed address: any worker certificate from the farm CA (the id it is issued for is
/// checked on every later call).
fn info_prober(cfg: &FarmConfig) -> Result<Arc<dyn hybridgrid_discovery::Prober>, StartError> {
    let how = info_dial(cfg, None)?;
    let prober = move |addr: String| {
        let how = how.clone();
        async move { ask_info(&addr, &how).await }
    };
    Ok(Arc::new(prober))
}

/// Probes an announced worker: with TLS its certificate must be issued for the announced id, so
/// an announcement cannot make the coordinator use another machine under a worker's name.
fn hint_prober(cfg: &FarmConfig) -> Result<Arc<dyn hybridgrid_discovery::HintProber>, StartError> {
    let base = info_dial(cfg, None)?;
    let prober = move |hint: hybridgrid_core::WorkerInfo| {
        let how = Dial {
            expect: Some(Expect {
                role: Role::Worker,
                name: Some(hint.id.to_string()),
            }),
            ..base.clone()
        };
        async move { ask_info(&hint.addr, &how).await }
    };
    Ok(Arc::new(prober))
}
