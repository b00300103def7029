//! # hybridgrid-farm-coordinator
//!
//! The compile farm's coordinator: workers register (or are found by discovery) and heartbeat;
//! each compile request from `hgbuild` is placed on a worker with a free slot and the exact
//! toolchain, retried elsewhere when a worker fails, and kept off workers whose circuit is open.
//! It serves the dashboard, `/api/stats` and `/metrics`.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_farm_protocol::config::FarmConfig;
//! let mut cfg = FarmConfig::default();
//! cfg.coordinator.grpc_addr = "127.0.0.1:0".into();
//! cfg.coordinator.http_addr = "127.0.0.1:0".into();
//! let coord = hybridgrid_farm_coordinator::start_coordinator(&cfg, vec![]).await?;
//! println!("dashboard: http://{}/", coord.http_addr);
//! coord.shutdown().await;
//! # Ok(()) }
//! ```

mod app;
pub mod doctor;
mod history;
mod http_auth;
mod metrics;
mod peers;
mod service;
mod state;

pub use app::{
    COORDINATOR_SERVICE, mdns_discovery, start_coordinator, static_discovery, tls_material,
};
pub use history::{FailureView, Sample};
pub use service::CoordinatorService;
pub use state::{CoordinatorState, Stats, WorkerView};
