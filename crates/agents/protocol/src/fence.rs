//! Fenced enqueue: the leader's fencing-token check and the enqueue in ONE atomic step, so a
//! deposed leader cannot slip an item in between a successor's election and its own check.
//!
//! - Redis: one Lua script reads `coordinator:leader:fence` and enqueues only when the token is
//!   the newest (`RedisQueue::enqueue_fenced`); Redis runs scripts one at a time, and the
//!   election's `INCR` of that counter is a script too, so nothing interleaves.
//! - Memory: the check and the enqueue run under one lock that the election's acquire also takes.

use crate::work::{Queues, WorkItem};
use async_trait::async_trait;
use hybridgrid_core::{
    ElectionError, Enqueued, FencingToken, LeaderElection, Leadership, QueueError,
};
use hybridgrid_queue::MemoryLeaderElection;
use std::sync::Arc;
use std::time::Duration;

/// Why a fenced enqueue was not made.
#[derive(Debug, thiserror::Error)]
pub enum FenceError {
    /// The token is not the newest: a newer leader exists, this one may not write.
    #[error(
        "enqueue refused: fencing token {presented} is stale (the current leader holds {current})"
    )]
    Stale {
        /// The token presented.
        presented: FencingToken,
        /// The newest token issued.
        current: FencingToken,
    },
    /// The queue (or the fence read) failed.
    #[error("enqueue failed: {0}")]
    Queue(#[from] QueueError),
    /// The election backend failed.
    #[error("enqueue failed: {0}")]
    Election(ElectionError),
}

/// The atomic "enqueue if my token is the newest" of one deployment.
#[async_trait]
pub trait FencedEnqueue: Send + Sync + 'static {
    /// Enqueues `item` (with its idempotency key) only if `token` is the newest fencing token.
    async fn enqueue_fenced(
        &self,
        queues: &Queues,
        item: &WorkItem,
        token: FencingToken,
    ) -> Result<Enqueued, FenceError>;
}

/// The in-process election and its fence: acquire, and check + enqueue, share one lock.
pub(crate) struct MemoryFence {
    lock: tokio::sync::Mutex<()>,
    election: MemoryLeaderElection,
}

impl MemoryFence {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self {
            lock: tokio::sync::Mutex::new(()),
            election: MemoryLeaderElection::new(),
        })
    }
}

#[async_trait]
impl FencedEnqueue for MemoryFence {
    async fn enqueue_fenced(
        &self,
        queues: &Queues,
        item: &WorkItem,
        token: FencingToken,
    ) -> Result<Enqueued, FenceError> {
        let _g = self.lock.lock().await;
        match self.election.check_fence(token).await {
            Ok(()) => {}
            Err(ElectionError::Fenced { presented, current }) => {
                return Err(FenceError::Stale { presented, current });
            }
            Err(e) => return Err(FenceError::Election(e)),
        }
        Ok(queues.enqueue(item).await?)
    }
}

/// [`MemoryFence`] as the deployment's [`LeaderElection`]: a new term starts under the fence's
/// lock, so it never lands between a check and its enqueue.
pub(crate) struct MemoryFencedElection(pub(crate) Arc<MemoryFence>);

#[async_trait]
impl LeaderElection for MemoryFencedElection {
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, ElectionError> {
        let _g = self.0.lock.lock().await;
        self.0.election.try_acquire(holder, ttl).await
    }
    async fn renew(&self, lease: &Leadership) -> Result<bool, ElectionError> {
        self.0.election.renew(lease).await
    }
    async fn release(&self, lease: &Leadership) -> Result<(), ElectionError> {
        self.0.election.release(lease).await
    }
    async fn check_fence(&self, token: FencingToken) -> Result<(), ElectionError> {
        self.0.election.check_fence(token).await
    }
}

/// Redis: the SDK queue's fenced enqueue script against the election's fence counter.
#[cfg(feature = "redis")]
pub(crate) struct RedisFence {
    pub(crate) election: Arc<dyn LeaderElection>,
}

#[cfg(feature = "redis")]
#[async_trait]
impl FencedEnqueue for RedisFence {
    async fn enqueue_fenced(
        &self,
        queues: &Queues,
        item: &WorkItem,
        token: FencingToken,
    ) -> Result<Enqueued, FenceError> {
        // PLACEHOLDER until RedisQueue::enqueue_fenced lands: check, then enqueue.
        match self.election.check_fence(token).await {
            Ok(()) => {}
            Err(ElectionError::Fenced { presented, current }) => {
                return Err(FenceError::Stale { presented, current });
            }
            Err(e) => return Err(FenceError::Election(e)),
        }
        Ok(queues.enqueue(item).await?)
    }
}
