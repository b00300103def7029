//! Rooted compiles (clang with DWARF 5 debug info, see `hybridgrid_farm_protocol::RootedManifest`):
//! the client's files are laid out at their absolute paths in the task's root, and the original
//! command runs there, in the client's working directory, on an executor whose tasks see that root
//! as `/` with the toolchain's directories and the system headers bind-mounted at their own paths
//! (`hybridgrid_executors::NativeExecutor::with_root`), inside the same sandbox as every compile.
//!
//! The worker refuses a request whose system headers it does not have byte for byte
//! ([`ROOTED_HEADER_MISMATCH`], a `TOOLCHAIN_UNAVAILABLE` failure: the client compiles locally),
//! and any shipped file, working directory or header path beneath a bound directory it would hide.
//! The capability ([`ROOTED_EXECUTOR`]) is advertised only when a rooted test compile works here.

use crate::sandbox::read_only_dirs;
use crate::service::{LocalToolchain, WorkerState};
use crate::spec::{RequestError, bounded_limits, validate_compile_args};
use hybridgrid_core::{CancellationToken, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{NativeExecutor, ROOT_DIR, Sandbox};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_protocol::{
    ROOTED_EXECUTOR, ROOTED_HEADER_MISMATCH, ROOTED_MANIFEST, ROOTED_PREFIX, RootedManifest,
    file_digest, parse_rooted_command,
};
use hybridgrid_transport::pb::task_failure::Kind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the system headers live; bound into the root read-only beside the toolchain's
/// directories (the compiles of shipped text need none, so the plain sandbox has none).
const SYSTEM_HEADER_DIRS: &[&str] = &["/usr/include", "/usr/local/include"];
/// The object's path inside the root (the executor creates `/.hg-tmp`). clang records no `-o`
/// path in an object without split DWARF.
const OUTPUT: &str = "/.hg-tmp/out.o";

/// The rooted executor of a worker and the host paths its tasks see.
#[derive(Clone)]
pub(crate) struct Rooted {
    executor: Arc<dyn Executor>,
    binds: Vec<PathBuf>,
}

/// Whether `spec` is a rooted compile request.
pub(crate) fn is_rooted(spec: &TaskSpec) -> bool {
    spec.inputs.iter().any(|f| f.path == ROOTED_MANIFEST)
}

/// The directories bound into a rooted task's root: the sandbox's read-only ones, the system
/// headers and `/dev/null`.
fn binds(toolchains: &[LocalToolchain], cfg: &FarmConfig) -> Vec<PathBuf> {
    let mut dirs = read_only_dirs(toolchains, &cfg.worker.sandbox.read_only);
    dirs.extend(SYSTEM_HEADER_DIRS.iter().map(PathBuf::from));
    dirs.push("/dev/null".into());
    dirs
}

/// The rooted executor for the host `toolchains` of `cfg`, sandboxed when `sandboxed` (the
/// worker's plain compiles are), when a rooted test compile with each clang works here; `None`
/// (logged) otherwise: the worker then does not advertise [`ROOTED_EXECUTOR`].
pub(crate) async fn start(
    cfg: &FarmConfig,
    toolchains: &[LocalToolchain],
    work_root: &Path,
    sandboxed: bool,
) -> Option<Rooted> {
    let clangs: Vec<&LocalToolchain> = toolchains
        .iter()
        .filter(|t| t.image.is_none() && t.toolchain.name.starts_with("clang"))
        .collect();
    if clangs.is_empty() {
        return None;
    }
    let binds = binds(toolchains, cfg);
    let mut exec = NativeExecutor::new(hybridgrid_executors::NativeConfig {
        work_root: work_root.to_owned(),
        path: None,
    });
    if sandboxed {
        let mut policy = crate::sandbox::sandbox_config(cfg, toolchains);
        policy
            .read_only
            .extend(SYSTEM_HEADER_DIRS.iter().map(PathBuf::from));
        match Sandbox::probe(policy) {
            Ok(sandbox) => exec = exec.with_sandbox(sandbox),
            Err(e) => {
                tracing::warn!(error = %e, "rooted compiles (clang DWARF 5) not offered: no sandbox");
                return None;
            }
        }
    }
    let exec = exec.with_root(binds.clone());
    for t in clangs {
        if let Err(why) = check_compile(&exec, t).await {
            tracing::warn!(reason = %why, "rooted compiles (clang DWARF 5) not offered");
            return None;
        }
    }
    tracing::info!("rooted compiles (clang DWARF 5 at the client's paths) offered");
    Some(Rooted {
        executor: Arc::new(exec),
        binds,
    })
}

/// Compiles, rooted, a file that includes a system header, with DWARF 5 debug info.
async fn check_compile(exec: &dyn Executor, t: &LocalToolchain) -> Result<(), String> {
    let mut spec = TaskSpec::new(
        [
            &*t.path.to_string_lossy(),
            "-g",
            "-c",
            "check.c",
            "-o",
            OUTPUT,
        ]
        .map(str::to_owned)
        .to_vec(),
        std::time::Duration::from_secs(30),
    );
    spec.inputs = vec![InputFile {
        path: format!("{ROOT_DIR}/.hg-check/check.c"),
        contents: b"#include <stddef.h>\nsize_t hybridgrid_rooted_check;\n"
            .to_vec()
            .into(),
        executable: false,
    }];
    spec.cwd = Some(format!("{ROOT_DIR}/.hg-check"));
    spec.outputs = vec![format!("{ROOT_DIR}{OUTPUT}")];
    match exec.execute(spec, CancellationToken::new()).await {
        Ok(out) if out.success() && out.files.len() == 1 => Ok(()),
        Ok(out) => Err(format!(
            "a rooted test compile with {} exited with {}: {}",
            t.path.display(),
            out.exit_code,
            String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(500)]).trim()
        )),
        Err(e) => Err(format!(
            "a rooted test compile with {} could not run: {e}",
            t.path.display()
        )),
    }
}

