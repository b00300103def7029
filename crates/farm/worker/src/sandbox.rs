//! The compiler sandbox of a worker: which directories its compilers may read, the limits they
//! run under, the start-up check that the sandbox really works here, and what `/health` says.
//!
//! A worker confines every compile with [`hybridgrid_executors::Sandbox`]: the compiler reads
//! only its toolchain's directories and its task's work directory, writes only the work
//! directory, has no network, and runs under memory, file-size and CPU limits; the worker's own
//! config, environment (`/proc/<pid>/environ`) and every other file are out of its reach. At
//! start the worker compiles a one-line file in the sandbox with each of its compilers: a kernel
//! without Landlock, or a host where namespaces cannot be created, fails that check, and the
//! worker refuses to serve unless `worker.allow_unsandboxed: true`.

use crate::service::LocalToolchain;
use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::response::IntoResponse;
use hybridgrid_core::{CancellationToken, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{NativeExecutor, Sandbox, SandboxConfig};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::serve::StartError;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// System directories every toolchain needs (dynamic loader, C library, binutils).
const SYSTEM_DIRS: &[&str] = &[
    "/lib",
    "/lib64",
    "/lib32",
    "/usr/lib",
    "/usr/lib64",
    "/usr/lib32",
    "/usr/libexec",
    "/usr/bin",
    "/bin",
];

/// How long the start-up check may take per compiler.
const CHECK_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this worker's compiles run sandboxed; reported by `/health` and at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SandboxStatus {
    /// Every compile is confined; the text names what is enforced.
    Enforced(String),
    /// No sandbox (`worker.allow_unsandboxed: true` on a host where none works); the text says
    /// why none works.
    Unsandboxed(String),
    /// The executor was supplied by the embedder ([`crate::start_worker`]): its own business.
    External,
}

impl SandboxStatus {
    /// The `/health` body: `OK` on the first line (what probes look for), then the sandbox.
    pub fn health(&self) -> String {
        match self {
            SandboxStatus::Enforced(what) => format!("OK\nsandbox: enforced ({what})\n"),
            SandboxStatus::Unsandboxed(why) => format!(
                "OK\nsandbox: NONE (worker.allow_unsandboxed: true; {why}): compilers on this worker can read every file the worker can\n"
            ),
            SandboxStatus::External => "OK\nsandbox: executor supplied by the embedder\n".into(),
        }
    }
}

/// The directories the compilers of `toolchains` may read and execute beneath: for each, the
/// `bin`, `lib`, `lib64`, `libexec` and `<target>` directories of its prefix (the parent of its
/// binary's directory), then the system library directories and `extra`.
pub(crate) fn read_only_dirs(toolchains: &[LocalToolchain], extra: &[PathBuf]) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    let mut add = |p: PathBuf| {
        if !dirs.contains(&p) {
            dirs.push(p);
        }
    };
    for t in toolchains {
        let Some(bin) = t.path.parent() else { continue };
        add(bin.to_owned());
        if let Some(prefix) = bin.parent().filter(|p| *p != Path::new("/")) {
            for sub in ["bin", "lib", "lib64", "libexec"] {
                add(prefix.join(sub));
            }
            if !t.toolchain.target.is_empty() && !t.toolchain.target.contains(['/', '.']) {
                add(prefix.join(&t.toolchain.target));
            }
        }
    }
    for d in SYSTEM_DIRS {
        add(PathBuf::from(d));
    }
    for d in extra {
        add(d.clone());
    }
    dirs
}

/// The sandbox policy of `cfg` for `toolchains`.
pub(crate) fn sandbox_config(cfg: &FarmConfig, toolchains: &[LocalToolchain]) -> SandboxConfig {
    let sb = &cfg.worker.sandbox;
    SandboxConfig {
        read_only: read_only_dirs(toolchains, &sb.read_only),
        memory_bytes: sb.memory.0,
        file_size_bytes: sb.file_size.0,
        cpu_seconds: sb
            .cpu
            .map_or(*cfg.worker.task_timeout, |d| *d)
            .as_secs()
            .max(1),
    }
}

