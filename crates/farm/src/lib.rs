//! # hybridgrid-farm
//!
//! The distributed compile farm, assembled from hybridgrid's crates: a coordinator
//! ([`app::start_coordinator`]) that places compile tasks on workers ([`app::start_worker`]), and
//! the client logic of the `hgbuild` wrapper ([`client`]). The binaries `hg-coord`, `hg-worker` and
//! `hgbuild` are thin wrappers over this crate, and end-to-end tests start the same pieces in process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_farm::{app, config::FarmConfig};
//! let mut cfg = FarmConfig::default();
//! cfg.coordinator.grpc_addr = "127.0.0.1:0".into();
//! cfg.coordinator.http_addr = "127.0.0.1:0".into();
//! let coord = app::start_coordinator(&cfg, vec![]).await?;
//! println!("dashboard: http://{}/", coord.http_addr);
//! coord.shutdown().await;
//! # Ok(()) }
//! ```

pub mod app;
pub mod cache;
pub mod client;
pub mod config;
pub mod coordinator;
pub mod demo;
pub mod metrics;
pub mod worker;
