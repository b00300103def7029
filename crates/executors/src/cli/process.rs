//! Running a coding-agent CLI: environment, process group, output tails, timeout and cancel.

use super::kinds::{CodingAgentKind, final_text, invocation};
use crate::llm::{ProviderConfig, Usage};
use crate::mcp::McpServerSpec;
use hybridgrid_core::{CancellationToken, Retry};
use process_wrap::tokio::{ChildWrapper, CommandWrap, KillOnDrop, ProcessGroup};
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt};

/// Environment variables passed on from this process (everything else is dropped; the runner's
/// own secrets never reach the CLI). `HOME` is not among them: the CLI gets a private one.
const PASSED_ENV: &[&str] = &["PATH", "USER", "LANG", "LC_ALL", "TERM", "TMPDIR"];

/// Stdout kept (the answer is read from it).
const STDOUT_LIMIT: usize = 4 * 1024 * 1024;
/// Stderr tail kept.
const STDERR_LIMIT: usize = 64 * 1024;
/// Bytes of each stream shown in [`CliOutcome`] tails.
const TAIL: usize = 8 * 1024;

/// One run of a coding-agent CLI.
#[derive(Clone, Debug)]
pub struct CliRequest {
    /// Which CLI.
    pub kind: CodingAgentKind,
    /// The task, given as the CLI's one-shot prompt.
    pub prompt: String,
    /// The activation's sandbox directory (must exist): the CLI runs in it, and its `HOME` is
    /// `work_dir/.hg-home` unless `env` sets one.
    pub work_dir: PathBuf,
    /// Extra environment, applied last.
    pub env: BTreeMap<String, String>,
    /// The model: base URL and key are injected the way the CLI takes them (claude-code:
    /// `ANTHROPIC_BASE_URL`/`ANTHROPIC_API_KEY`; aider: `OPENAI_API_BASE`/`OPENAI_API_KEY`;
    /// opencode: an `@ai-sdk/openai-compatible` provider in `OPENCODE_CONFIG_CONTENT`).
    pub provider: ProviderConfig,
    /// MCP servers for the CLI (claude-code: `--mcp-config` + `--strict-mcp-config`; opencode:
    /// its `mcp` config; aider takes none).
    pub mcp_servers: Vec<McpServerSpec>,
    /// Extra tools allowed without asking (claude-code `--allowedTools`, besides `mcp__<server>`
    /// for every MCP server).
    pub allowed_tools: Vec<String>,
    /// Arguments appended to the CLI's own.
    pub extra_args: Vec<String>,
    /// Path of the program; `None` looks up [`CodingAgentKind::program`] on `PATH` (from `env`
    /// when it sets `PATH`, else this process's).
    pub program: Option<PathBuf>,
    /// Bound of the whole run; the process group is killed at it.
    pub timeout: Duration,
    /// Cancels the run (the process group is killed).
    pub cancel: CancellationToken,
    /// Run the CLI in a new network namespace with only its own loopback up (`unshare -n`; needs
    /// root or user namespaces). It then reaches nothing outside, this host's loopback included,
    /// so the provider and MCP endpoints must be reachable without the network (stdio MCP
    /// servers are started inside the namespace).
    pub isolate_network: bool,
}

impl CliRequest {
    /// A request with a 15-minute timeout, no MCP servers, no extra environment.
    pub fn new(
        kind: CodingAgentKind,
        prompt: impl Into<String>,
        work_dir: PathBuf,
        provider: ProviderConfig,
    ) -> Self {
        Self {
            kind,
            prompt: prompt.into(),
            work_dir,
            env: BTreeMap::new(),
            provider,
            mcp_servers: Vec::new(),
            allowed_tools: Vec::new(),
            extra_args: Vec::new(),
            program: None,
            timeout: Duration::from_secs(900),
            cancel: CancellationToken::new(),
            isolate_network: false,
        }
    }
}

/// How a CLI run ended (it ran to its own exit; see [`CliOutcome::success`]).
#[derive(Clone, Debug, PartialEq)]
pub struct CliOutcome {
    /// The answer: claude-code's JSON `result`, else the CLI's whole stdout (trimmed).
    pub final_text: Option<String>,
    /// Exit code (`128 + signal` when killed by a signal).
    pub exit_code: i32,
    /// The end of stdout (8 KiB).
    pub stdout_tail: String,
    /// The end of stderr (8 KiB).
    pub stderr_tail: String,
    /// Wall time.
    pub duration: Duration,
    /// Tokens, when the CLI reports them (claude-code).
    pub usage: Option<Usage>,
}

