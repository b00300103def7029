//! [`NativeExecutor`]: a task as a local process group in a private work directory.

use crate::paths::{WorkDir, is_safe_id, work_dir_name};
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, TaskOutput, TaskSpec};
use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use std::ffi::OsString;
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};

/// How long to wait for a killed process group leader to be reaped before giving up on it
/// (tokio's orphan reaper collects it later).
const REAP_GRACE: Duration = Duration::from_secs(5);

/// Settings of a [`NativeExecutor`].
#[derive(Clone, Debug)]
pub struct NativeConfig {
    /// Directory under which each task gets its own, uniquely named work directory (created on
    /// first use).
    pub work_root: PathBuf,
    /// `PATH` given to tasks; `None` passes on this process's own `PATH`.
    pub path: Option<OsString>,
}

/// Runs a [`TaskSpec`] as a local process.
///
/// For every task:
/// - a private directory is created: `work_root/hg-<task id>` when the id is made of at most 64
///   ASCII letters, digits, `-` and `_` (so the task's author knows the path in advance:
///   [`Executor::work_dir_for`]; an existing directory of that name fails the task), else
///   `work_root/hg-<filtered id>-<random>`. The spec's `inputs` are written into it (absolute
///   paths, `..` and duplicates are refused with [`ExecError::InvalidSpec`]), and the program runs
///   in it, or in its relative subdirectory `spec.cwd` (created if missing);
/// - the environment is **clean**: only `PATH` (from [`NativeConfig::path`]) plus `spec.env`
///   (which may override `PATH`); `command[0]` is looked up on that `PATH`;
/// - the program leads a new process group; on timeout or cancellation the **whole group** gets
///   `SIGKILL` and the leader is reaped; when the leader exits by itself, whatever it left running
///   in its group is killed too, so nothing outlives the task (a process that calls `setsid`
///   leaves the group and is out of reach);
/// - stdout and stderr are read concurrently, kept up to `limits.max_stream_bytes` each and
///   drained past it (so the program never blocks on a full pipe), with `truncated` set;
/// - the requested `outputs` that exist are returned (a path through a symlink is refused; a
///   total above `limits.max_file_bytes` fails with [`ExecError::OutputTooLarge`]);
/// - the work directory is removed in every case, on error and when the future is dropped.
///
/// With [`NativeExecutor::with_sandbox`] (Linux), every task is also confined by a
/// [`crate::Sandbox`]: resource limits, no network, and no file access outside its work directory
/// and the sandbox's read-only directories; `TMPDIR` is the work directory.
///
/// A spec naming a container `image` is refused.
#[derive(Clone, Debug)]
pub struct NativeExecutor {
    config: NativeConfig,
    #[cfg(target_os = "linux")]
    sandbox: Option<std::sync::Arc<crate::Sandbox>>,
    /// Host paths bound into a rooted task's root ([`NativeExecutor::with_root`]).
    #[cfg(target_os = "linux")]
    root: Option<std::sync::Arc<Vec<PathBuf>>>,
}

impl NativeExecutor {
    /// An executor with the given settings.
    pub fn new(config: NativeConfig) -> Self {
        Self {
            config,
            #[cfg(target_os = "linux")]
            sandbox: None,
            #[cfg(target_os = "linux")]
            root: None,
        }
    }

    /// Runs every task **rooted** (see `rooted.rs`): its work directory's [`crate::ROOT_DIR`]
    /// subdirectory is its `/`, with each of `binds` (host directories or files, e.g. the
    /// toolchain's directories and `/dev/null`) bind-mounted at its own path in a private mount
    /// namespace; `spec.cwd` must lie beneath [`crate::ROOT_DIR`], and `TMPDIR` is `/.hg-tmp`.
    /// Without a sandbox this needs root (a mount namespace); with one, the sandbox's user
    /// namespace is enough, and its Landlock rules still apply.
    #[cfg(target_os = "linux")]
    pub fn with_root(mut self, binds: Vec<PathBuf>) -> Self {
        self.root = Some(std::sync::Arc::new(binds));
        self
    }

    /// Runs every task inside `sandbox`.
    #[cfg(target_os = "linux")]
    pub fn with_sandbox(mut self, sandbox: crate::Sandbox) -> Self {
        self.sandbox = Some(std::sync::Arc::new(sandbox));
        self
    }
}

