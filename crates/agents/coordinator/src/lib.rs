//! # hybridgrid-agents-coordinator
//!
//! Only the leader polls. The coordinator campaigns for the `coordinator:leader` lease through the
//! SDK [`Elector`] (Redis lease with a fencing token, or the in-process election when embedded),
//! logs `became_leader` / `lost_leadership`, and while it leads:
//! - long-polls the Hub for unread notifications (an empty answer is `poll_timeout`, at debug) and
//!   enqueues one INBOX item per agent and notification (mentions high, replies normal priority);
//! - lists the Hub's agents and enqueues DISCOVERY work (low) for those whose `last_activated_at`
//!   is older than `MIN_STALENESS_SECONDS`;
//! - skips agents in backoff (`work:backoff`).
//!
//! Every enqueue carries an idempotency key (agent + notification, or agent + staleness window), so
//! nothing is queued twice, and the leader's fencing token: the token check and the enqueue are
//! one atomic step (one Lua script on Redis), so a deposed leader cannot enqueue even when it races
//! its successor, and the Hub refuses its polls (`X-Fencing-Token`).
//!
//! ```
//! use hybridgrid_agents_coordinator::{CoordinatorConfig, start};
//! use hybridgrid_agents_hub::{FakeHub, HubClient};
//! use hybridgrid_agents_protocol::{Backends, RunnerMode};
//! use hybridgrid_core::WorkerId;
//! use std::time::Duration;
//!
//! # #[tokio::main]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = FakeHub::start().await?;
//! hub.mention("reviewer", "alice", "@reviewer hello");
//! let backends = Backends::memory();
//! let client = HubClient::new(&hub.url(), Some(hub.api_key().into()))?;
//! let coord = start(CoordinatorConfig::for_tests("c1"), backends.clone(), client, None).await?;
//! let claim = backends.queues
//!     .claim(RunnerMode::Notification, &WorkerId::new("r"), Duration::from_secs(30), Duration::from_secs(10))
//!     .await?
//!     .expect("the mention was enqueued");
//! assert_eq!(claim.item.agent, "reviewer");
//! coord.shutdown().await;
//! # Ok(())
//! # }
//! ```

mod poll;

use axum::Router;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::admin::{self, HealthFn, Metrics};
use hybridgrid_agents_protocol::{Backends, Settings};
use hybridgrid_core::CancellationToken;
use hybridgrid_queue::Elector;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

pub use poll::fenced_enqueue;

/// The coordinator's settings.
#[derive(Clone, Debug)]
pub struct CoordinatorConfig {
    /// This candidate's name (unique per process).
    pub id: String,
    /// Pause between polls (and after errors).
    pub poll_interval: Duration,
    /// Hub long-poll wait (zero: plain polling every `poll_interval`).
    pub long_poll: Duration,
    /// Leadership lease.
    pub leader_lease: Duration,
    /// Agents idle this long get DISCOVERY work.
    pub min_staleness: Duration,
    /// Admin HTTP address (`/health`, `/metrics`, ops); `None` serves nothing.
    pub admin_addr: Option<String>,
}

impl CoordinatorConfig {
    /// From the shared settings.
    pub fn from_settings(s: &Settings) -> Self {
        Self {
            id: s.id.clone(),
            poll_interval: s.poll_interval,
            long_poll: s.long_poll,
            leader_lease: s.leader_lease,
            min_staleness: s.min_staleness,
            admin_addr: Some(s.admin_addr.clone()),
        }
    }

    /// Fast timings for tests and the demo: 2 s lease, 1 s long-poll, no admin server.
    pub fn for_tests(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            poll_interval: Duration::from_millis(200),
            long_poll: Duration::from_secs(1),
            leader_lease: Duration::from_secs(2),
            min_staleness: Duration::from_secs(3600),
            admin_addr: None,
        }
    }
}

/// Why the coordinator could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The admin address could not be bound.
    #[error("admin server: {0}")]
    Admin(#[from] std::io::Error),
}

/// A running coordinator.
pub struct Coordinator {
    elector: Arc<Elector>,
    stop: CancellationToken,
    task: JoinHandle<()>,
    admin: Option<SocketAddr>,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("leader", &self.elector.is_leader())
            .field("admin", &self.admin)
            .finish()
    }
}

impl Coordinator {
    /// Whether this coordinator currently leads.
    pub fn is_leader(&self) -> bool {
        self.elector.is_leader()
    }
    /// The bound admin address, if serving.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }
    /// Stops polling, releases the lease.
    pub async fn shutdown(self) {
        self.stop.cancel();
        let _ = self.task.await;
        if let Ok(e) = Arc::try_unwrap(self.elector) {
            e.shutdown().await;
        }
    }
}

/// Starts campaigning and, while leader, polling. `defs`, when given, limits DISCOVERY to defined
/// agents.
pub async fn start(
    cfg: CoordinatorConfig,
    backends: Backends,
    hub: HubClient,
    defs: Option<Definitions>,
) -> Result<Coordinator, StartError> {
    let elector = Arc::new(Elector::start(
        backends.election.clone(),
        cfg.id.clone(),
        cfg.leader_lease,
    ));
    let (metrics, registry) = Metrics::new();
    let stop = CancellationToken::new();
    let admin = match &cfg.admin_addr {
        None => None,
        Some(addr) => {
            let e = elector.clone();
            let id = cfg.id.clone();
            let health: HealthFn = Arc::new(move || {
                let leading = e.is_leader();
                let token = e.leadership().map(|l| l.token.0);
                let id = id.clone();
                Box::pin(async move {
                    serde_json::json!({
                        "status": "ok", "role": "coordinator", "id": id,
                        "is_leader": leading, "fencing_token": token,
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
    let poller = poll::Poller {
        cfg,
        backends,
        hub,
        defs,
        elector: elector.clone(),
        metrics,
        stop: stop.clone(),
    };
    let task = tokio::spawn(poller.run());
    Ok(Coordinator {
        elector,
        stop,
        task,
        admin,
    })
}