impl CliOutcome {
    /// Exit code 0.
    pub fn success(&self) -> bool {
        self.exit_code == 0
    }
}

/// Why a CLI run did not finish.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The CLI is not installed (or, for goose, cannot be).
    #[error("Executor '{executor}' not available: {why}; {fix}")]
    NotAvailable {
        /// `claude-code`, `aider`, `goose`, `opencode`.
        executor: &'static str,
        /// What is missing.
        why: String,
        /// How to get it.
        fix: String,
    },
    /// The request asks for something this CLI cannot do.
    #[error("Executor '{executor}' does not support {what}")]
    Unsupported {
        /// The CLI.
        executor: &'static str,
        /// What it lacks.
        what: String,
    },
    /// The work directory is unusable or a config file could not be written.
    #[error("Executor '{executor}': {path}: {reason}")]
    WorkDir {
        /// The CLI.
        executor: &'static str,
        /// The path.
        path: PathBuf,
        /// What failed.
        reason: String,
    },
    /// The program could not be started.
    #[error("Executor '{executor}': cannot start {program}: {reason}")]
    Spawn {
        /// The CLI.
        executor: &'static str,
        /// The program.
        program: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The run exceeded its timeout; its process group was killed.
    #[error(
        "Executor '{executor}' timed out after {after:?}{}",
        tail_suffix(stderr_tail)
    )]
    Timeout {
        /// The CLI.
        executor: &'static str,
        /// The timeout.
        after: Duration,
        /// The end of its stderr.
        stderr_tail: String,
    },
    /// The run was cancelled; its process group was killed.
    #[error("Executor '{executor}' cancelled")]
    Cancelled {
        /// The CLI.
        executor: &'static str,
    },
}

fn tail_suffix(t: &str) -> String {
    if t.trim().is_empty() {
        String::new()
    } else {
        format!("; stderr: {}", t.trim_end())
    }
}

impl CliError {
    /// Whether the same activation may be tried again.
    pub fn retry(&self) -> Retry {
        match self {
            CliError::Timeout { .. } | CliError::Spawn { .. } => {
                Retry::After(Duration::from_secs(30))
            }
            CliError::NotAvailable { .. }
            | CliError::Unsupported { .. }
            | CliError::WorkDir { .. }
            | CliError::Cancelled { .. } => Retry::Never,
        }
    }
}

/// Finds `program` on `path`.
fn which(program: &str, path: &OsString) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path)
        .map(|d| d.join(program))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn tail(bytes: &[u8], n: usize) -> String {
    let start = bytes.len().saturating_sub(n);
    String::from_utf8_lossy(&bytes[start..]).into_owned()
}

/// Reads `r` to its end, keeping the first `limit` bytes (`keep_end == false`) or the last.
async fn read_limited(mut r: impl AsyncRead + Unpin, limit: usize, keep_end: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => return out,
            Ok(n) => {
                out.extend_from_slice(&buf[..n]);
                if out.len() > limit {
                    if keep_end {
                        let cut = out.len() - limit;
                        out.drain(..cut);
                    } else {
                        out.truncate(limit);
                    }
                }
            }
        }
    }
}

fn kill_group(child: &mut Box<dyn ChildWrapper>, pgid: Option<u32>) {
    let _ = child.start_kill();
    if let Some(p) = pgid.and_then(|p| i32::try_from(p).ok()).filter(|p| *p > 1) {
        let _ = nix::sys::signal::killpg(
            nix::unistd::Pid::from_raw(p),
            nix::sys::signal::Signal::SIGKILL,
        );
    }
}

struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(contents.as_bytes())
}

