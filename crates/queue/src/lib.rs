//! # hybridgrid-queue
//!
//! Queue backends: in-memory (embedded default), Redis/Valkey and NATS JetStream; plus leader election.
//!
//! Modules (each backend is one module, gated once):
//! - `memory` — [`MemoryQueue`], always built.
//! - `redis` (feature `redis`) — `RedisQueue` and `RedisLeaderElection`.
//! - `nats` (feature `nats`) — `NatsQueue` and the JetStream event bus.

mod election;
pub use election::{Elector, MemoryLeaderElection};

#[cfg(feature = "redis")]
mod redis;
#[cfg(feature = "redis")]
pub use self::redis::{RedisLeaderElection, RedisQueue};