/// Gives the just-built `state` its rooted executor and advertises it.
pub(crate) fn attach(mut state: Arc<WorkerState>, rooted: Option<Rooted>) -> Arc<WorkerState> {
    if let Some(rooted) = rooted
        && let Some(s) = Arc::get_mut(&mut state)
    {
        s.info
            .capabilities
            .executors
            .push(ROOTED_EXECUTOR.to_owned());
        s.rooted = Some(rooted);
    }
    state
}

impl Rooted {
    /// The executor rooted compiles run on.
    pub(crate) fn executor(&self) -> Arc<dyn Executor> {
        self.executor.clone()
    }

    fn hidden_by_bind(&self, path: &Path) -> bool {
        self.binds.iter().any(|b| path.starts_with(b))
    }

    /// Turns a rooted request into the task to run: the shipped files at their paths in the
    /// root, the original command (but `-o` and depfile flags) in the client's working directory.
    /// The failure kind and message when refused.
    pub(crate) fn compile_spec(
        &self,
        spec: TaskSpec,
        compiler: &Path,
    ) -> Result<TaskSpec, (Kind, String)> {
        let invalid = |e: RequestError| (Kind::InvalidSpec, e.to_string());
        validate_compile_args(spec.command.get(1..).unwrap_or_default()).map_err(invalid)?;
        let job = match parse_rooted_command(&spec.command) {
            hybridgrid_compiler::Invocation::Distributable(job) if job.is_clang() => job,
            hybridgrid_compiler::Invocation::Distributable(_) => {
                return Err(invalid(RequestError::NotDistributable(
                    "rooted compiles are clang's".into(),
                )));
            }
            hybridgrid_compiler::Invocation::Local(reason) => {
                return Err(invalid(RequestError::NotDistributable(format!(
                    "{reason:?}"
                ))));
            }
        };
        let manifest = spec
            .inputs
            .iter()
            .find(|f| f.path == ROOTED_MANIFEST)
            .ok_or_else(|| invalid(RequestError::MissingInput))
            .and_then(|f| {
                RootedManifest::decode(&f.contents)
                    .map_err(|e| invalid(RequestError::Derive(e.to_string())))
            })?;
        let names_path = |p: &str| {
            invalid(RequestError::NamesPath {
                arg: p.to_owned(),
                path: p.to_owned(),
            })
        };
        for (path, digest) in &manifest.system {
            let p = Path::new(path);
            if !self.hidden_by_bind(p) {
                return Err(names_path(path));
            }
            let ours = std::fs::read(p).map(|b| file_digest(&b));
            if ours.as_deref().ok() != Some(digest.as_str()) {
                return Err((
                    Kind::ToolchainUnavailable,
                    format!("{ROOTED_HEADER_MISMATCH}: {path}"),
                ));
            }
        }
        if self.hidden_by_bind(Path::new(&manifest.cwd)) {
            return Err(names_path(&manifest.cwd));
        }
        let mut inputs = Vec::new();
        for f in spec.inputs {
            if f.path == ROOTED_MANIFEST {
                continue;
            }
            let Some(abs) = f.path.strip_prefix(ROOTED_PREFIX) else {
                return Err(names_path(&f.path));
            };
            if self.hidden_by_bind(&Path::new("/").join(abs)) {
                return Err(names_path(&f.path));
            }
            inputs.push(f);
        }
        let args = job
            .rooted_args(Path::new(OUTPUT))
            .ok_or_else(|| invalid(RequestError::Derive("-Wp, carries a depfile".into())))?;
        let mut command = vec![compiler.to_string_lossy().into_owned()];
        command.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
        let mut env: std::collections::BTreeMap<String, String> = spec
            .env
            .into_iter()
            .filter(|(k, _)| hybridgrid_compiler::CLIENT_ENV.contains(&k.as_str()))
            .collect();
        // clang records $PWD as the compile directory when it names the working directory.
        env.insert("PWD".into(), manifest.cwd.clone());
        let in_root = |p: &str| format!("{ROOT_DIR}/{}", p.trim_start_matches('/'));
        Ok(TaskSpec {
            id: hybridgrid_core::TaskId::new(uuid::Uuid::new_v4().simple().to_string()),
            command,
            env,
            stdin: Default::default(),
            inputs,
            outputs: vec![in_root(OUTPUT)],
            cwd: Some(in_root(&manifest.cwd)),
            image: None,
            timeout: spec.timeout,
            limits: bounded_limits(&spec.limits),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hybridgrid_farm_protocol::RootedManifest;

    fn rooted() -> Rooted {
        Rooted {
            executor: Arc::new(NativeExecutor::new(hybridgrid_executors::NativeConfig {
                work_root: std::env::temp_dir(),
                path: None,
            })),
            binds: vec!["/usr/include".into(), "/usr/lib".into()],
        }
    }

    fn request(system: Vec<(String, String)>, shipped: &str) -> TaskSpec {
        let manifest = RootedManifest {
            cwd: "/home/me/proj".into(),
            system,
        };
        let mut spec = TaskSpec::new(
            "clang -O2 -g -MD -c src/a.c -o a.o"
                .split(' ')
                .map(str::to_owned)
                .collect(),
            std::time::Duration::from_secs(10),
        );
        spec.inputs = vec![
            InputFile {
                path: ROOTED_MANIFEST.into(),
                contents: manifest.encode().into(),
                executable: false,
            },
            InputFile {
                path: shipped.into(),
                contents: b"int x;\n".to_vec().into(),
                executable: false,
            },
        ];
        spec
    }

    fn limits_h() -> (String, String) {
        let path = "/usr/include/limits.h";
        let digest = file_digest(&std::fs::read(path).expect("limits.h"));
        (path.to_owned(), digest)
    }

    #[test]
    fn the_original_command_runs_at_the_clients_paths() {
        let spec = request(vec![limits_h()], "root/home/me/proj/src/a.c");
        let task = rooted()
            .compile_spec(spec, Path::new("/usr/bin/clang"))
            .expect("accepted");
        assert_eq!(
            task.command.join(" "),
            "/usr/bin/clang -O2 -g -c -x c src/a.c -o /.hg-tmp/out.o"
        );
        assert_eq!(task.cwd.as_deref(), Some("root/home/me/proj"));
        assert_eq!(task.outputs, vec!["root/.hg-tmp/out.o".to_owned()]);
        assert_eq!(
            task.env.get("PWD").map(String::as_str),
            Some("/home/me/proj")
        );
        assert_eq!(task.inputs.len(), 1);
        assert_eq!(task.inputs[0].path, "root/home/me/proj/src/a.c");
    }

    #[test]
    fn a_header_that_differs_here_is_a_mismatch() {
        let (path, _) = limits_h();
        let spec = request(vec![(path, "00".into())], "root/home/me/proj/src/a.c");
        let (kind, message) = rooted()
            .compile_spec(spec, Path::new("/usr/bin/clang"))
            .expect_err("refused");
        assert_eq!(kind, Kind::ToolchainUnavailable);
        assert!(message.starts_with(ROOTED_HEADER_MISMATCH), "{message}");
    }

    #[test]
    fn paths_the_binds_would_hide_or_not_cover_are_refused() {
        for (system, shipped) in [
            // A "system" header outside the bound directories: the worker would not see it.
            (
                vec![("/etc/passwd".to_owned(), "00".to_owned())],
                "root/home/me/proj/a.c",
            ),
            // A shipped file beneath a bound directory: the bind would hide it.
            (vec![], "root/usr/include/a.h"),
            // A shipped file outside the root.
            (vec![], "elsewhere/a.h"),
        ] {
            let spec = request(system, shipped);
            let (kind, _) = rooted()
                .compile_spec(spec, Path::new("/usr/bin/clang"))
                .expect_err(shipped);
            assert_eq!(kind, Kind::InvalidSpec, "{shipped}");
        }
    }
}