#[async_trait]
impl Executor for NativeExecutor {
    fn kind(&self) -> &'static str {
        "native"
    }

    /// `work_root/hg-<id>` when the id is safe to use as a name (see the type's docs).
    fn work_dir_for(&self, task_id: &hybridgrid_core::TaskId) -> Option<PathBuf> {
        let id = task_id.as_str();
        is_safe_id(id).then(|| self.config.work_root.join(format!("hg-{id}")))
    }

    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        validate(&spec)?;
        let name = work_dir_name(spec.id.as_str());
        let dir = WorkDir::create(&self.config.work_root, &name).await?;
        let result = self.run_in(&dir, spec, cancel).await;
        dir.remove().await;
        result
    }
}

/// What ended the wait for the process.
enum Ended {
    Exited {
        status: std::io::Result<ExitStatus>,
        stdout: Capture,
        stderr: Capture,
    },
    Deadline,
    Cancelled,
}

impl NativeExecutor {
    async fn run_in(
        &self,
        dir: &WorkDir,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        dir.materialise(&spec.inputs).await?;
        let run_dir = match &spec.cwd {
            Some(rel) => {
                let p = dir.path().join(crate::paths::relative(rel, "cwd")?);
                tokio::fs::create_dir_all(&p)
                    .await
                    .map_err(|source| ExecError::WorkDir {
                        path: p.display().to_string(),
                        source,
                    })?;
                p
            }
            None => dir.path().to_owned(),
        };
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let program = spec.command[0].clone();
        #[cfg(target_os = "linux")]
        let confined = match &self.sandbox {
            Some(sandbox) => Some(std::sync::Arc::new(sandbox.prepare(dir.path()).map_err(
                |e| ExecError::Backend {
                    backend: "native",
                    source: Box::new(e),
                },
            )?)),
            None => None,
        };
        #[cfg(target_os = "linux")]
        let rooted = match &self.root {
            Some(binds) => {
                let tmp = dir.path().join(crate::ROOT_DIR).join(".hg-tmp");
                tokio::fs::create_dir_all(&tmp)
                    .await
                    .map_err(|source| ExecError::WorkDir {
                        path: tmp.display().to_string(),
                        source,
                    })?;
                Some(std::sync::Arc::new(
                    crate::rooted::PreparedRoot::prepare(binds, dir.path(), &run_dir).await?,
                ))
            }
            None => None,
        };
        let mut command = CommandWrap::with_new(&program, |cmd| {
            cmd.args(&spec.command[1..])
                .current_dir(&run_dir)
                .env_clear()
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped());
            if let Some(path) = self
                .config
                .path
                .clone()
                .or_else(|| std::env::var_os("PATH"))
            {
                cmd.env("PATH", path);
            }
            cmd.envs(&spec.env);
            #[cfg(target_os = "linux")]
            match (confined.clone(), rooted.clone()) {
                (Some(confined), root) => {
                    cmd.env("TMPDIR", dir.path());
                    if root.is_some() {
                        cmd.env("TMPDIR", "/.hg-tmp");
                    }
                    // The unsafe calls of this module: see `sandbox.rs` and `rooted.rs`.
                    #[allow(unsafe_code)]
                    // SAFETY: `enter` makes system calls only (no allocation, no locks), as
                    // required between fork and exec.
                    unsafe {
                        cmd.pre_exec(move || confined.enter(root.as_deref()));
                    }
                }
                (None, Some(root)) => {
                    cmd.env("TMPDIR", "/.hg-tmp");
                    #[allow(unsafe_code)]
                    // SAFETY: as above.
                    unsafe {
                        cmd.pre_exec(move || root.enter_alone());
                    }
                }
                (None, None) => {}
            }
        });
        command.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
        let started = Instant::now();
        let child = command.spawn().map_err(|source| ExecError::Spawn {
            program: program.clone(),
            source,
        })?;
        let mut child = GroupGuard { child, done: false };
        tracing::debug!(task = %spec.id.as_str(), %program, pid = child.child.id(), work_dir = %dir.path().display(), "task started");

