//! [`DockerExecutor`]: a task as a Docker container, through the engine's API (bollard).

mod config;
mod error;
mod guard;

pub use config::{ContainerPolicy, DockerConfig};
pub use error::DockerError;

use crate::paths::{WorkDir, is_safe_id, relative, work_dir_name};
use async_trait::async_trait;
use bollard::Docker;
use bollard::container::{AttachContainerResults, LogOutput};
use bollard::models::{ContainerCreateBody, HostConfig, HostConfigLogConfig, Mount, MountType};
use bollard::query_parameters::{
    AttachContainerOptionsBuilder, CreateContainerOptionsBuilder, ListContainersOptionsBuilder,
};
use bytes::Bytes;
use error::engine;
use futures::StreamExt;
use guard::ContainerGuard;
use hybridgrid_core::{CancellationToken, ExecError, Executor, TaskId, TaskOutput, TaskSpec};
use std::collections::HashMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::AsyncWriteExt;

/// Label naming the executor instance that created a container ([`DockerConfig::owner`]).
pub const DOCKER_OWNER_LABEL: &str = "hybridgrid.owner";
/// Label carrying the task id.
const TASK_LABEL: &str = "hybridgrid.task";
/// Seconds the client waits for the engine's answer to one request (not for the task).
const CLIENT_TIMEOUT_SECS: u64 = 120;

/// Runs a [`TaskSpec`] in a container of `spec.image`.
///
/// For every task:
/// - the image is `spec.image`, else [`DockerConfig::image`]; it **must already be in the engine**: nothing is ever pulled (a missing one is
///   [`DockerError::ImageMissing`], naming it and how to build it);
/// - a private host directory `work_root/hg-<task id>` (named as the native executor names its
///   own) receives the input files and is **bind-mounted** read-write at
///   `container_root/hg-<task id>` (see [`Executor::work_dir_for`]); nothing else of the host is
///   mounted. The program runs there, or in `spec.cwd` below it. Outputs are read back from the
///   host directory (symlinks refused, total bounded by `limits.max_file_bytes`). Bind mounting
///   means the engine must run on this host;
/// - `command[0]` replaces the image's entrypoint and the rest are its arguments; the environment
///   is `PATH` ([`DockerConfig::path`]) plus `spec.env` on top of the image's own `ENV` (Docker
///   also sets `HOSTNAME` and `HOME`); `spec.stdin` is written to the program's stdin, then closed;
/// - stdout and stderr come demultiplexed over the attach stream, kept up to
///   `limits.max_stream_bytes` each and drained past it (`truncated` set); the engine keeps no
///   log of them (log driver `none`);
/// - isolation from the [`ContainerPolicy`]: network mode (`none` by default: loopback only), CPU,
///   memory (swap included) and process limits, user, read-only root filesystem, and always
///   `no-new-privileges`;
/// - past `spec.timeout` the container is killed and the task fails with
///   [`ExecError::DeadlineExceeded`]; on cancellation, killed with [`ExecError::Cancelled`]; a task
///   killed for exceeding its memory limit fails with [`DockerError::OutOfMemory`];
/// - the container carries the labels `hybridgrid.owner=<owner>` and `hybridgrid.task=<id>`, and is
///   **always removed**: after a normal exit, on every error, on deadline and cancellation, and in
///   the background when the caller drops the future. [`DockerExecutor::reap_leftovers`] removes
///   what a killed worker left behind.
#[derive(Clone, Debug)]
pub struct DockerExecutor {
    docker: Docker,
    config: Arc<DockerConfig>,
    policy: ContainerPolicy,
}

impl DockerExecutor {
    /// Connects to the engine at [`DockerConfig::socket`] and checks that it answers; an
    /// unreachable engine is [`DockerError::Unavailable`], a socket this user may not open
    /// [`DockerError::PermissionDenied`], each naming the socket and the fix.
    pub async fn connect(config: DockerConfig) -> Result<Self, ExecError> {
        config
            .defaults
            .check()
            .map_err(|reason| DockerError::InvalidConfig { reason })?;
        if !config.container_root.starts_with('/') {
            return Err(DockerError::InvalidConfig {
                reason: format!(
                    "container_root {:?} is not an absolute path",
                    config.container_root
                ),
            }
            .into());
        }
        let docker = client(&config.socket)?;
        docker
            .ping()
            .await
            .map_err(|e| engine(&config.socket, "ping", e))?;
        tracing::debug!(socket = %config.socket, "docker engine reachable");
        Ok(Self {
            docker,
            policy: config.defaults.clone(),
            config: Arc::new(config),
        })
    }

