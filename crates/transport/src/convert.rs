//! Conversions between wire messages and `hybridgrid-core` types.

use crate::pb;
use hybridgrid_core::{
    Capabilities, DiscoverySource, ExecError, InputFile, OutputFile, OutputLimits, TaskId,
    TaskOutput, TaskSpec, Toolchain, WorkerId, WorkerInfo,
};
use std::time::Duration;

/// A wire message that cannot become a core value.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// A required field was absent.
    #[error("malformed message: missing field {0}")]
    Missing(&'static str),
    /// A field had an unusable value.
    #[error("malformed message: field {field}: {message}")]
    Invalid {
        /// Field name.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
}

impl From<WireError> for tonic::Status {
    fn from(e: WireError) -> Self {
        tonic::Status::invalid_argument(e.to_string())
    }
}

impl From<Toolchain> for pb::Toolchain {
    fn from(t: Toolchain) -> Self {
        Self {
            name: t.name,
            version: t.version,
            target: t.target,
            binary_hash: t.binary_hash,
        }
    }
}

impl From<pb::Toolchain> for Toolchain {
    fn from(t: pb::Toolchain) -> Self {
        Self {
            name: t.name,
            version: t.version,
            target: t.target,
            binary_hash: t.binary_hash,
        }
    }
}

impl From<Capabilities> for pb::Capabilities {
    fn from(c: Capabilities) -> Self {
        Self {
            arch: c.arch,
            os: c.os,
            cpus: c.cpus,
            slots: c.slots,
            toolchains: c.toolchains.into_iter().map(Into::into).collect(),
            executors: c.executors,
        }
    }
}

impl From<pb::Capabilities> for Capabilities {
    fn from(c: pb::Capabilities) -> Self {
        Self {
            arch: c.arch,
            os: c.os,
            cpus: c.cpus,
            slots: c.slots,
            toolchains: c.toolchains.into_iter().map(Into::into).collect(),
            executors: c.executors,
        }
    }
}

impl From<WorkerInfo> for pb::WorkerInfo {
    fn from(w: WorkerInfo) -> Self {
        Self {
            id: w.id.to_string(),
            addr: w.addr,
            capabilities: Some(w.capabilities.into()),
            protocol_version: w.protocol_version,
        }
    }
}

impl pb::WorkerInfo {
    /// Converts to a core [`WorkerInfo`], validating the fields and tagging its source.
    pub fn into_core(self, source: DiscoverySource) -> Result<WorkerInfo, WireError> {
        if self.id.is_empty() {
            return Err(WireError::Missing("worker.id"));
        }
        if self.addr.is_empty() {
            return Err(WireError::Missing("worker.addr"));
        }
        let capabilities: Capabilities = self
            .capabilities
            .ok_or(WireError::Missing("worker.capabilities"))?
            .into();
        if capabilities.slots == 0 {
            return Err(WireError::Invalid {
                field: "worker.capabilities.slots",
                message: "must be at least 1".into(),
            });
        }
        Ok(WorkerInfo {
            id: WorkerId::new(self.id),
            addr: self.addr,
            capabilities,
            protocol_version: self.protocol_version,
            source,
        })
    }
}

impl From<TaskSpec> for pb::TaskSpec {
    fn from(s: TaskSpec) -> Self {
        Self {
            id: s.id.to_string(),
            command: s.command,
            env: s.env.into_iter().collect(),
            stdin: s.stdin.to_vec(),
            inputs: s
                .inputs
                .into_iter()
                .map(|f| pb::InputFile {
                    path: f.path,
                    contents: f.contents.to_vec(),
                    executable: f.executable,
                })
                .collect(),
            outputs: s.outputs,
            cwd: s.cwd,
            image: s.image,
            timeout_ms: s.timeout.as_millis().min(u64::MAX as u128) as u64,
            max_stream_bytes: s.limits.max_stream_bytes as u64,
            max_file_bytes: s.limits.max_file_bytes as u64,
        }
    }
}

impl pb::TaskSpec {
    /// Checks the fields every executor needs, without copying the message; returns the timeout.
    pub fn validate(&self) -> Result<Duration, WireError> {
        if self.command.is_empty() {
            return Err(WireError::Missing("spec.command"));
        }
        if self.timeout_ms == 0 {
            return Err(WireError::Invalid {
                field: "spec.timeout_ms",
                message: "must be > 0".into(),
            });
        }
        Ok(Duration::from_millis(self.timeout_ms))
    }
}

impl TryFrom<pb::TaskSpec> for TaskSpec {
    type Error = WireError;
    fn try_from(s: pb::TaskSpec) -> Result<Self, WireError> {
        s.validate()?;
        let defaults = OutputLimits::default();
        let limit = |v: u64, d: usize| {
            if v == 0 {
                d
            } else {
                usize::try_from(v).unwrap_or(usize::MAX)
            }
        };
        Ok(TaskSpec {
            id: if s.id.is_empty() {
                TaskId::random()
            } else {
                TaskId::new(s.id)
            },
            command: s.command,
            env: s.env.into_iter().collect(),
            stdin: s.stdin.into(),
            inputs: s
                .inputs
                .into_iter()
                .map(|f| InputFile {
                    path: f.path,
                    contents: f.contents.into(),
                    executable: f.executable,
                })
                .collect(),
            outputs: s.outputs,
            cwd: s.cwd,
            image: s.image,
            timeout: Duration::from_millis(s.timeout_ms),
            limits: OutputLimits {
                max_stream_bytes: limit(s.max_stream_bytes, defaults.max_stream_bytes),
                max_file_bytes: limit(s.max_file_bytes, defaults.max_file_bytes),
            },
        })
    }
}

impl From<TaskOutput> for pb::TaskOutput {
    fn from(o: TaskOutput) -> Self {
        Self {
            exit_code: o.exit_code,
            stdout: o.stdout.to_vec(),
            stderr: o.stderr.to_vec(),
            truncated: o.truncated,
            files: o
                .files
                .into_iter()
                .map(|f| pb::OutputFile {
                    path: f.path,
                    contents: f.contents.to_vec(),
                })
                .collect(),
            duration_ms: o.duration.as_millis().min(u64::MAX as u128) as u64,
        }
    }
}

impl From<pb::TaskOutput> for TaskOutput {
    fn from(o: pb::TaskOutput) -> Self {
        Self {
            exit_code: o.exit_code,
            stdout: o.stdout.into(),
            stderr: o.stderr.into(),
            truncated: o.truncated,
            files: o
                .files
                .into_iter()
                .map(|f| OutputFile {
                    path: f.path,
                    contents: f.contents.into(),
                })
                .collect(),
            duration: Duration::from_millis(o.duration_ms),
        }
    }
}

/// Maps an executor error to its wire form.
pub fn exec_error_to_failure(e: &ExecError) -> pb::TaskFailure {
    use pb::task_failure::Kind;
    let kind = match e {
        ExecError::DeadlineExceeded { .. } => Kind::DeadlineExceeded,
        ExecError::Cancelled => Kind::Cancelled,
        ExecError::Spawn { .. } => Kind::Spawn,
        ExecError::InvalidSpec(_) => Kind::InvalidSpec,
        ExecError::OutputTooLarge { .. } => Kind::OutputTooLarge,
        ExecError::WorkDir { .. } => Kind::WorkDir,
        ExecError::Backend { .. } => Kind::Backend,
    };
    pb::TaskFailure {
        kind: kind as i32,
        message: e.to_string(),
    }
}

/// The snake_case name of a failure kind, for logs and metrics labels.
pub fn failure_kind_name(kind: i32) -> &'static str {
    use pb::task_failure::Kind;
    match Kind::try_from(kind).unwrap_or(Kind::Unspecified) {
        Kind::Unspecified => "unspecified",
        Kind::DeadlineExceeded => "deadline_exceeded",
        Kind::Cancelled => "cancelled",
        Kind::Spawn => "spawn",
        Kind::InvalidSpec => "invalid_spec",
        Kind::OutputTooLarge => "output_too_large",
        Kind::WorkDir => "work_dir",
        Kind::Backend => "backend",
        Kind::ToolchainUnavailable => "toolchain_unavailable",
        Kind::Overloaded => "overloaded",
    }
}
