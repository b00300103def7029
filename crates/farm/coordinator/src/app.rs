//! Starting a coordinator in process: bind, build the parts, serve until shut down. `hg-coord` is
//! a thin wrapper over [`start_coordinator`], and end-to-end tests call it directly.

use crate::metrics::CoordinatorMetrics;
use crate::state::{CoordinatorService, CoordinatorState};
use axum::Router;
use axum::response::{Html, IntoResponse};
use axum::routing::get;
use futures::StreamExt;
use hybridgrid_core::clock::SystemClock;
use hybridgrid_core::{CancellationToken, Discovery};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use hybridgrid_transport::pb::coordinator_server::CoordinatorServer;
use hybridgrid_transport::serve::{Handle, StartError, bind, local_addr, spawn_grpc, spawn_http};
use hybridgrid_transport::{MAX_MESSAGE_BYTES, admin};
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

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
    let (grpc_addr, http_addr) = (local_addr(&grpc), local_addr(&http));
    let stop = CancellationToken::new();
    let mut tasks = Vec::new();

    let svc = CoordinatorServer::new(CoordinatorService(state.clone()))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tasks.push(spawn_grpc(svc, grpc, stop.clone(), "coordinator"));

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
    Ok(Handle::new(state, (grpc_addr, http_addr), stop, tasks))
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
