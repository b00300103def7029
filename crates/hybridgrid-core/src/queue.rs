//! The [`Queue`] seam: at-least-once work with priorities, leases, retries and dead letters.

use crate::election::FencingToken;
use crate::error::{BoxError, Retry};
use crate::ids::{LeaseToken, WorkId, WorkerId};
use crate::task::Priority;
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::time::{Duration, SystemTime};

/// Work to enqueue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewWork {
    /// Opaque payload; typed layers serialize into it.
    pub payload: Bytes,
    /// Which priority lane it joins.
    pub priority: Priority,
    /// When set, a second enqueue with the same key (while the first is queued, leased or dead)
    /// returns [`Enqueued::Duplicate`] with the existing id instead of adding work.
    pub idempotency_key: Option<String>,
    /// Claims allowed before the item is dead-lettered (at least 1).
    pub max_attempts: u32,
    /// Not claimable before this delay has passed.
    pub delay: Duration,
}

impl NewWork {
    /// Normal priority, no key, 3 attempts, no delay.
    pub fn new(payload: impl Into<Bytes>) -> Self {
        Self {
            payload: payload.into(),
            priority: Priority::Normal,
            idempotency_key: None,
            max_attempts: 3,
            delay: Duration::ZERO,
        }
    }
    /// Sets the priority.
    pub fn priority(mut self, priority: Priority) -> Self {
        self.priority = priority;
        self
    }
    /// Sets the idempotency key.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
    /// Sets the attempt budget.
    pub fn max_attempts(mut self, n: u32) -> Self {
        self.max_attempts = n;
        self
    }
    /// Sets the initial delay.
    pub fn delay(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// Result of [`Queue::enqueue`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Enqueued {
    /// New work was added with this id.
    Created(WorkId),
    /// The idempotency key was already known; this is the existing item's id.
    Duplicate(WorkId),
}

impl Enqueued {
    /// The item's id either way.
    pub fn id(&self) -> &WorkId {
        match self {
            Enqueued::Created(id) | Enqueued::Duplicate(id) => id,
        }
    }
}

/// A leased item. Until `ack`, `nack` or lease expiry, no one else can claim it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// The item's id.
    pub id: WorkId,
    /// Proof of this lease; a later claim of the same item gets a different token.
    pub token: LeaseToken,
    /// 1 on the first claim, incremented on every redelivery.
    pub attempt: u32,
    /// The attempt budget it was enqueued with.
    pub max_attempts: u32,
    /// Its priority lane.
    pub priority: Priority,
    /// The payload as enqueued.
    pub payload: Bytes,
}

/// Item counts, per state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Depths {
    /// Claimable now, per priority (indexed by [`Priority::index`]).
    pub ready: [u64; 3],
    /// Waiting for a delay (nack retry-after or initial delay).
    pub delayed: u64,
    /// Leased to a claimer.
    pub in_flight: u64,
    /// Dead-lettered.
    pub dead: u64,
}

impl Depths {
    /// Claimable items of one priority.
    pub fn ready_at(&self, p: Priority) -> u64 {
        self.ready[p.index()]
    }
    /// Claimable items of all priorities.
    pub fn ready_total(&self) -> u64 {
        self.ready.iter().sum()
    }
}

/// An item that used up its attempts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeadLetter {
    /// The item's id.
    pub id: WorkId,
    /// Its payload.
    pub payload: Bytes,
    /// Claims it had.
    pub attempts: u32,
    /// Why it died (`lease expired`, `nacked`).
    pub reason: String,
}

/// What [`Queue::ack_and_claim`] did: the acks whose lease was no longer held, and the new claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AckedAndClaimed {
    /// Tokens that were not acked because their lease was no longer held (acked, nacked or
    /// expired); every other token was acked.
    pub lost: Vec<LeaseToken>,
    /// Items claimed after the acks (possibly none).
    pub claims: Vec<Claim>,
}

/// A consumer as the queue last saw it: when it last fetched (claimed, or tried to).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consumer {
    /// The worker that claims.
    pub worker: WorkerId,
    /// When it last ran a claim, by the backend's clock (whether or not it got an item).
    pub last_fetch: SystemTime,
}

impl Consumer {
    /// How long ago it last fetched, as of `now` (zero if `last_fetch` is in the future).
    pub fn idle_for(&self, now: SystemTime) -> Duration {
        now.duration_since(self.last_fetch).unwrap_or_default()
    }

    /// "Alive but not fetching": work is ready (`depths`) and this consumer has not fetched for
    /// longer than `max_idle`. A `/health` endpoint of a live process reports this as unhealthy.
    pub fn stalled(&self, depths: &Depths, now: SystemTime, max_idle: Duration) -> bool {
        depths.ready_total() > 0 && self.idle_for(now) > max_idle
    }
}

