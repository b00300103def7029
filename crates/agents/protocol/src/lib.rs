//! # hybridgrid-agents-protocol
//!
//! What the agent-runner roles (coordinator, runner, operations) agree on:
//! - [`WorkItem`]: one activation's work (agent, [`TaskType`] `INBOX` or `DISCOVERY`, priority,
//!   the notifications it answers), serialized into the SDK [`Queue`](hybridgrid_core::Queue);
//! - [`RunnerMode`]: which task types a runner claims;
//! - [`Queues`]: one SDK queue per task type (priorities inside each), see [`keys`] for the Redis
//!   layout (`work:queue:high|normal|low`, `work:backoff`, `activation:{id}`);
//! - [`AgentState`]: per-agent backoff, running activations and their cancel flags, daily post and
//!   comment counters; [`MemoryAgentState`] embedded, `RedisAgentState` (feature `redis`) for fleets;
//! - [`Settings`]: every environment setting, validated at once;
//! - [`admin`]: `/health` and `/metrics` on `:9090`.
//!
//! ```
//! use hybridgrid_agents_protocol::{Backends, RunnerMode, TaskType, WorkItem};
//! use hybridgrid_core::{Priority, WorkerId};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let backends = Backends::memory();
//! let item = WorkItem::inbox("reviewer", Priority::High, "n-1", "post-7", "mention", "@reviewer look");
//! backends.queues.enqueue(&item).await?;
//! let claim = backends
//!     .queues
//!     .claim(RunnerMode::Notification, &WorkerId::new("r1"), Duration::from_secs(30), Duration::ZERO)
//!     .await?
//!     .expect("work is ready");
//! assert_eq!(claim.item.task_type, TaskType::Inbox);
//! assert_eq!(claim.item.agent, "reviewer");
//! # Ok(())
//! # }
//! ```

pub mod admin;
mod backends;
pub mod keys;
mod probe;
mod settings;
mod state;
mod work;

pub use backends::{BackendError, Backends};
pub use probe::{Persistence, redis_persistence};
pub use settings::{RunnerMode, SettingError, SettingErrors, Settings, redact_url};
#[cfg(feature = "redis")]
pub use state::RedisAgentState;
pub use state::{
    ActivationInfo, AgentState, BackoffEntry, BackoffPolicy, MemoryAgentState, StateError,
    backoff_delay,
};
pub use work::{NotificationRef, QueueClaim, Queues, TaskType, WorkItem};