    /// The same engine connection with another [`ContainerPolicy`]: a network, other limits or
    /// another user for some tasks (an agent whose definition grants a network, say).
    pub fn with_policy(&self, policy: ContainerPolicy) -> Result<Self, ExecError> {
        policy
            .check()
            .map_err(|reason| DockerError::InvalidConfig { reason })?;
        Ok(Self {
            docker: self.docker.clone(),
            config: self.config.clone(),
            policy,
        })
    }

    /// The policy applied to this executor's containers.
    pub fn policy(&self) -> &ContainerPolicy {
        &self.policy
    }

    /// Force-removes every container labelled with this executor's [`DockerConfig::owner`]
    /// (left by a worker that was killed mid-task) and returns how many there were. Call it at
    /// start, before running tasks.
    pub async fn reap_leftovers(&self) -> Result<usize, ExecError> {
        let filters = HashMap::from([(
            "label".to_owned(),
            vec![format!("{DOCKER_OWNER_LABEL}={}", self.config.owner)],
        )]);
        let list = self
            .docker
            .list_containers(Some(
                ListContainersOptionsBuilder::default()
                    .all(true)
                    .filters(&filters)
                    .build(),
            ))
            .await
            .map_err(|e| engine(&self.config.socket, "list containers", e))?;
        let mut removed = 0;
        for container in list {
            if let Some(id) = container.id {
                guard::remove_now(&self.docker, &id).await;
                removed += 1;
            }
        }
        if removed > 0 {
            tracing::info!(owner = %self.config.owner, removed, "leftover containers removed");
        }
        Ok(removed)
    }
}

/// A client for `socket` (`unix://`, a bare path, `tcp://` or `http://`).
fn client(socket: &str) -> Result<Docker, ExecError> {
    let unavailable = |e: bollard::errors::Error| DockerError::Unavailable {
        socket: socket.to_owned(),
        reason: e.to_string(),
    };
    let docker = if socket.starts_with("tcp://") || socket.starts_with("http://") {
        Docker::connect_with_http(socket, CLIENT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
    } else if socket.starts_with("unix://") || socket.starts_with('/') {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        Docker::connect_with_unix(path, CLIENT_TIMEOUT_SECS, bollard::API_DEFAULT_VERSION)
    } else {
        return Err(DockerError::InvalidConfig {
            reason: format!(
                "socket {socket:?} is neither unix:///path, /path, tcp://host:port nor http://host:port"
            ),
        }
        .into());
    };
    Ok(docker.map_err(unavailable)?)
}

#[async_trait]
impl Executor for DockerExecutor {
    fn kind(&self) -> &'static str {
        "docker"
    }

    /// `container_root/hg-<id>` when the id is safe to use as a name.
    fn work_dir_for(&self, task_id: &TaskId) -> Option<PathBuf> {
        let id = task_id.as_str();
        is_safe_id(id).then(|| Path::new(&self.config.container_root).join(format!("hg-{id}")))
    }

    async fn execute(
        &self,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let image = match spec.image.as_deref().or(self.config.image.as_deref()) {
            Some(image) if !image.is_empty() && !image.contains('\0') => image.to_owned(),
            Some(bad) => {
                return Err(ExecError::InvalidSpec(format!("bad image name {bad:?}")));
            }
            None => {
                return Err(ExecError::InvalidSpec(
                    "the docker executor needs an image (neither spec.image nor docker.image is set)"
                        .to_owned(),
                ));
            }
        };
        crate::paths::validate(&spec)?;
        let name = work_dir_name(spec.id.as_str());
        let dir = WorkDir::create(&self.config.work_root, &name).await?;
        let result = self.run_in(&dir, &name, image, spec, cancel).await;
        dir.remove().await;
        result
    }
}

/// What ended the wait for the container.
enum Ended {
    Exited {
        code: Result<i64, bollard::errors::Error>,
        stdout: Capture,
        stderr: Capture,
    },
    Deadline,
    Cancelled,
}

impl DockerExecutor {
    async fn run_in(
        &self,
        dir: &WorkDir,
        name: &str,
        image: String,
        spec: TaskSpec,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        let socket = self.config.socket.as_str();
        dir.materialise(&spec.inputs).await?;
        // The container's user may be anyone: let it write its work directory.
        open_up(dir.path()).await?;
        let container_dir = format!(
            "{}/{name}",
            self.config.container_root.trim_end_matches('/')
        );
        let workdir = match &spec.cwd {
            Some(rel) => {
                let rel = relative(rel, "cwd")?;
                let host = dir.path().join(&rel);
                tokio::fs::create_dir_all(&host)
                    .await
                    .map_err(|source| ExecError::WorkDir {
                        path: host.display().to_string(),
                        source,
                    })?;
                open_up(&host).await?;
                format!("{container_dir}/{}", rel.display())
            }
            None => container_dir.clone(),
        };
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }

