//! # hybridgrid-queue
//!
//! Queue backends: in-memory (embedded default), Redis/Valkey and NATS JetStream; plus leader election.
//! Every backend implements [`hybridgrid_core::Queue`] (priorities, leases, retries, idempotency keys,
//! dead letters) and passes `hybridgrid_testkit::queue::run_queue_suite`; callers hold an
//! `Arc<dyn Queue>` chosen from config.
//!
//! ```
//! use hybridgrid_core::{NewWork, Priority, Queue, WorkerId};
//! use hybridgrid_queue::MemoryQueue;
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), hybridgrid_core::QueueError> {
//! let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new());
//! queue.enqueue(NewWork::new(&b"link app"[..])).await?;
//! queue.enqueue(NewWork::new(&b"compile foo.c"[..]).priority(Priority::High)).await?;
//!
//! let worker = WorkerId::new("worker-1");
//! let lease = Duration::from_secs(30);
//! let claim = queue.claim(&worker, lease, Duration::from_secs(1)).await?.expect("work is ready");
//! assert_eq!(&claim.payload[..], b"compile foo.c"); // high priority first
//! assert_eq!(claim.attempt, 1);
//! queue.ack(&claim.token).await?; // done for good
//!
//! let claim = queue.claim(&worker, lease, Duration::ZERO).await?.expect("work is ready");
//! queue.nack(&claim.token, Duration::from_millis(50)).await?; // retried after 50 ms
//! let retry = queue.claim(&worker, lease, Duration::from_secs(1)).await?.expect("redelivered");
//! assert_eq!((retry.id, retry.attempt), (claim.id, 2));
//! # Ok(())
//! # }
//! ```
//!
//! Modules (each backend is one module, gated once):
//! - `memory` — [`MemoryQueue`], always built.
//! - `redis` (feature `redis`) — `RedisQueue` (one server or a Redis Cluster; batch claims,
//!   ack-and-claim in one round trip, priority aging, consumer liveness, fenced enqueue) and
//!   `RedisLeaderElection`.
//! - `nats` (feature `nats`) — `NatsQueue` and `NatsEventBus` (a JetStream stream per bus).
//!   See `docs/backends/nats.md` for the NATS layout.
//! - `event` — [`MemoryEventBus`], the in-process [`hybridgrid_core::EventBus`], always built.
//! - `open` — [`open_queue`] and [`open_event_bus`]: a backend from a
//!   [`hybridgrid_core::QueueSpec`] / [`hybridgrid_core::EventBusSpec`] read from config; a backend
//!   whose feature is off is a clear error naming the feature.
//! - `election` — leader election: [`MemoryLeaderElection`] and the [`Elector`] driver (keeps a
//!   lease in the background, says whether this process leads), always built;
//!   `RedisLeaderElection` with feature `redis`. See `docs/backends/redis.md` for the Redis layout.

mod memory;
pub use memory::MemoryQueue;

mod election;
pub use election::{Elector, MemoryLeaderElection};

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisLeaderElection, RedisQueue};

mod event;
pub use event::MemoryEventBus;

mod open;
pub use open::{open_event_bus, open_queue};

#[cfg(feature = "nats")]
mod nats;
#[cfg(feature = "nats")]
pub use nats::{NatsEventBus, NatsEventBusConfig, NatsQueue, NatsQueueConfig};
