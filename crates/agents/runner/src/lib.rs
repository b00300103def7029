//! # hybridgrid-agents-runner
//!
//! A runner claims only the work its mode takes (`notification` → INBOX, `exploration` →
//! DISCOVERY, `hybrid` → both), highest priority first, and runs up to
//! `MAX_CONCURRENT_ACTIVATIONS` activations at once. Each activation:
//! - holds its queue lease and its `activation:{id}` marker, both extended every third of the
//!   lease while it runs (a dead runner's item returns after the lease; its marker expires);
//! - is bounded by `ACTIVATION_TIMEOUT` and can be cancelled by an operator (`hg-agents cancel`);
//!   either kills the executor's process tree;
//! - runs the agent through an [`AgentExecutor`] (the native LLM loop or a coding CLI) with its
//!   Hub tools gated by grants ([`PostGate`]), and posts the answer idempotently (one reply per
//!   notification, even when an activation runs twice), after checking daily limits and the
//!   Hub's budget health;
//! - logs `activation_started`, `activation_completed activation_duration=...` or
//!   `activation_failed error=...`; failures count towards the agent's backoff.
//!
//! ```no_run
//! use hybridgrid_agents_runner::{RunnerConfig, start, AgentExecutor};
//! # async fn demo(backends: hybridgrid_agents_protocol::Backends, hub: hybridgrid_agents_hub::HubClient,
//! #   defs: hybridgrid_agents_defs::Definitions, exec: std::sync::Arc<dyn AgentExecutor>) -> Result<(), Box<dyn std::error::Error>> {
//! let runner = start(RunnerConfig::for_tests("r1"), backends, hub, defs, exec).await?;
//! runner.shutdown().await;
//! # Ok(()) }
//! ```

mod activation;
pub mod doctor;
mod executor;
mod gate;
mod hub_tools;
mod standard;

pub use executor::{ActivationContext, AgentExecutor, AgentResult, AgentRun};
pub use gate::{GateError, PostGate};
pub use hub_tools::HubTools;
pub use standard::{ExecutorEnv, StandardExecutor};

use activation::Activations;
use axum::Router;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::admin::{self, HealthFn, Metrics};
use hybridgrid_agents_protocol::{Backends, RunnerMode, Settings};
use hybridgrid_core::{CancellationToken, WorkerId};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tracing::{info, warn};

/// The runner's settings.
#[derive(Clone)]
pub struct RunnerConfig {
    /// This runner's name.
    pub id: String,
    /// Which work it claims.
    pub mode: RunnerMode,
    /// Activations at once.
    pub max_concurrent: usize,
    /// One activation's deadline.
    pub activation_timeout: Duration,
    /// Queue lease (extended every third while running).
    pub work_lease: Duration,
    /// Longest block of one claim.
    pub claim_wait: Duration,
    /// Admin HTTP address; `None` serves nothing.
    pub admin_addr: Option<String>,
    /// Credentials by environment name (`GITHUB_PAT`), handed to agents whose grants unlock them.
    pub credentials: BTreeMap<String, String>,
}

impl std::fmt::Debug for RunnerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunnerConfig")
            .field("id", &self.id)
            .field("mode", &self.mode)
            .field("max_concurrent", &self.max_concurrent)
            .field("activation_timeout", &self.activation_timeout)
            .field("credentials", &self.credentials.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

/// Environment variables a grant's credential can come from.
pub const CREDENTIAL_VARS: &[&str] = &[
    "GITHUB_PAT",
    "GITLAB_TOKEN",
    "SLACK_BOT_TOKEN",
    "LINEAR_API_KEY",
    "NOTION_TOKEN",
    "BRAVE_API_KEY",
];

impl RunnerConfig {
    /// From the shared settings; credentials from `env`.
    pub fn from_settings(s: &Settings, env: &dyn hybridgrid_core::config::EnvSource) -> Self {
        Self {
            id: s.id.clone(),
            mode: s.runner_mode,
            max_concurrent: s.max_concurrent_activations,
            activation_timeout: s.activation_timeout,
            work_lease: s.work_lease,
            claim_wait: Duration::from_secs(1),
            admin_addr: Some(s.admin_addr.clone()),
            credentials: CREDENTIAL_VARS
                .iter()
                .filter_map(|v| {
                    env.var(v)
                        .filter(|x| !x.is_empty())
                        .map(|x| ((*v).to_owned(), x))
                })
                .collect(),
        }
    }

    /// Hybrid, one at a time, 60 s timeout, 3 s lease, no admin server.
    pub fn for_tests(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            mode: RunnerMode::Hybrid,
            max_concurrent: 1,
            activation_timeout: Duration::from_secs(60),
            work_lease: Duration::from_secs(3),
            claim_wait: Duration::from_millis(500),
            admin_addr: None,
            credentials: BTreeMap::new(),
        }
    }
}