        let body = self.create_body(&spec, &image, dir.path(), &container_dir, workdir);
        // The guard exists before the container does: a future dropped during the create call
        // still removes it (by name) in the background.
        // Unique on the engine even when another worker runs a task of the same id.
        let container_name = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let container = ContainerGuard::new(self.docker.clone(), container_name.clone());
        let created = self
            .docker
            .create_container(
                Some(
                    CreateContainerOptionsBuilder::default()
                        .name(&container_name)
                        .build(),
                ),
                body,
            )
            .await;
        if let Err(e) = created {
            container.forget();
            return Err(match e {
                bollard::errors::Error::DockerResponseServerError {
                    status_code: 404,
                    ref message,
                } if message.contains("image") => DockerError::ImageMissing { image }.into(),
                e => engine(socket, "create container", e),
            });
        }
        let result = self
            .attach_and_run(&container_name, &image, &spec, cancel)
            .await;
        container.remove().await;
        let (code, stdout, stderr, duration) = result?;
        let exit_code = i32::try_from(code).unwrap_or(-1);
        let files = dir
            .collect(&spec.outputs, spec.limits.max_file_bytes)
            .await?;
        let truncated = stdout.truncated || stderr.truncated;
        tracing::debug!(task = %spec.id.as_str(), %image, exit_code, ?duration, truncated, files = files.len(), "container finished");
        Ok(TaskOutput {
            exit_code,
            stdout: stdout.bytes,
            stderr: stderr.bytes,
            truncated,
            files,
            duration,
        })
    }

    /// Attaches, starts and waits for the container; kills it on deadline or cancellation.
    async fn attach_and_run(
        &self,
        name: &str,
        image: &str,
        spec: &TaskSpec,
        cancel: CancellationToken,
    ) -> Result<(i64, Capture, Capture, Duration), ExecError> {
        let socket = self.config.socket.as_str();
        let AttachContainerResults { output, input } = self
            .docker
            .attach_container(
                name,
                Some(
                    AttachContainerOptionsBuilder::default()
                        .stdin(true)
                        .stdout(true)
                        .stderr(true)
                        .stream(true)
                        .build(),
                ),
            )
            .await
            .map_err(|e| engine(socket, "attach container", e))?;
        if cancel.is_cancelled() {
            return Err(ExecError::Cancelled);
        }
        let started = Instant::now();
        match self.docker.start_container(name, None).await {
            Ok(()) => {}
            // The engine could not exec the program (missing, not executable, ...).
            Err(bollard::errors::Error::DockerResponseServerError { message, .. }) => {
                return Err(ExecError::Spawn {
                    program: spec.command[0].clone(),
                    source: std::io::Error::other(message),
                });
            }
            Err(e) => return Err(engine(socket, "start container", e)),
        }
        tracing::debug!(task = %spec.id.as_str(), %image, container = %name, "container started");

        let limit = spec.limits.max_stream_bytes;
        let ended = {
            let run = async {
                let (_, (stdout, stderr), code) = tokio::join!(
                    feed(input, spec.stdin.clone()),
                    capture(output, limit),
                    wait(&self.docker, name),
                );
                Ended::Exited {
                    code,
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
        match ended {
            Ended::Exited {
                code,
                stdout,
                stderr,
            } => {
                let code = code.map_err(|e| engine(socket, "wait for container", e))?;
                if code != 0 && self.out_of_memory(name).await {
                    return Err(DockerError::OutOfMemory {
                        image: image.to_owned(),
                        limit_mb: self.policy.memory_mb.unwrap_or(0),
                    }
                    .into());
                }
                Ok((code, stdout, stderr, duration))
            }
            Ended::Deadline => {
                tracing::debug!(task = %spec.id.as_str(), container = %name, timeout = ?spec.timeout, "container killed: deadline exceeded");
                Err(ExecError::DeadlineExceeded {
                    after: spec.timeout,
                })
            }
            Ended::Cancelled => {
                tracing::debug!(task = %spec.id.as_str(), container = %name, "container killed: cancelled");
                Err(ExecError::Cancelled)
            }
        }
    }

    /// Whether the engine saw the container's cgroup run out of memory.
    async fn out_of_memory(&self, name: &str) -> bool {
        match self.docker.inspect_container(name, None).await {
            Ok(info) => info.state.and_then(|s| s.oom_killed).unwrap_or(false),
            Err(error) => {
                tracing::debug!(container = %name, %error, "inspecting container");
                false
            }
        }
    }

    fn create_body(
        &self,
        spec: &TaskSpec,
        image: &str,
        host_dir: &Path,
        container_dir: &str,
        workdir: String,
    ) -> ContainerCreateBody {
        let policy = &self.policy;
        // `spec.env` may set its own PATH: never send two.
        let mut env = Vec::new();
        if !spec.env.contains_key("PATH") {
            env.push(format!("PATH={}", self.config.path));
        }
        env.extend(spec.env.iter().map(|(k, v)| format!("{k}={v}")));
        let labels = HashMap::from([
            (DOCKER_OWNER_LABEL.to_owned(), self.config.owner.clone()),
            (TASK_LABEL.to_owned(), spec.id.as_str().to_owned()),
        ]);
        let memory = policy.memory_bytes();
        let host_config = HostConfig {
            mounts: Some(vec![Mount {
                target: Some(container_dir.to_owned()),
                source: Some(host_dir.display().to_string()),
                typ: Some(MountType::BIND),
                read_only: Some(false),
                ..Default::default()
            }]),
            network_mode: Some(policy.network.clone()),
            memory,
            // Swap included: the limit is the limit.
            memory_swap: memory,
            nano_cpus: policy.nano_cpus(),
            pids_limit: policy.pids_limit,
            readonly_rootfs: Some(policy.read_only_rootfs),
            tmpfs: policy
                .read_only_rootfs
                .then(|| HashMap::from([("/tmp".to_owned(), "rw,size=64m".to_owned())])),
            security_opt: Some(vec!["no-new-privileges".to_owned()]),
            log_config: Some(HostConfigLogConfig {
                typ: Some("none".to_owned()),
                config: None,
            }),
            ..Default::default()
        };
        ContainerCreateBody {
            image: Some(image.to_owned()),
            entrypoint: Some(vec![spec.command[0].clone()]),
            cmd: Some(spec.command[1..].to_vec()),
            env: Some(env),
            working_dir: Some(workdir),
            user: policy.user.clone(),
            labels: Some(labels),
            attach_stdin: Some(true),
            attach_stdout: Some(true),
            attach_stderr: Some(true),
            open_stdin: Some(true),
            stdin_once: Some(true),
            tty: Some(false),
            network_disabled: Some(policy.network == "none"),
            host_config: Some(host_config),
            ..Default::default()
        }
    }
}

/// Makes a host directory writable by whatever user the container runs as.
async fn open_up(path: &Path) -> Result<(), ExecError> {
    tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o777))
        .await
        .map_err(|source| ExecError::WorkDir {
            path: path.display().to_string(),
            source,
        })
}