/// Errors of a [`Queue`].
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The lease is unknown: it was acked, nacked, or expired and the item redelivered.
    #[error("lease {token} is no longer held (acked, nacked or expired)")]
    LeaseLost {
        /// The stale token.
        token: LeaseToken,
    },
    /// The request itself is wrong (e.g. `max_attempts` of 0).
    #[error("invalid queue request: {0}")]
    Invalid(String),
    /// [`Queue::enqueue_fenced`] refused the work: `presented` is not the newest token of the
    /// fencing counter `fence` (the caller was deposed as leader).
    #[error("enqueue refused: fencing token {presented} of {fence:?} is stale (current {current})")]
    Fenced {
        /// The fencing counter checked.
        fence: String,
        /// The token presented.
        presented: FencingToken,
        /// The newest token issued.
        current: FencingToken,
    },
    /// The backend failed (connection lost, server restarting).
    #[error("{backend} queue backend failed: {source}")]
    Backend {
        /// Backend name (`redis`, `nats`).
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl QueueError {
    /// Whether the operation is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            QueueError::LeaseLost { .. } | QueueError::Invalid(_) | QueueError::Fenced { .. } => {
                Retry::Never
            }
            QueueError::Backend { .. } => Retry::After(Duration::from_millis(250)),
        }
    }
}

/// How many dead letters a queue keeps unless configured otherwise; past it the oldest is dropped
/// (a queue whose work keeps failing must not grow without bound).
pub const DEFAULT_DEAD_LETTER_LIMIT: usize = 10_000;

/// At-least-once work queue with priorities and leases (visibility timeouts).
///
/// Every backend passes `hybridgrid_testkit::queue::run_queue_suite`.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// Adds work. A repeated idempotency key returns the id that already exists.
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError>;
    /// Waits up to `wait` for the highest-priority visible item and leases it to `worker` for `lease`.
    /// Returns `None` when nothing became visible in time.
    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>, QueueError>;
    /// Completes the item for good.
    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError>;
    /// Gives the item back, visible again after `retry_after`; dead-lettered when its attempts are used up.
    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError>;
    /// Extends a held lease to `by` from now.
    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError>;
    /// Item counts per state.
    async fn depths(&self) -> Result<Depths, QueueError>;
    /// Up to `limit` dead-lettered items, oldest first. Backends keep a bounded number of dead
    /// letters ([`DEFAULT_DEAD_LETTER_LIMIT`] unless configured): past it the oldest is dropped,
    /// with its payload and idempotency key.
    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError>;

    /// Adds several items, in order; one result per item. A backend may do it in one round trip
    /// (the default enqueues one by one and stops at the first error).
    async fn enqueue_many(&self, work: Vec<NewWork>) -> Result<Vec<Enqueued>, QueueError> {
        let mut out = Vec::with_capacity(work.len());
        for w in work {
            out.push(self.enqueue(w).await?);
        }
        Ok(out)
    }

    /// Adds work only if `token` is still the newest token of the fencing counter `fence` (for
    /// `RedisLeaderElection`, its `fence_key()`), checked atomically with the enqueue: a deposed
    /// leader gets [`QueueError::Fenced`] even when it races its successor. Idempotency keys work
    /// as in [`Queue::enqueue`]. The default refuses: the backend cannot do it atomically.
    async fn enqueue_fenced(
        &self,
        work: NewWork,
        fence: &str,
        token: FencingToken,
    ) -> Result<Enqueued, QueueError> {
        let _ = (work, token);
        Err(QueueError::Invalid(format!(
            "this queue backend has no atomic fenced enqueue (fence {fence:?})"
        )))
    }

    /// Like [`Queue::claim`], but takes up to `max` items (at least one unless `wait` runs out):
    /// waits for the first, then takes whatever else is ready, in claim order. A backend may do it
    /// in one round trip; the default claims one by one.
    async fn claim_many(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        let mut out = Vec::new();
        if max == 0 {
            return Ok(out);
        }
        match self.claim(worker, lease, wait).await? {
            Some(c) => out.push(c),
            None => return Ok(out),
        }
        while out.len() < max {
            match self.claim(worker, lease, Duration::ZERO).await? {
                Some(c) => out.push(c),
                None => break,
            }
        }
        Ok(out)
    }

    /// Acks `done`, then claims up to `max` items as [`Queue::claim_many`] does (`max` 0 only
    /// acks). A backend may do both in one round trip. A token whose lease is no longer held is
    /// reported in [`AckedAndClaimed::lost`] instead of failing the call.
    async fn ack_and_claim(
        &self,
        done: &[LeaseToken],
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<AckedAndClaimed, QueueError> {
        let mut lost = Vec::new();
        for token in done {
            match self.ack(token).await {
                Ok(()) => {}
                Err(QueueError::LeaseLost { token }) => lost.push(token),
                Err(e) => return Err(e),
            }
        }
        let claims = self.claim_many(worker, max, lease, wait).await?;
        Ok(AckedAndClaimed { lost, claims })
    }

    /// The consumers seen claiming, with when each last fetched (see [`Consumer::stalled`]).
    /// Backends that do not track consumers return an empty list (the default).
    async fn consumers(&self) -> Result<Vec<Consumer>, QueueError> {
        Ok(Vec::new())
    }
}
