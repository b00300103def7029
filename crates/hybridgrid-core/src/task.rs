//! What a task is (the spec an [`crate::Executor`] runs) and what it produced.
//!
//! One shape serves the three systems: a compile is `cc -c ...` with the preprocessed source as an
//! input file; a workflow step is a container image that reads JSON on stdin and prints one JSON line;
//! an agent activation is a JSON request on stdin answered on stdout.

use crate::ids::TaskId;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// Priority of queued work. Higher priorities are always claimed first.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, Default,
)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// Claimed before anything else (the guide's `work:queue:high`).
    High,
    /// The default.
    #[default]
    Normal,
    /// Claimed only when nothing else waits.
    Low,
}

impl Priority {
    /// All priorities, highest first.
    pub const ALL: [Priority; 3] = [Priority::High, Priority::Normal, Priority::Low];

    /// The lowercase name used in keys, metrics and config (`high`, `normal`, `low`).
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }

    /// Position in [`Priority::ALL`] (0 = high).
    pub fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Priority {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Priority {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "high" => Ok(Priority::High),
            "normal" => Ok(Priority::Normal),
            "low" => Ok(Priority::Low),
            other => Err(format!(
                "unknown priority {other:?} (expected high, normal or low)"
            )),
        }
    }
}

/// A file placed in the task's private work directory before it runs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputFile {
    /// Path relative to the work directory; absolute paths and `..` are refused by executors.
    pub path: String,
    /// File contents.
    pub contents: Bytes,
    /// Whether to mark the file executable.
    #[serde(default)]
    pub executable: bool,
}

/// A file collected from the work directory after the task ran.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// Path relative to the work directory, as requested in [`TaskSpec::outputs`].
    pub path: String,
    /// File contents.
    pub contents: Bytes,
}

/// Bounds on what a task may return.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputLimits {
    /// Most bytes kept of stdout and of stderr, each; the rest is cut and the output marked truncated.
    pub max_stream_bytes: usize,
    /// Most bytes of all output files together; past it the task fails with `OutputTooLarge`.
    pub max_file_bytes: usize,
}

impl Default for OutputLimits {
    fn default() -> Self {
        Self {
            max_stream_bytes: 4 << 20,
            max_file_bytes: 256 << 20,
        }
    }
}

/// One unit of work for an [`crate::Executor`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskSpec {
    /// Task id, used in logs and metrics.
    pub id: TaskId,
    /// Program and arguments; `command[0]` is resolved on the executor's `PATH`.
    pub command: Vec<String>,
    /// Environment for the program. Executors start from an empty environment plus `PATH`.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes written to the program's stdin.
    #[serde(default)]
    pub stdin: Bytes,
    /// Files materialised in the work directory before the run.
    #[serde(default)]
    pub inputs: Vec<InputFile>,
    /// Relative paths collected after the run; a missing one is simply absent from the output.
    #[serde(default)]
    pub outputs: Vec<String>,
    /// Directory to run in, relative to the work directory (created if missing); `None` runs in the
    /// work directory itself.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Container image, for container executors; native executors refuse a spec that names one.
    #[serde(default)]
    pub image: Option<String>,
    /// How long the task may run before it is killed ("deadline exceeded").
    pub timeout: Duration,
    /// Output bounds.
    #[serde(default)]
    pub limits: OutputLimits,
}

impl TaskSpec {
    /// A spec running `command` with the given timeout and everything else empty.
    pub fn new(command: Vec<String>, timeout: Duration) -> Self {
        Self {
            id: TaskId::random(),
            command,
            env: BTreeMap::new(),
            stdin: Bytes::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            cwd: None,
            image: None,
            timeout,
            limits: OutputLimits::default(),
        }
    }
}

/// What a task produced. A non-zero exit code is a result, not an error: a compile error in the
/// user's code is returned here with its stderr, and never counts against the worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskOutput {
    /// Exit code; a process killed by a signal reports `128 + signal`.
    pub exit_code: i32,
    /// Captured stdout (at most `limits.max_stream_bytes`).
    pub stdout: Bytes,
    /// Captured stderr (at most `limits.max_stream_bytes`).
    pub stderr: Bytes,
    /// True when stdout or stderr was cut at the limit.
    pub truncated: bool,
    /// The requested output files that existed.
    pub files: Vec<OutputFile>,
    /// Wall time of the run.
    pub duration: Duration,
}

impl TaskOutput {
    /// True when the program exited with code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }

    /// The output file at `path`, if it was produced.
    pub fn file(&self, path: &str) -> Option<&OutputFile> {
        self.files.iter().find(|f| f.path == path)
    }
}
