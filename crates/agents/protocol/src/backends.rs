//! [`Backends`]: the queues, agent state and leader election one deployment shares, built from
//! `VALKEY_URL` (`redis://...`) or in memory (`memory://`, one process).

use crate::settings::redact_url;
use crate::state::{AgentState, BackoffPolicy, MemoryAgentState};
use crate::work::Queues;
use hybridgrid_core::LeaderElection;
use hybridgrid_queue::{MemoryLeaderElection, MemoryQueue};
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
    /// The election's fencing counter (`coordinator:leader:fence`), which
    /// [`Backends::enqueue_fenced`] checks atomically with the enqueue.
    pub fence_key: String,
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
    /// Enqueues `item` only if `token` is the newest fencing token of the leader election, the
    /// check and the enqueue in one atomic step (one Lua script on Redis; under the election's
    /// lock in memory): what a leader does, so a deposed one cannot enqueue even when it races its
    /// successor. A stale token is [`QueueError::Fenced`](hybridgrid_core::QueueError::Fenced).
    pub async fn enqueue_fenced(
        &self,
        item: &crate::WorkItem,
        token: hybridgrid_core::FencingToken,
    ) -> Result<hybridgrid_core::Enqueued, hybridgrid_core::QueueError> {
        self.queues
            .enqueue_fenced(item, &self.fence_key, token)
            .await
    }

    /// In-process queues, state and election (the embedded mode).
    pub fn memory() -> Self {
        Self::memory_with(BackoffPolicy::default())
    }

    /// [`Backends::memory`] backing agents off per `policy`.
    pub fn memory_with(policy: BackoffPolicy) -> Self {
        let election = Arc::new(MemoryLeaderElection::new());
        let fence_key = crate::keys::fence_key("");
        let (inbox, discovery) = (MemoryQueue::new(), MemoryQueue::new());
        inbox.add_fence(fence_key.clone(), election.clone());
        discovery.add_fence(fence_key.clone(), election.clone());
        Self {
            queues: Queues {
                inbox: Arc::new(inbox),
                discovery: Arc::new(discovery),
            },
            state: Arc::new(MemoryAgentState::with_policy(policy)),
            election,
            fence_key,
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
        let election = RedisLeaderElection::new(url, crate::keys::leader_key(prefix))
            .map_err(|e| unreachable(&e))?;
        let fence_key = election.fence_key().to_owned();
        Ok(Self {
            queues: Queues {
                inbox: Arc::new(inbox),
                discovery: Arc::new(discovery),
            },
            state: Arc::new(state),
            election: Arc::new(election),
            fence_key,
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