/// Why the runner could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin address could not be bound.
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
}

/// A running runner.
pub struct Runner {
    stop: CancellationToken,
    task: JoinHandle<()>,
    admin: Option<SocketAddr>,
}

impl std::fmt::Debug for Runner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runner")
            .field("admin", &self.admin)
            .finish()
    }
}

impl Runner {
    /// The bound admin address, if serving.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }
    /// Stops claiming and cancels running activations (their items return after the lease).
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// The queues a mode watches, for the startup log.
fn watched(mode: RunnerMode, prefix: &str) -> Vec<String> {
    let lanes = |p: &str| ["high", "normal", "low"].map(|l| format!("{p}work:queue:{l}"));
    let mut v = Vec::new();
    if mode.takes(hybridgrid_agents_protocol::TaskType::Inbox) {
        v.extend(lanes(prefix));
    }
    if mode.takes(hybridgrid_agents_protocol::TaskType::Discovery) {
        v.extend(lanes(&format!("{prefix}discovery:")));
    }
    v
}

/// Starts claiming. `prefix` only names the watched keys in the startup log.
pub async fn start(
    cfg: RunnerConfig,
    backends: Backends,
    hub: HubClient,
    defs: Definitions,
    executor: Arc<dyn AgentExecutor>,
) -> Result<Runner, StartError> {
    start_with_prefix(cfg, backends, hub, defs, executor, "").await
}

/// [`start`], naming the Redis key prefix in the startup log.
pub async fn start_with_prefix(
    cfg: RunnerConfig,
    backends: Backends,
    hub: HubClient,
    defs: Definitions,
    executor: Arc<dyn AgentExecutor>,
    prefix: &str,
) -> Result<Runner, StartError> {
    let (metrics, registry) = Metrics::new();
    let stop = CancellationToken::new();
    let admin = match &cfg.admin_addr {
        None => None,
        Some(addr) => {
            let id = cfg.id.clone();
            let mode = cfg.mode;
            let m = metrics.clone();
            let max = cfg.max_concurrent;
            let health: HealthFn = Arc::new(move || {
                let id = id.clone();
                let running = m.running.get();
                Box::pin(async move {
                    serde_json::json!({
                        "status": "ok", "role": "runner", "id": id, "mode": mode.as_str(),
                        "running": running, "max_concurrent_activations": max,
                    })
                })
            });
            let router: Router = admin::router(
                Arc::new(registry),
                health,
                admin::ops_routes(backends.state.clone()),
            );
            let s = stop.clone();
            Some(admin::serve(addr, router, async move { s.cancelled().await }).await?)
        }
    };
    info!(
        runner = %cfg.id,
        mode = cfg.mode.as_str(),
        queues = ?watched(cfg.mode, prefix),
        max_concurrent_activations = cfg.max_concurrent,
        "runner_started"
    );
    let acts = Arc::new(Activations {
        cfg: cfg.clone(),
        backends,
        hub,
        defs,
        executor,
        metrics,
        stop: stop.clone(),
    });
    let task = tokio::spawn(claim_loop(acts, stop.clone()));
    Ok(Runner { stop, task, admin })
}

async fn claim_loop(acts: Arc<Activations>, stop: CancellationToken) {
    let permits = Arc::new(Semaphore::new(acts.cfg.max_concurrent.max(1)));
    let worker = WorkerId::new(acts.cfg.id.clone());
    let mut tasks = tokio::task::JoinSet::new();
    let mut failing = false;
    loop {
        while tasks.try_join_next().is_some() {}
        let permit = tokio::select! {
            _ = stop.cancelled() => break,
            p = permits.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => break },
        };
        let claimed = tokio::select! {
            _ = stop.cancelled() => break,
            c = acts.backends.queues.claim(acts.cfg.mode, &worker, acts.cfg.work_lease, acts.cfg.claim_wait) => c,
        };
        match claimed {
            Ok(Some(claim)) => {
                if failing {
                    info!("queue_backend_recovered");
                    failing = false;
                }
                let acts = acts.clone();
                tasks.spawn(async move {
                    acts.run(claim).await;
                    drop(permit);
                });
            }
            Ok(None) => {
                if failing {
                    info!("queue_backend_recovered");
                    failing = false;
                }
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "claim_failed");
                }
                failing = true;
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
    // Running activations see `stop` and end; their items return after the lease.
    while tasks.join_next().await.is_some() {}
}
