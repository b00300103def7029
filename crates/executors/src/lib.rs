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
//! A container task names its image and runs the same way on `DockerExecutor` (feature
//! `docker`): the image must already be in the engine (nothing is pulled), the network is off
//! unless the `ContainerPolicy` grants one, and the container is always removed.
//!
//! ```no_run
//! # #[cfg(feature = "docker")]
//! # async fn demo() -> Result<(), hybridgrid_core::ExecError> {
//! use hybridgrid_core::{CancellationToken, Executor, TaskSpec};
//! use hybridgrid_executors::{ContainerPolicy, DockerConfig, DockerExecutor};
//! use std::time::Duration;
//!
//! let docker = DockerExecutor::connect(DockerConfig::default()).await?;
//! docker.reap_leftovers().await?; // containers a killed worker left behind
//! let limited = docker.with_policy(ContainerPolicy { memory_mb: Some(256), cpus: Some(1.0), ..Default::default() })?;
//! let mut spec = TaskSpec::new(vec!["sh".into(), "-c".into(), "echo hi".into()], Duration::from_secs(30));
//! spec.image = Some("my-agent:1".into());
//! let out = limited.execute(spec, CancellationToken::new()).await?;
//! assert_eq!(&out.stdout[..], b"hi\n");
//! # Ok(()) }
//! ```
//!
//! ## Features
//! - `native` (default): [`NativeExecutor`].
//! - `docker`: `DockerExecutor`, `DockerConfig`, `ContainerPolicy`, `DockerError` (bollard;
//!   see `docs/backends/docker.md`).
//! - `dagger`: `DaggerExecutor`, `DaggerConfig`, `DaggerError`: Dagger pipelines over the
//!   engine's GraphQL session API (see `docs/backends/dagger.md`; tested against a fake engine).
//! - `llm`: [`llm`], the native agent loop (Anthropic Messages, OpenAI-compatible chat).
//! - `mcp`: [`mcp`], MCP client sessions and an MCP server for our own tools (`rmcp`).
//! - `cli`: [`cli`], coding-agent CLIs (claude-code, aider, opencode, goose) as subprocesses.

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "dagger")]
mod dagger;
#[cfg(feature = "docker")]
mod docker;
#[cfg(feature = "llm")]
pub mod llm;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "native")]
mod native;
#[cfg(any(feature = "native", feature = "docker", feature = "dagger"))]
mod paths;
#[cfg(all(feature = "native", target_os = "linux"))]
mod rooted;
#[cfg(all(feature = "native", target_os = "linux"))]
mod sandbox;

#[cfg(feature = "dagger")]
pub use dagger::{DaggerConfig, DaggerError, DaggerExecutor};
#[cfg(feature = "docker")]
pub use docker::{ContainerPolicy, DOCKER_OWNER_LABEL, DockerConfig, DockerError, DockerExecutor};
#[cfg(feature = "native")]
pub use native::{NativeConfig, NativeExecutor};
#[cfg(all(feature = "native", target_os = "linux"))]
pub use rooted::ROOT_DIR;
#[cfg(all(feature = "native", target_os = "linux"))]
pub use sandbox::{Sandbox, SandboxConfig, SandboxError};
