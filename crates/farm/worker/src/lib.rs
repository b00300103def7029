//! # hybridgrid-farm-worker
//!
//! The compile farm's worker: a gRPC `Worker` service that runs compile requests on an
//! [`hybridgrid_core::Executor`] within its slots, only with the toolchains it advertises (exact
//! name, version, target and binary hash), re-checking every request's arguments itself; plus the
//! loop that registers it with a coordinator and heartbeats. Clean compiles are written to the
//! shared cache tier when one is configured.
//!
//! With `discovery.mdns` (the default) a worker listening off loopback announces itself over
//! mDNS (`_hybridgrid._tcp.local.`, see [`hybridgrid_discovery::MdnsAnnouncer`]). The standard
//! `grpc.health.v1.Health` service answers on the gRPC port for `""`, [`WORKER_SERVICE`] (both
//! `NOT_SERVING` while draining, see [`WorkerState::drain`]) and [`SANDBOX_SERVICE`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_farm_protocol::config::FarmConfig;
//! let mut cfg = FarmConfig::default();
//! cfg.worker.grpc_addr = "127.0.0.1:0".into();
//! cfg.worker.http_addr = "127.0.0.1:0".into();
//! cfg.worker.coordinator = Some("127.0.0.1:9000".into());
//! let worker = hybridgrid_farm_worker::start_native_worker(&cfg).await?;
//! println!("worker {} on {}", worker.state.info.id, worker.grpc_addr);
//! worker.shutdown().await;
//! # Ok(()) }
//! ```

mod app;
mod container;
pub mod doctor;
mod drain;
mod gate;
mod metrics;
mod rooted;
mod sandbox;
mod service;
mod spec;
mod stream;

pub use app::{start_native_worker, start_worker};
pub use drain::{SANDBOX_SERVICE, WORKER_SERVICE};
pub use metrics::WorkerMetrics;
pub use sandbox::SandboxStatus;
pub use service::{LocalToolchain, WorkerService, WorkerState};