/// Runs the CLI of `req` to its exit (see [`CliRequest`]).
pub async fn run_cli(req: CliRequest) -> Result<CliOutcome, CliError> {
    let executor = req.kind.name();
    let work_dir = req.work_dir.clone();
    if !work_dir.is_dir() {
        return Err(CliError::WorkDir {
            executor,
            path: work_dir,
            reason: "not a directory".into(),
        });
    }
    let inv = invocation(&req, &work_dir)?;
    let path = req
        .env
        .get("PATH")
        .map(OsString::from)
        .or_else(|| std::env::var_os("PATH"))
        .unwrap_or_default();
    let program = match &req.program {
        Some(p) => p.clone(),
        None => which(req.kind.program(), &path).ok_or_else(|| CliError::NotAvailable {
            executor,
            why: format!(
                "`{}` is not on PATH ({})",
                req.kind.program(),
                path.to_string_lossy()
            ),
            fix: req.kind.install_hint().to_owned(),
        })?,
    };
    if !program.is_file() {
        return Err(CliError::NotAvailable {
            executor,
            why: format!("{} does not exist", program.display()),
            fix: req.kind.install_hint().to_owned(),
        });
    }
    let home = work_dir.join(".hg-home");
    std::fs::create_dir_all(&home).map_err(|e| CliError::WorkDir {
        executor,
        path: home.clone(),
        reason: e.to_string(),
    })?;
    let _cleanup = Cleanup(inv.files.iter().map(|(p, _)| p.clone()).collect());
    for (p, contents) in &inv.files {
        write_private(p, contents).map_err(|e| CliError::WorkDir {
            executor,
            path: p.clone(),
            reason: e.to_string(),
        })?;
    }

    let mut cmd = if req.isolate_network {
        let mut c = tokio::process::Command::new("unshare");
        c.args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up 2>/dev/null; exec \"$0\" \"$@\"",
        ])
        .arg(&program);
        c
    } else {
        tokio::process::Command::new(&program)
    };
    cmd.args(&inv.args).current_dir(&work_dir).env_clear();
    for k in PASSED_ENV {
        if let Some(v) = std::env::var_os(k) {
            cmd.env(k, v);
        }
    }
    cmd.env("HOME", &home).envs(&inv.env).envs(&req.env);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut wrap = CommandWrap::from(cmd);
    wrap.wrap(ProcessGroup::leader()).wrap(KillOnDrop);
    let started = Instant::now();
    let mut child = wrap.spawn().map_err(|e| CliError::Spawn {
        executor,
        program: program.clone(),
        reason: e.to_string(),
    })?;
    let pgid = child.id();
    tracing::info!(executor, pid = pgid, "cli_started");
    let stdout = child.stdout().take();
    let stderr = child.stderr().take();
    let out_task = tokio::spawn(async move {
        match stdout {
            Some(s) => read_limited(s, STDOUT_LIMIT, false).await,
            None => Vec::new(),
        }
    });
    let err_task = tokio::spawn(async move {
        match stderr {
            Some(s) => read_limited(s, STDERR_LIMIT, true).await,
            None => Vec::new(),
        }
    });
    enum End {
        Exited(std::io::Result<std::process::ExitStatus>),
        Timeout,
        Cancelled,
    }
    let end = tokio::select! {
        s = child.wait() => End::Exited(s),
        () = tokio::time::sleep(req.timeout) => End::Timeout,
        () = req.cancel.cancelled() => End::Cancelled,
    };
    // Whatever happened, nothing of the group may outlive the run.
    kill_group(&mut child, pgid);
    let status = match end {
        End::Exited(s) => s,
        End::Timeout | End::Cancelled => {
            let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
            let err = tokio::time::timeout(Duration::from_secs(2), err_task)
                .await
                .ok()
                .and_then(Result::ok)
                .unwrap_or_default();
            out_task.abort();
            tracing::warn!(
                executor,
                timed_out = matches!(end, End::Timeout),
                "cli_killed"
            );
            return Err(match end {
                End::Timeout => CliError::Timeout {
                    executor,
                    after: req.timeout,
                    stderr_tail: tail(&err, TAIL),
                },
                _ => CliError::Cancelled { executor },
            });
        }
    };
    // The group is dead: the pipes close, the readers end.
    let out = tokio::time::timeout(Duration::from_secs(5), out_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let err = tokio::time::timeout(Duration::from_secs(5), err_task)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_default();
    let status = status.map_err(|e| CliError::Spawn {
        executor,
        program,
        reason: format!("wait failed: {e}"),
    })?;
    let exit_code = {
        use std::os::unix::process::ExitStatusExt;
        status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0))
    };
    let stdout_text = String::from_utf8_lossy(&out);
    let (final_text, usage) = final_text(req.kind, &stdout_text);
    let duration = started.elapsed();
    tracing::info!(
        executor,
        exit_code,
        duration_ms = duration.as_millis() as u64,
        "cli_finished"
    );
    Ok(CliOutcome {
        final_text,
        exit_code,
        stdout_tail: tail(&out, TAIL),
        stderr_tail: tail(&err, TAIL),
        duration,
        usage,
    })
}
