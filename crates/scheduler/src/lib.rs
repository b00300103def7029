//! # hybridgrid-scheduler
//!
//! Where work runs: a worker [`Registry`] that places each task on a matching, lightly loaded,
//! fast worker whose circuit is closed ([`Registry::place`]), the per-worker circuit breaker that
//! keeps failing workers out ([`KeyedBreaker`]), and retry delays ([`Backoff`]).
//!
//! ```
//! use hybridgrid_core::clock::ManualClock;
//! use hybridgrid_core::{Capabilities, CircuitBreaker, DiscoverySource, Outcome, Toolchain, WorkerId, WorkerInfo};
//! use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker, NoPlacement, PlacementRequest, Registry};
//! use std::sync::Arc;
//! use std::time::Duration;
//!
//! let gcc = Toolchain { name: "gcc".into(), version: "12.2.0".into(), target: "x86_64-linux-gnu".into(), binary_hash: String::new() };
//! let clock = ManualClock::new();
//! let breaker = Arc::new(KeyedBreaker::new(BreakerConfig::default(), Arc::new(clock.clone())).unwrap());
//! let registry = Registry::new(breaker);
//! for (id, slots) in [("w1", 4), ("w2", 8)] {
//!     let capabilities = Capabilities { arch: "x86_64".into(), os: "linux".into(), slots, toolchains: vec![gcc.clone()], ..Default::default() };
//!     registry.upsert_worker(WorkerInfo { id: WorkerId::new(id), addr: format!("{id}:50052"), capabilities, protocol_version: 1, source: DiscoverySource::Static });
//! }
//!
//! let req = PlacementRequest::new("x86_64", "linux").toolchain(gcc.clone());
//! let placed = registry.place(&req).unwrap();
//! let first = placed.worker_id().clone();
//! placed.complete(Outcome::Success, Duration::from_millis(900));
//!
//! // The other worker is excluded once the task has failed on it...
//! let retry = req.clone().exclude(WorkerId::new(if first.as_str() == "w1" { "w2" } else { "w1" }));
//! assert_eq!(registry.place(&retry).unwrap().worker_id(), &first);
//! // ...and a worker whose output was wrong is kept out by its circuit.
//! registry.breaker().trip(first.as_str(), "output_mismatch");
//! assert_eq!(registry.place(&retry).unwrap_err(), NoPlacement::AllCircuitsOpen);
//! ```
//!
//! ## Why our own breaker
//! The design card names `failsafe`, but it keeps one state machine per target with no keyed map,
//! exposes no state getter (placement must ask "which workers are open?"), and its test clock is
//! thread-local; [`KeyedBreaker`] is a keyed map on an injected `Clock` with lock-free reads.
//!
//! ## Features
//! None: this crate is pure logic over `hybridgrid-core` (no backend, no runtime).

mod backoff;
mod breaker;
/// The DAG engine: validation with cycle paths, ready sets, fan-out/fan-in.
pub mod dag;
mod duration_serde;
mod placement;

pub use backoff::Backoff;
pub use breaker::{
    BUCKETS, BreakerConfig, BreakerConfigError, KeyedBreaker, REASON_FAILURE_RATE,
    REASON_PROBE_FAILED,
};
pub use placement::{NoPlacement, Placement, PlacementRequest, Registry, WorkerStats};