/// Compiles one line with `toolchain` on `exec` (in its image, when it has one), as the worker's
/// compiles run; the reason when that fails.
pub(crate) async fn check_compile(
    exec: &dyn Executor,
    toolchain: &LocalToolchain,
) -> Result<(), String> {
    let mut spec = TaskSpec::new(
        vec![
            toolchain.path.to_string_lossy().into_owned(),
            // As the real compiles run: no system headers (not even stdc-predef.h).
            "-nostdinc".into(),
            "-x".into(),
            "c".into(),
            "-c".into(),
            "check.c".into(),
            "-o".into(),
            "check.o".into(),
        ],
        CHECK_TIMEOUT,
    );
    spec.inputs = vec![InputFile {
        path: "check.c".into(),
        contents: b"int hybridgrid_sandbox_check;\n".to_vec().into(),
        executable: false,
    }];
    spec.outputs = vec!["check.o".into()];
    spec.image = toolchain.image.clone();
    match exec.execute(spec, CancellationToken::new()).await {
        Ok(out) if out.success() && out.files.len() == 1 => Ok(()),
        Ok(out) => Err(format!(
            "a test compile with {} exited with {}: {}",
            toolchain.path.display(),
            out.exit_code,
            String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(500)]).trim()
        )),
        Err(e) => Err(format!(
            "a test compile with {} could not run: {e}",
            toolchain.path.display()
        )),
    }
}

/// Puts `exec` in the sandbox of `cfg` and checks, with one compile per toolchain, that it
/// works here. Where it does not: an error naming the cause, or with `worker.allow_unsandboxed`
/// the bare executor and [`SandboxStatus::Unsandboxed`].
pub(crate) async fn confine(
    cfg: &FarmConfig,
    toolchains: &[LocalToolchain],
    exec: NativeExecutor,
) -> Result<(NativeExecutor, SandboxStatus), StartError> {
    let attempt = async {
        let sandbox = Sandbox::probe(sandbox_config(cfg, toolchains)).map_err(|e| e.to_string())?;
        let what = sandbox.describe();
        let confined = exec.clone().with_sandbox(sandbox);
        for t in toolchains {
            check_compile(&confined, t).await?;
        }
        Ok::<_, String>((confined, what))
    };
    match attempt.await {
        Ok((confined, what)) => {
            tracing::info!(sandbox = %what, "compiler sandbox enforced");
            Ok((confined, SandboxStatus::Enforced(what)))
        }
        Err(why) if cfg.worker.allow_unsandboxed => {
            tracing::warn!(reason = %why,
                "NO compiler sandbox (worker.allow_unsandboxed: true): compilers can read every file this worker can, its config and environment included");
            Ok((exec, SandboxStatus::Unsandboxed(why)))
        }
        Err(why) => Err(StartError::Config(format!(
            "no compiler sandbox is possible on this host ({why}); a worker without one would let any client read its files. Fix the cause (a kernel with Landlock, user or network namespaces allowed), or set worker.allow_unsandboxed: true (HG_WORKER_ALLOW_UNSANDBOXED=true) to serve anyway"
        ))),
    }
}

/// `router` with `/health` answered by [`SandboxStatus::health`].
pub(crate) fn with_health(router: Router, status: Arc<SandboxStatus>) -> Router {
    router.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let status = status.clone();
            async move {
                if req.uri().path() == "/health" {
                    return status.health().into_response();
                }
                next.run(req).await
            }
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridgrid_core::Toolchain;

    #[test]
    fn a_toolchain_prefix_and_the_system_dirs_are_readable_and_nothing_else() {
        let tc = LocalToolchain {
            toolchain: Toolchain {
                name: "gcc".into(),
                version: "12".into(),
                target: "aarch64-linux-gnu".into(),
                binary_hash: "x".into(),
            },
            path: "/opt/cross/bin/aarch64-linux-gnu-gcc".into(),
            image: None,
        };
        let dirs = read_only_dirs(&[tc], &["/srv/extra".into()]);
        for want in [
            "/opt/cross/bin",
            "/opt/cross/lib",
            "/opt/cross/libexec",
            "/opt/cross/aarch64-linux-gnu",
            "/usr/lib",
            "/srv/extra",
        ] {
            assert!(dirs.contains(&PathBuf::from(want)), "{want}: {dirs:?}");
        }
        for never in ["/", "/etc", "/proc", "/opt/cross", "/home", "/tmp", "/dev"] {
            assert!(!dirs.contains(&PathBuf::from(never)), "{never}: {dirs:?}");
        }
    }

    #[test]
    fn health_says_whether_compiles_are_sandboxed() {
        assert!(
            SandboxStatus::Enforced("landlock".into())
                .health()
                .starts_with("OK\nsandbox: enforced")
        );
        let h = SandboxStatus::Unsandboxed("no landlock".into()).health();
        assert!(
            h.contains("sandbox: NONE") && h.contains("no landlock"),
            "{h}"
        );
    }
}