/// The container's exit code. bollard reports a non-zero exit as an error.
async fn wait(docker: &Docker, name: &str) -> Result<i64, bollard::errors::Error> {
    let mut stream = docker.wait_container(name, None);
    match stream.next().await {
        Some(Ok(response)) => Ok(response.status_code),
        Some(Err(bollard::errors::Error::DockerContainerWaitError { code, .. })) => Ok(code),
        Some(Err(e)) => Err(e),
        None => Err(bollard::errors::Error::DockerStreamError {
            error: "the wait stream ended without a status".to_owned(),
        }),
    }
}

/// Writes `data` to the container's stdin and closes it (end of file for the program). A
/// program that exits without reading is not an error.
async fn feed(mut input: std::pin::Pin<Box<dyn tokio::io::AsyncWrite + Send>>, data: Bytes) {
    if !data.is_empty()
        && let Err(error) = input.write_all(&data).await
    {
        tracing::debug!(%error, "writing container stdin");
    }
    if let Err(error) = input.shutdown().await {
        tracing::debug!(%error, "closing container stdin");
    }
}

/// A captured stream.
struct Capture {
    bytes: Bytes,
    truncated: bool,
}

/// Reads the attach stream to its end, keeping the first `limit` bytes of stdout and of stderr.
async fn capture(
    mut output: std::pin::Pin<
        Box<dyn futures::Stream<Item = Result<LogOutput, bollard::errors::Error>> + Send>,
    >,
    limit: usize,
) -> (Capture, Capture) {
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let (mut out_cut, mut err_cut) = (false, false);
    while let Some(item) = output.next().await {
        let (kept, cut, message) = match item {
            Ok(LogOutput::StdOut { message } | LogOutput::Console { message }) => {
                (&mut out, &mut out_cut, message)
            }
            Ok(LogOutput::StdErr { message }) => (&mut err, &mut err_cut, message),
            Ok(LogOutput::StdIn { .. }) => continue,
            Err(error) => {
                tracing::debug!(%error, "reading container output");
                break;
            }
        };
        let room = limit.saturating_sub(kept.len());
        if message.len() > room {
            *cut = true;
        }
        kept.extend_from_slice(&message[..message.len().min(room)]);
    }
    (
        Capture {
            bytes: Bytes::from(out),
            truncated: out_cut,
        },
        Capture {
            bytes: Bytes::from(err),
            truncated: err_cut,
        },
    )
}
