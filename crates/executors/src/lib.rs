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
//! - `llm`: [`llm`], the native agent loop (Anthropic Messages, OpenAI-compatible chat).
//! - `mcp`: [`mcp`], MCP client sessions and an MCP server for our own tools (`rmcp`).
//! - `cli`: [`cli`], coding-agent CLIs (claude-code, aider, opencode, goose) as subprocesses.
//! - `docker`, `dagger`: planned (later issues).

#[cfg(feature = "cli")]
pub mod cli;
#[cfg(feature = "llm")]
pub mod llm;
#[cfg(feature = "mcp")]
pub mod mcp;
#[cfg(feature = "native")]
mod native;
#[cfg(feature = "native")]
mod paths;

#[cfg(feature = "native")]
pub use native::{NativeConfig, NativeExecutor};
