//! The [`Executor`] seam: run one [`TaskSpec`] under a deadline and cancellation.

use crate::error::{BoxError, Retry};
use crate::ids::TaskId;
use crate::task::{TaskOutput, TaskSpec};
use async_trait::async_trait;
use std::path::PathBuf;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Errors of an [`Executor`]. A non-zero exit is not an error (see [`TaskOutput`]).
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The task ran past its timeout and was killed (the whole process group or container).
    #[error("deadline exceeded after {after:?}")]
    DeadlineExceeded {
        /// The timeout that expired.
        after: Duration,
    },
    /// The caller cancelled the task; it was killed.
    #[error("task cancelled")]
    Cancelled,
    /// The program could not be started.
    #[error("cannot start {program:?}: {source}")]
    Spawn {
        /// The program named in `command[0]`.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The spec is unusable on this executor (empty command, path escaping the work dir, image on a
    /// native executor, ...).
    #[error("invalid task: {0}")]
    InvalidSpec(String),
    /// Output files exceeded `limits.max_file_bytes`.
    #[error("output files exceed the limit of {limit} bytes")]
    OutputTooLarge {
        /// The limit.
        limit: usize,
    },
    /// Preparing or cleaning the work directory failed.
    #[error("work directory {path}: {source}")]
    WorkDir {
        /// The path concerned.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The engine behind the executor failed (Docker daemon, LLM API, ...).
    #[error("{backend} executor failed: {source}")]
    Backend {
        /// Engine name.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl ExecError {
    /// Whether to retry the task elsewhere. Deadlines, spawn failures and engine failures are
    /// infrastructure problems (retry on another worker); a bad spec is permanent.
    pub fn retry(&self) -> Retry {
        match self {
            ExecError::InvalidSpec(_) | ExecError::OutputTooLarge { .. } | ExecError::Cancelled => {
                Retry::Never
            }
            ExecError::DeadlineExceeded { .. }
            | ExecError::Spawn { .. }
            | ExecError::WorkDir { .. }
            | ExecError::Backend { .. } => Retry::Now,
        }
    }
}

/// Runs tasks: natively, in Docker, in Dagger, or as an LLM tool loop.
#[async_trait]
pub trait Executor: Send + Sync + 'static {
    /// Short name used in capabilities and metrics (`native`, `docker`).
    fn kind(&self) -> &'static str;
    /// Runs `spec` until it exits, its timeout passes, or `cancel` fires.
    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError>;

    /// The absolute path a task with this id will see as its work directory, when the executor
    /// fixes it in advance (so a spec may name absolute paths inside it, as an exact remote compile
    /// must); `None` when it is not known before the task runs.
    fn work_dir_for(&self, task: &TaskId) -> Option<PathBuf> {
        let _ = task;
        None
    }
}
