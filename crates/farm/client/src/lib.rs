//! # hybridgrid-farm-client
//!
//! The library behind `hgbuild`: the compiler wrapper (one compile: preprocess locally, compile on
//! the farm or hit the compile cache, write the object exactly as the local compiler would), the
//! build-tool mode (`hgbuild make -j16` puts the wrapper in front of the build's compilers), the
//! client side of the compile cache (direct mode, local disk, shared tier), sampled verification,
//! and the counters behind `hgbuild --stats`. It links no server code: no coordinator, no axum, no
//! Prometheus.
//!
//! ```no_run
//! use hybridgrid_core::config::ProcessEnv;
//! // What `bins/hgbuild` does: run the command line, exit with its code.
//! let code = hybridgrid_farm_client::cli::run(std::env::args_os().collect(), &ProcessEnv);
//! std::process::exit(code);
//! ```

pub mod buildtool;
#[doc = include_str!("../../../../docs/CACHE.md")]
pub mod cache_design {}
mod cache;
pub mod cli;
mod compile;
mod connect;
pub mod doctor;
mod error;
pub mod local_slots;
mod notice;
mod paths;
mod place;
mod rooted;
pub mod stats;
mod step;
mod target;
mod toolchain;
mod verify;
mod waiting;

pub use cache::{ClientCache, cache_dir, clear, local_usage, max_bytes};
pub use compile::{compile, farm_jobs, local_command, report_fallbacks, resolve_compiler, to_json};
pub use error::ClientError;
pub use notice::{LOG_FILE_ENV, log_file};
pub use paths::{MASQUERADE_ENV, STATS_ENV, home_dir, stats_log, write_atomic};
pub use step::Step;
