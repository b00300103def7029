//! # hybridgrid-executors
//!
//! Backends of the [`hybridgrid_core::Executor`] seam. [`NativeExecutor`] runs a task as a local
//! process: a private work directory holds its input files, the process and everything it starts
//! live in their own process group (killed as a whole on deadline or cancellation), stdout and
//! stderr are captured up to a limit, and the work directory is always removed afterwards.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_core::{CancellationToken, Executor, TaskSpec};
//! use hybridgrid_executors::{NativeConfig, NativeExecutor};
//! use std::time::Duration;
//!
//! let root = std::env::temp_dir().join("hybridgrid-doctest");
//! let executor = NativeExecutor::new(NativeConfig { work_root: root, path: None });
//! let mut spec = TaskSpec::new(vec!["cat".into()], Duration::from_secs(10));
//! spec.stdin = "hello".into();
//! let out = executor.execute(spec, CancellationToken::new()).await?;
//! assert_eq!(out.exit_code, 0);
//! assert_eq!(&out.stdout[..], b"hello");
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `native` (default): [`NativeExecutor`].
//! - `docker`, `dagger`, `llm`: planned (later issues).

#[cfg(feature = "dagger")]
mod dagger;
#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "native")]
mod native;
#[cfg(any(feature = "native", feature = "docker", feature = "dagger"))]
mod paths;

#[cfg(feature = "dagger")]
pub use dagger::{DaggerConfig, DaggerError, DaggerExecutor};
#[cfg(feature = "docker")]
pub use docker::{ContainerPolicy, DOCKER_OWNER_LABEL, DockerConfig, DockerError, DockerExecutor};
#[cfg(feature = "native")]
pub use native::{NativeConfig, NativeExecutor};