        let stdin = child.child.stdin().take();
        let stdout = child.child.stdout().take();
        let stderr = child.child.stderr().take();
        let limit = spec.limits.max_stream_bytes;
        let ended = {
            let run = async {
                let (_, stdout, stderr, status) = tokio::join!(
                    feed(stdin, spec.stdin.clone()),
                    capture(stdout, limit),
                    capture(stderr, limit),
                    async {
                        let status = child.child.wait().await;
                        // Leftovers in the group would hold the pipes open: kill them.
                        let _ = child.child.start_kill();
                        status
                    }
                );
                Ended::Exited {
                    status,
                    stdout,
                    stderr,
                }
            };
            tokio::select! {
                ended = run => ended,
                () = tokio::time::sleep(spec.timeout) => Ended::Deadline,
                () = cancel.cancelled() => Ended::Cancelled,
            }
        };
        let duration = started.elapsed();

        let (status, stdout, stderr) = match ended {
            Ended::Exited {
                status,
                stdout,
                stderr,
            } => (status, stdout, stderr),
            Ended::Deadline => {
                child.kill_and_reap().await;
                tracing::debug!(task = %spec.id.as_str(), timeout = ?spec.timeout, "task killed: deadline exceeded");
                return Err(ExecError::DeadlineExceeded {
                    after: spec.timeout,
                });
            }
            Ended::Cancelled => {
                child.kill_and_reap().await;
                tracing::debug!(task = %spec.id.as_str(), "task killed: cancelled");
                return Err(ExecError::Cancelled);
            }
        };
        child.done = true;
        let status = status.map_err(|source| ExecError::Backend {
            backend: "native",
            source: Box::new(source),
        })?;
        let exit_code = exit_code(status);
        let files = dir
            .collect(&spec.outputs, spec.limits.max_file_bytes)
            .await?;
        let truncated = stdout.truncated || stderr.truncated;
        tracing::debug!(task = %spec.id.as_str(), exit_code, ?duration, truncated, files = files.len(), "task finished");
        Ok(TaskOutput {
            exit_code,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            truncated,
            files,
            duration,
        })
    }
}

/// Refuses specs this executor cannot run, before touching the disk.
fn validate(spec: &TaskSpec) -> Result<(), ExecError> {
    if let Some(image) = &spec.image {
        return Err(ExecError::InvalidSpec(format!(
            "the native executor runs no container image (spec names {image:?})"
        )));
    }
    crate::paths::validate(spec)
}

/// `128 + signal` for a process killed by a signal, as shells report it.
fn exit_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code,
        (None, Some(signal)) => 128 + signal,
        (None, None) => -1,
    }
}

/// The spawned group; killed with `SIGKILL` when dropped before the task finished (the caller
/// dropped the future).
struct GroupGuard {
    child: Box<dyn ChildWrapper>,
    done: bool,
}

impl GroupGuard {
    async fn kill_and_reap(&mut self) {
        self.done = true;
        if let Err(error) = self.child.start_kill() {
            tracing::debug!(%error, "killing the process group");
        }
        if tokio::time::timeout(REAP_GRACE, self.child.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                pid = self.child.id(),
                "killed process not reaped in time; left to the background reaper"
            );
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.start_kill();
        }
    }
}

/// Writes `data` to the program's stdin and closes it. A program that exits without reading
/// (broken pipe) is not an error.
async fn feed(stdin: Option<tokio::process::ChildStdin>, data: Bytes) {
    if let Some(mut stdin) = stdin {
        if !data.is_empty()
            && let Err(error) = stdin.write_all(&data).await
            && error.kind() != std::io::ErrorKind::BrokenPipe
        {
            tracing::debug!(%error, "writing task stdin");
        }
        drop(stdin);
    }
}

/// A captured stream.
struct Capture {
    bytes: Bytes,
    truncated: bool,
}

/// Reads `stream` to its end, keeping the first `limit` bytes.
async fn capture<R: AsyncRead + Unpin>(stream: Option<R>, limit: usize) -> Capture {
    let mut kept = Vec::new();
    let mut truncated = false;
    if let Some(mut stream) = stream {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => {
                    let room = limit.saturating_sub(kept.len());
                    if n > room {
                        truncated = true;
                    }
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    tracing::debug!(%error, "reading task output");
                    break;
                }
            }
        }
    }
    Capture {
        bytes: Bytes::from(kept),
        truncated,
    }
}
