//! Compilers inside Docker images (`worker.docker.toolchains`), typically cross toolchains: the
//! worker identifies each one by running it in a container of its image, checks that a compile
//! works there, and runs every compile for it in a fresh container of that image.
//!
//! The container is the compile's sandbox (issue #16's rules hold): network `none`, only the
//! task's work directory bind-mounted, read-only root filesystem with a small `/tmp` tmpfs, an
//! unprivileged user, memory (swap included), CPU and process limits, `no-new-privileges`, killed
//! at the deadline and always removed. Nothing is ever pulled.

use crate::sandbox::check_compile;
use crate::service::LocalToolchain;
use hybridgrid_core::{CancellationToken, Executor, TaskSpec, Toolchain};
use hybridgrid_executors::{ContainerPolicy, DockerConfig, DockerExecutor};
use hybridgrid_farm_protocol::config::{FarmConfig, ImageToolchain};
use hybridgrid_farm_protocol::cross::platform_of;
use hybridgrid_transport::serve::StartError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// How long one identification run may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(60);
/// Largest compiler driver read back to hash it.
const MAX_DRIVER_BYTES: usize = 256 << 20;

/// The executor for image toolchains and the toolchains it offers.
pub(crate) struct ImageToolchains {
    /// Runs each compile in a container of the toolchain's image.
    pub(crate) executor: Arc<dyn Executor>,
    /// Identified and checked toolchains, `image` set.
    pub(crate) toolchains: Vec<LocalToolchain>,
}

/// Connects to the engine of `worker.docker`, removes what an earlier run of this worker left
/// behind, then identifies and checks every configured toolchain. `None` when none is
/// configured (the engine is not contacted). Any failure stops the start with its cause: an
/// unreachable engine (with the fix), a missing image (with how to build one), a compiler that
/// does not run or compile in its image.
pub(crate) async fn start(
    cfg: &FarmConfig,
    work_root: &Path,
) -> Result<Option<ImageToolchains>, StartError> {
    let d = &cfg.worker.docker;
    if d.toolchains.is_empty() {
        return Ok(None);
    }
    let owner = format!(
        "hg-worker-{}",
        cfg.worker.id.clone().unwrap_or_else(host_name)
    );
    let config = DockerConfig {
        socket: d.socket.clone(),
        image: None,
        work_root: work_root.join("hg-docker"),
        owner,
        defaults: ContainerPolicy {
            network: "none".into(),
            cpus: d.cpus,
            memory_mb: Some((d.memory.0 >> 20).max(64)),
            pids_limit: Some(d.pids_limit),
            user: Some(d.user.clone()),
            read_only_rootfs: true,
        },
        ..DockerConfig::default()
    };
    let fail = |what: String| StartError::Config(format!("worker.docker: {what}"));
    let exec = DockerExecutor::connect(config)
        .await
        .map_err(|e| fail(cause_chain(&e)))?;
    exec.reap_leftovers()
        .await
        .map_err(|e| fail(cause_chain(&e)))?;
    let mut toolchains: Vec<LocalToolchain> = Vec::new();
    for (i, entry) in d.toolchains.iter().enumerate() {
        let key = format!("worker.docker.toolchains[{i}]");
        let toolchain = identify(&exec, entry)
            .await
            .map_err(|e| StartError::Config(format!("{key} ({}): {e}", entry.image)))?;
        let local = LocalToolchain {
            toolchain,
            path: PathBuf::from(&entry.compiler),
            image: Some(entry.image.clone()),
        };
        check_compile(&exec, &local)
            .await
            .map_err(|e| StartError::Config(format!("{key} ({}): {e}", entry.image)))?;
        let tc = &local.toolchain;
        if toolchains.iter().any(|t| t.toolchain == *tc) {
            continue;
        }
        tracing::info!(image = %entry.image, compiler = %entry.compiler, name = %tc.name,
            version = %tc.version, target = %tc.target,
            platform = platform_of(&tc.target).unwrap_or("-"),
            sandbox = "container (network none, work dir only, read-only root)",
            "toolchain found");
        toolchains.push(local);
    }
    Ok(Some(ImageToolchains {
        executor: Arc::new(exec),
        toolchains,
    }))
}

/// The identity of the compiler of `entry`, exactly as a client computes it for the same
/// binary (`hybridgrid_compiler::probe_toolchain`): family, `-dumpfullversion`,
/// `-dumpmachine` and the BLAKE3 of the driver the path leads to (read with `cat`, which follows
/// symlinks as the client's canonicalisation does).
async fn identify(exec: &DockerExecutor, entry: &ImageToolchain) -> Result<Toolchain, String> {
    let kind = hybridgrid_compiler::CompilerKind::detect(Path::new(&entry.compiler))
        .map_err(|e| e.to_string())?;
    let version_text = run(exec, entry, &[entry.compiler.as_str(), "--version"]).await?;
    let version_text = String::from_utf8_lossy(&version_text);
    if version_text.to_ascii_lowercase().contains("clang") {
        return Err(format!(
            "{} is clang: only GCC drivers are offered from images",
            entry.compiler
        ));
    }
    let version = text(run(exec, entry, &[entry.compiler.as_str(), "-dumpfullversion"]).await?);
    let target = text(run(exec, entry, &[entry.compiler.as_str(), "-dumpmachine"]).await?);
    let driver = run(exec, entry, &["cat", entry.compiler.as_str()]).await?;
    if version.is_empty() || target.is_empty() || driver.is_empty() {
        return Err(format!(
            "{} answered no version, target or binary",
            entry.compiler
        ));
    }
    Ok(Toolchain {
        name: if kind.is_cxx() { "g++" } else { "gcc" }.to_owned(),
        version,
        target,
        binary_hash: blake3::hash(&driver).to_hex().to_string(),
    })
}

fn text(bytes: Vec<u8>) -> String {
    String::from_utf8_lossy(&bytes).trim().to_owned()
}

/// Runs `command` in a container of the entry's image; its stdout, or why it failed.
async fn run(
    exec: &DockerExecutor,
    entry: &ImageToolchain,
    command: &[&str],
) -> Result<Vec<u8>, String> {
    let mut spec = TaskSpec::new(
        command.iter().map(|s| (*s).to_owned()).collect(),
        PROBE_TIMEOUT,
    );
    spec.image = Some(entry.image.clone());
    spec.env.insert("LC_ALL".into(), "C".into());
    spec.limits.max_stream_bytes = MAX_DRIVER_BYTES;
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .map_err(|e| cause_chain(&e))?;
    if !out.success() || out.truncated {
        return Err(format!(
            "`{}` in the image exited with {}{}: {}",
            command.join(" "),
            out.exit_code,
            if out.truncated {
                " (output truncated)"
            } else {
                ""
            },
            String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(500)]).trim()
        ));
    }
    Ok(out.stdout.to_vec())
}

/// `e` and its sources, `: `-joined (the Docker error carrying the fix is a source).
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

fn host_name() -> String {
    std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "worker".into())
}
