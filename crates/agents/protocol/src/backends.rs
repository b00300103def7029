//! [`Backends`]: the queues, agent state and leader election one deployment shares, built from
//! `VALKEY_URL` (`redis://...`) or in memory (`memory://`, one process).

use crate::fence::{FencedEnqueue, MemoryFence, MemoryFencedElection};
use crate::settings::redact_url;
use crate::state::{AgentState, BackoffPolicy, MemoryAgentState};
use crate::work::Queues;
use hybridgrid_core::LeaderElection;
use hybridgrid_queue::MemoryQueue;
use std::sync::Arc;

/// Why the backends could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    /// The server at `VALKEY_URL` did not answer.
    #[error("VALKEY_URL {url} is unreachable: {reason}")]
    Unreachable {
        /// The URL, password redacted.
        url: String,
        /// The client's error.
        reason: String,
    },
    /// The URL's scheme is not supported (or the `redis` feature is off).
    #[error("VALKEY_URL {url}: {reason}")]
    Unsupported {
        /// The URL, password redacted.
        url: String,
        /// Why.
        reason: String,
    },
}

/// Everything the roles share.
#[derive(Clone)]
pub struct Backends {
    /// One queue per task type.
    pub queues: Queues,
    /// Backoff, activations, cancel flags, daily counters.
    pub state: Arc<dyn AgentState>,
    /// The coordinator's leadership lease.
    pub election: Arc<dyn LeaderElection>,
    /// The leader's enqueue: fencing check and enqueue in one atomic step.
    pub fence: Arc<dyn FencedEnqueue>,
    /// `memory` or `redis`.
    pub kind: &'static str,
}

impl std::fmt::Debug for Backends {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backends")
            .field("kind", &self.kind)
            .finish()
    }
}

impl Backends {
    /// Enqueues `item` only if `token` is the newest fencing token, in one atomic step (see
    /// [`FencedEnqueue`]): what a leader does, so a deposed one cannot enqueue.
    pub async fn enqueue_fenced(
        &self,
        item: &crate::WorkItem,
        token: hybridgrid_core::FencingToken,
    ) -> Result<hybridgrid_core::Enqueued, crate::FenceError> {
        self.fence.enqueue_fenced(&self.queues, item, token).await
    }

    /// In-process queues, state and election (the embedded mode).
    pub fn memory() -> Self {
        Self::memory_with(BackoffPolicy::default())
    }

    /// [`Backends::memory`] backing agents off per `policy`.
    pub fn memory_with(policy: BackoffPolicy) -> Self {
        let fence = MemoryFence::new();
        Self {
            queues: Queues {
                inbox: Arc::new(MemoryQueue::new()),
                discovery: Arc::new(MemoryQueue::new()),
            },
            state: Arc::new(MemoryAgentState::with_policy(policy)),
            election: Arc::new(MemoryFencedElection(fence.clone())),
            fence,
            kind: "memory",
        }
    }

    /// Connects to `url` (`redis://`, `rediss://`; `memory://` gives [`Backends::memory`]), with
    /// every key under `prefix`. INBOX work uses the guide's `work:queue:*` keys, DISCOVERY work
    /// `discovery:work:queue:*` (see [`crate::keys`]).
    pub async fn connect(url: &str, prefix: &str) -> Result<Self, BackendError> {
        Self::connect_with(url, prefix, BackoffPolicy::default()).await
    }

    /// [`Backends::connect`] backing agents off per `policy` (`AGENT_BACKOFF_BASE`).
    pub async fn connect_with(
        url: &str,
        prefix: &str,
        policy: BackoffPolicy,
    ) -> Result<Self, BackendError> {
        if url.starts_with("memory://") {
            return Ok(Self::memory_with(policy));
        }
        if !(url.starts_with("redis://") || url.starts_with("rediss://")) {
            return Err(BackendError::Unsupported {
                url: redact_url(url),
                reason: "expected redis://, rediss:// or memory://".into(),
            });
        }
        Self::connect_redis(url, prefix, policy).await
    }

    #[cfg(feature = "redis")]
    async fn connect_redis(
        url: &str,
        prefix: &str,
        policy: BackoffPolicy,
    ) -> Result<Self, BackendError> {
        use hybridgrid_queue::{RedisLeaderElection, RedisQueue};
        let unreachable = |e: &dyn std::fmt::Display| BackendError::Unreachable {
            url: redact_url(url),
            reason: e.to_string().replace(url, &redact_url(url)),
        };
        let inbox = RedisQueue::connect(url, prefix.to_owned())
            .await
            .map_err(|e| unreachable(&e))?;
        let discovery = RedisQueue::connect(url, format!("{prefix}discovery:"))
            .await
            .map_err(|e| unreachable(&e))?;
        let state = crate::state::RedisAgentState::new(url, prefix)
            .map_err(|e| unreachable(&e))?
            .with_policy(policy);
        let election: Arc<dyn LeaderElection> = Arc::new(
            RedisLeaderElection::new(url, crate::keys::leader_key(prefix))
                .map_err(|e| unreachable(&e))?,
        );
        let fence = Arc::new(crate::fence::RedisFence {
            election: election.clone(),
        });
        Ok(Self {
            queues: Queues {
                inbox: Arc::new(inbox),
                discovery: Arc::new(discovery),
            },
            state: Arc::new(state),
            election,
            fence,
            kind: "redis",
        })
    }

    #[cfg(not(feature = "redis"))]
    async fn connect_redis(
        url: &str,
        _prefix: &str,
        _policy: BackoffPolicy,
    ) -> Result<Self, BackendError> {
        Err(BackendError::Unsupported {
            url: redact_url(url),
            reason: "built without the `redis` feature".into(),
        })
    }
}
