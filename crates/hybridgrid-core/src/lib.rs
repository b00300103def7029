//! # hybridgrid-core
//!
//! The domain types and seam traits that every hybridgrid crate builds on: a compile farm, agent
//! runners and a workflow orchestrator are all *work in a [`Queue`], placed by a scheduler, run by an
//! [`Executor`] under a deadline, guarded by a [`CircuitBreaker`], remembered by a [`Store`], with
//! workers found by [`Discovery`], progress told on an [`EventBus`]*. This crate holds no backend: implementations live in
//! `hybridgrid-queue`, `hybridgrid-store`, `hybridgrid-executors`, `hybridgrid-discovery`,
//! `hybridgrid-cache` and `hybridgrid-scheduler`, and every one passes its trait's conformance suite
//! in `hybridgrid-testkit`.
//!
//! Every trait is object-safe; callers hold an `Arc<dyn Queue>` (or `dyn Store`, ...) chosen from
//! config at run time. Every error answers [`Retry`] through a `retry()` method.
//!
//! ```
//! use hybridgrid_core::{NewWork, Priority, TaskSpec};
//! use std::time::Duration;
//!
//! let work = NewWork::new(&b"compile foo.c"[..])
//!     .priority(Priority::High)
//!     .idempotency_key("foo.c@abc123")
//!     .max_attempts(3);
//! assert_eq!(work.priority, Priority::High);
//!
//! let spec = TaskSpec::new(vec!["cc".into(), "-c".into(), "foo.c".into()], Duration::from_secs(300));
//! assert_eq!(spec.command[0], "cc");
//! ```

#[doc = include_str!("../../../docs/ARCHITECTURE.md")]
pub mod architecture {}
pub mod breaker;
pub mod cache;
pub mod clock;
pub mod config;
pub mod discovery;
pub mod doctor;
pub mod election;
pub mod error;
pub mod event;
pub mod executor;
pub mod ids;
pub mod logging;
pub mod queue;
pub mod spec;
pub mod store;
pub mod store_flow;
pub mod task;
pub mod worker;

pub use breaker::{CircuitBreaker, CircuitOpen, CircuitState, CircuitStatus, Outcome};
pub use cache::{Cache, CacheError, CacheStats, Digest};
pub use discovery::{Discovery, WorkerEvent};
pub use election::{ElectionError, FencingToken, LeaderElection, Leadership};
pub use error::{BoxError, Retry};
pub use event::{
    BusMessage, EventBus, EventBusError, check_pattern, check_subject, subject_matches,
};
pub use executor::{ExecError, Executor};
pub use ids::{LeaseToken, RunId, TaskId, WorkId, WorkerId, WorkflowId};
pub use queue::{
    AckedAndClaimed, Claim, Consumer, DEFAULT_DEAD_LETTER_LIMIT, DeadLetter, Depths, Enqueued,
    NewWork, Queue, QueueError,
};
pub use spec::{CacheSpec, EventBusSpec, QueueSpec, SpecError, StoreSpec};
pub use store::{NewRun, Run, RunStatus, Step, Store, StoreError, Transition, Workflow};
pub use task::{InputFile, OutputFile, OutputLimits, Priority, TaskOutput, TaskSpec};
pub use worker::{Capabilities, DiscoverySource, Toolchain, WorkerInfo};

/// Re-exported so implementors need not depend on tokio-util for the executor signature.
pub use tokio_util::sync::CancellationToken;

/// The wire protocol version spoken by this build of hybridgrid (client, coordinator, worker).
pub const PROTOCOL_VERSION: u32 = 1;

#[cfg(test)]
mod object_safety {
    //! Fails to compile if a seam trait stops being object-safe.
    use super::*;
    #[allow(dead_code)]
    fn work_seams(
        _: Box<dyn Queue>,
        _: Box<dyn Executor>,
        _: Box<dyn Discovery>,
        _: Box<dyn clock::Clock>,
    ) {
    }

    #[allow(dead_code)]
    fn state_seams(
        _: Box<dyn CircuitBreaker>,
        _: Box<dyn Store>,
        _: Box<dyn LeaderElection>,
        _: Box<dyn Cache>,
        _: Box<dyn EventBus>,
    ) {
    }
}
