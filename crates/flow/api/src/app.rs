//! [`App`]: the orchestrator assembled (store, bus, engine, router), and [`Handle`] to a served one.

use crate::backends::{self, BackendError};
use crate::config::Config;
use crate::extract::BodyLimit;
use crate::metrics::FlowMetrics;
use crate::ratelimit::RateLimiter;
use crate::state::{AppState, count_changes};
use crate::{auth, error, routes, ui, webhooks};
use axum::Router;
use axum::routing::{get, post};
use hybridgrid_core::config::EnvSource;
use hybridgrid_flow_engine::{Executors, FlowEngine, FlowError};
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The store or bus did not open.
    #[error(transparent)]
    Backend(#[from] BackendError),
    /// The engine did not start.
    #[error("starting the engine: {0}")]
    Engine(#[from] FlowError),
    /// The Docker engine (config `docker`) did not answer.
    #[error("connecting to the Docker engine (config docker): {0}")]
    Docker(#[source] hybridgrid_core::ExecError),
    /// The Dagger settings (config `dagger`) are unusable.
    #[error("setting up the Dagger executor (config dagger): {0}")]
    Dagger(#[source] hybridgrid_core::ExecError),
    /// The Hub URL of the LLM agents (config `llm.hub_url`) is unusable.
    #[error("setting up the Hub for LLM agents (config llm.hub_url): {0}")]
    Hub(#[source] hybridgrid_agents_hub::HubError),
    /// The listen address could not be bound.
    #[error("binding {addr}: {source}")]
    Bind {
        /// `server.addr`.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

/// The orchestrator, built but not yet serving.
pub struct App {
    state: AppState,
    cfg: Config,
    stop: CancellationToken,
}

/// Write transactions in flight at once on PostgreSQL unless the config says otherwise.
const POSTGRES_WRITERS: usize = 4;

impl App {
    /// Opens the store (`database_url`, migrations applied) and the bus (`nats_url`), starts the
    /// engine with the native executor (and those the config adds), and prepares the router. `env`
    /// gives the LLM agents their model endpoints and keys (`ANTHROPIC_*`, `OPENAI_*`,
    /// `HUB_API_KEY`); it is taken so that embedders inject one source everywhere.
    pub async fn build(cfg: Config, env: &dyn EnvSource) -> Result<App, AppError> {
        let store = backends::open_store(&cfg.database_url).await?;
        let bus =
            backends::open_bus(&cfg.nats_url, &cfg.events.stream, &cfg.events.subjects).await?;
        let work_dir = cfg
            .engine
            .work_dir
            .clone()
            .unwrap_or_else(|| std::env::temp_dir().join("hg-flow-work"));
        let mut executors = Executors::native(&work_dir);
        if let Some(docker) = cfg.docker.clone() {
            let d = hybridgrid_executors::DockerExecutor::connect(docker)
                .await
                .map_err(AppError::Docker)?;
            executors = executors.docker(d);
        }
        if let Some(dagger) = cfg.dagger.clone() {
            let d = hybridgrid_executors::DaggerExecutor::new(dagger).map_err(AppError::Dagger)?;
            executors = executors.dagger(d);
        }
        if let Some(llm) = cfg.llm.clone() {
            let runner = hybridgrid_flow_engine::StandardExecutor::new(
                hybridgrid_flow_engine::ExecutorEnv::from_env(env),
            );
            let mut agents = hybridgrid_flow_engine::LlmAgents::new(
                hybridgrid_agents_defs::Definitions::local(&llm.definitions),
                std::sync::Arc::new(runner),
                &work_dir,
            );
            if let Some(url) = &llm.hub_url {
                let hub = hybridgrid_agents_hub::HubClient::new(url, env.var("HUB_API_KEY"))
                    .map_err(AppError::Hub)?;
                agents = agents.with_hub(hub);
            }
            executors = executors.llm(agents);
        }
        let mut engine_cfg = cfg.engine.clone();
        if engine_cfg.writers.is_none() && backends::store_kind(&cfg.database_url) == "postgres" {
            // Commits overlap on PostgreSQL: several write transactions in flight.
            engine_cfg.writers = Some(POSTGRES_WRITERS);
        }
        let engine = FlowEngine::start(engine_cfg, store, bus.dyn_bus(), executors).await?;
        info!(
            database = %hybridgrid_core::spec::redact(&cfg.database_url),
            bus = bus.kind(),
            engine_id = engine.engine_id(),
            "hg-flow engine started"
        );
        let state = AppState {
            engine,
            bus,
            store_kind: backends::store_kind(&cfg.database_url),
            metrics: FlowMetrics::new(),
            alerts: Arc::new(cfg.alerts.clone()),
            max_body: cfg.server.max_body_bytes,
        };
        let stop = CancellationToken::new();
        tokio::spawn(count_changes(
            state.engine.clone(),
            state.metrics.clone(),
            stop.clone(),
        ));
        Ok(App { state, cfg, stop })
    }

    /// The engine underneath (for embedders and the demo).
    pub fn engine(&self) -> &FlowEngine {
        &self.state.engine
    }

    /// The full router: API, webhooks, health, metrics, OpenAPI and UI.
    pub fn router(&self) -> Router {
        router(self.state.clone(), &self.cfg)
    }

    /// Binds `server.addr` and serves.
    pub async fn serve(self) -> Result<Handle, AppError> {
        let addr = self.cfg.server.addr.clone();
        let listener = TcpListener::bind(&addr)
            .await
            .map_err(|source| AppError::Bind { addr, source })?;
        self.serve_on(listener).await
    }

    /// Serves on an already bound listener (tests bind `127.0.0.1:0`).
    pub async fn serve_on(self, listener: TcpListener) -> Result<Handle, AppError> {
        let addr = listener.local_addr().map_err(|source| AppError::Bind {
            addr: self.cfg.server.addr.clone(),
            source,
        })?;
        let router = self.router();
        let stop = self.stop.clone();
        let shutdown = stop.clone();
        let task = tokio::spawn(async move {
            let svc = router.into_make_service_with_connect_info::<SocketAddr>();
            if let Err(e) = axum::serve(listener, svc)
                .with_graceful_shutdown(async move { shutdown.cancelled().await })
                .await
            {
                tracing::error!(error = %e, "HTTP server failed");
            }
        });
        info!(%addr, "hg-flow listening");
        Ok(Handle {
            addr,
            stop,
            task,
            engine: self.state.engine.clone(),
            bus: self.state.bus.clone(),
        })
    }
}

/// A serving orchestrator.
pub struct Handle {
    addr: SocketAddr,
    stop: CancellationToken,
    task: JoinHandle<()>,
    engine: FlowEngine,
    bus: backends::Bus,
}

impl Handle {
    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
    /// The engine.
    pub fn engine(&self) -> &FlowEngine {
        &self.engine
    }
    /// The event bus the engine publishes on and event triggers listen to.
    pub fn event_bus(&self) -> Arc<dyn hybridgrid_core::EventBus> {
        self.bus.dyn_bus()
    }
    /// Cancelling this token stops the server (as a signal would).
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
    /// Stops serving, then stops the engine (its running steps' leases are released).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        self.engine.shutdown().await;
    }
}

/// Builds the app and serves it on `server.addr`.
pub async fn start(cfg: Config, env: &dyn EnvSource) -> Result<Handle, AppError> {
    App::build(cfg, env).await?.serve().await
}

/// Waits for SIGINT, SIGTERM or `stop`.
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

fn router(state: AppState, cfg: &Config) -> Router {
    let limiter = RateLimiter::new(cfg.server.rate_limit);
    let token = (!cfg.server.api_token.is_empty())
        .then(|| auth::Token(Arc::from(cfg.server.api_token.as_str())));
    let body_limit = BodyLimit(cfg.server.max_body_bytes);
    let api = Router::new()
        .route("/api/openapi.json", get(routes::openapi))
        .route(
            "/api/agents",
            get(routes::list_agents).post(routes::create_agent),
        )
        .route(
            "/api/agents/{id}",
            get(routes::get_agent)
                .put(routes::update_agent)
                .delete(routes::delete_agent),
        )
        .route(
            "/api/workflows",
            get(routes::list_workflows).post(routes::create_workflow),
        )
        .route(
            "/api/workflows/{id}",
            get(routes::get_workflow)
                .put(routes::update_workflow)
                .delete(routes::delete_workflow),
        )
        .route("/api/workflows/{id}/trigger", post(routes::trigger))
        .route("/api/workflows/{id}/runs", get(routes::list_runs))
        .route("/api/workflows/{id}/runs/{run_id}", get(routes::get_run))
        .route(
            "/api/workflows/{id}/runs/{run_id}/agent-runs",
            get(routes::list_agent_runs),
        )
        .route(
            "/api/workflows/runs/{run_id}/cancel",
            post(routes::cancel_run),
        )
        .route(
            "/api/workflows/runs/{run_id}/retry",
            post(routes::retry_run),
        )
        .route("/api/approvals", get(routes::list_approvals))
        .route("/api/approvals/{id}/decision", post(routes::decide))
        .route("/api/webhooks/alertmanager", post(webhooks::alertmanager))
        .route("/api/webhooks/grafana", post(webhooks::grafana))
        .fallback(error::no_route)
        .layer(axum::middleware::from_fn_with_state(
            token,
            auth::require_token,
        ))
        .layer(axum::middleware::from_fn_with_state(
            limiter,
            crate::ratelimit::limit,
        ));
    Router::new()
        .route("/health", get(routes::health))
        .route("/health/db", get(routes::health_db))
        .route("/health/nats", get(routes::health_nats))
        .route("/metrics", get(routes::metrics))
        .route("/", get(ui::index))
        .route("/ui", get(ui::index))
        .route("/ui/app.js", get(ui::app_js))
        .merge(api)
        .fallback(error::no_route)
        .with_state(state)
        .layer(axum::middleware::from_fn(error::json_method_not_allowed))
        .layer(axum::Extension(body_limit))
        // axum's own default (2 MB) would answer in plain text first; ApiJson enforces ours.
        .layer(axum::extract::DefaultBodyLimit::disable())
}
