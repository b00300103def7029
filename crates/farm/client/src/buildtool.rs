//! `hgbuild make -j16`, `hgbuild cmake --build build`, `hgbuild ninja`: runs the build with a
//! directory of compiler-named links to hgbuild first on `PATH` (like distcc's masquerade mode), so
//! every `cc`, `gcc`, `g++`, `c++`, `clang` or `clang++` the build runs goes through the wrapper,
//! then prints how its compiles were served. CMake records absolute compiler paths, so `hgbuild
//! cmake` configures compiler launchers instead ([`cmake_args`]).

use crate::compile::resolve_compiler;
use crate::error::ClientError;
use crate::paths::{MASQUERADE_ENV, STATS_ENV, stats_log};
use crate::stats::Totals;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Compiler names linked in the masquerade directory (only those present on `PATH`).
pub const COMPILER_NAMES: &[&str] = &["cc", "gcc", "g++", "c++", "clang", "clang++"];

/// The cross compilers linked in the masquerade directory too (when on `PATH`):
/// `<triple>-gcc` and `<triple>-g++` for each triple of
/// [`hybridgrid_farm_protocol::cross::PLATFORMS`] (`aarch64-linux-gnu-gcc`, ...), so that
/// `hgbuild make CC=aarch64-linux-gnu-gcc` goes through the farm.
pub fn cross_compiler_names() -> impl Iterator<Item = String> {
    hybridgrid_farm_protocol::cross::PLATFORMS
        .iter()
        .flat_map(|(_, triple)| ["gcc", "g++"].map(|d| format!("{triple}-{d}")))
}

/// A temporary directory of links, removed on drop.
pub struct Masquerade {
    dir: PathBuf,
}

impl Masquerade {
    /// Creates the directory with a link to `wrapper` for each compiler name found on `PATH`.
    pub fn create(wrapper: &Path) -> Result<Self, ClientError> {
        let dir = std::env::temp_dir().join(format!(
            "hgbuild-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(&dir)
            .map_err(|e| ClientError::Setup(format!("cannot create {}: {e}", dir.display())))?;
        let m = Self { dir };
        let names = COMPILER_NAMES
            .iter()
            .map(|n| (*n).to_owned())
            .chain(cross_compiler_names());
        for name in names {
            if resolve_compiler(OsStr::new(&name)).is_ok() {
                std::os::unix::fs::symlink(wrapper, m.dir.join(&name)).map_err(|e| {
                    ClientError::Setup(format!("cannot link {} in {}: {e}", name, m.dir.display()))
                })?;
            }
        }
        Ok(m)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl Drop for Masquerade {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// True when `args` (a make-like tool's arguments) already set a job count, or when this build
/// runs under a GNU make jobserver (`MAKEFLAGS` carries `-j` or `--jobserver-auth`): then the
/// parent's job tokens bound the build, every wrapper invocation is one job holding one token, and
/// adding `-jN` would oversubscribe.
pub fn has_jobs_flag(args: &[OsString]) -> bool {
    let in_args = args.iter().any(|a| {
        let a = a.to_string_lossy();
        a.starts_with("-j") || a.starts_with("--jobs") || a == "-l"
    });
    in_args || std::env::var("MAKEFLAGS").is_ok_and(|f| makeflags_set_jobs(&f))
}

/// Whether a `MAKEFLAGS` value sets a job count or names a jobserver.
pub fn makeflags_set_jobs(flags: &str) -> bool {
    flags.split_whitespace().any(|w| {
        w.starts_with("-j")
            || w.starts_with("--jobs")
            || w.starts_with("--jobserver-auth")
            || w.starts_with("--jobserver-fds")
    })
}

/// CMake modes that neither configure nor build: their arguments pass unchanged.
const CMAKE_OTHER_MODES: &[&str] = &[
    "--install",
    "--open",
    "-E",
    "-P",
    "-N",
    "--find-package",
    "--workflow",
    "--version",
    "--help",
    "-h",
];

/// The arguments and environment `hgbuild cmake ...` runs CMake with. CMake records the compiler
/// it finds as an absolute path, so instead of the masquerade directory (gone after this run) a
/// configure step gets `CMAKE_C_COMPILER_LAUNCHER=<hgbuild>` and `CMAKE_CXX_COMPILER_LAUNCHER=<hgbuild>`
/// in its environment, which CMake (3.17+) copies into a new build directory's cache for the
/// languages the project enables: every later build of that directory compiles through the
/// wrapper, with or without `hgbuild` in front. A launcher the user set (argument or environment)
/// is kept. `cmake --build` gets `--parallel <jobs>` when no job count is given.
pub fn cmake_args(
    wrapper: &Path,
    args: &[OsString],
    jobs: Option<u32>,
) -> (Vec<OsString>, Vec<(String, OsString)>) {
    let words: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let mut out: Vec<OsString> = args.to_vec();
    if words
        .iter()
        .any(|w| CMAKE_OTHER_MODES.contains(&w.as_str()))
    {
        return (out, Vec::new());
    }
    if words.first().is_some_and(|w| w == "--build") {
        let given = words
            .iter()
            .any(|w| w.starts_with("-j") || w.starts_with("--parallel") || w == "--")
            || std::env::var_os("CMAKE_BUILD_PARALLEL_LEVEL").is_some()
            || has_jobs_flag(&[]);
        if let Some(n) = jobs
            && !given
        {
            out.push("--parallel".into());
            out.push(n.to_string().into());
        }
        return (out, Vec::new());
    }
    let env = ["C", "CXX"]
        .into_iter()
        .map(|lang| format!("CMAKE_{lang}_COMPILER_LAUNCHER"))
        .filter(|var| !words.iter().any(|w| w.contains(var.as_str())))
        .filter(|var| std::env::var_os(var).is_none())
        .map(|var| (var, wrapper.as_os_str().to_owned()))
        .collect();
    (out, env)
}

/// Runs `program args` under the wrapper, with `env` added; `jobs` is added as `-jN` to make/ninja
/// (`--parallel N` to `cmake --build`) when the user gave none. CMake is run with compiler
/// launchers instead of the masquerade directory (see [`cmake_args`]).
/// Returns the build's exit code and the totals of its compiles.
pub fn run(
    wrapper: &Path,
    program: &OsStr,
    args: &[OsString],
    jobs: Option<u32>,
    env: &[(&str, String)],
) -> Result<(i32, Totals), ClientError> {
    let base = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let is_cmake = base == "cmake";
    let log = stats_log();
    let start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let mut cmd = Command::new(program);
    // Kept alive until the build ends; removed on drop.
    let masq = if is_cmake {
        let (args, launchers) = cmake_args(wrapper, args, jobs);
        cmd.args(args).envs(launchers);
        None
    } else {
        let masq = Masquerade::create(wrapper)?;
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![masq.dir().to_owned()];
        paths.extend(std::env::split_paths(&path));
        let new_path =
            std::env::join_paths(paths).map_err(|e| ClientError::Setup(format!("PATH: {e}")))?;
        if let Some(n) = jobs
            && matches!(base.as_str(), "make" | "gmake" | "ninja")
            && !has_jobs_flag(args)
        {
            cmd.arg(format!("-j{n}"));
        }
        cmd.args(args)
            .env("PATH", new_path)
            .env(MASQUERADE_ENV, masq.dir());
        Some(masq)
    };
    cmd.env(STATS_ENV, &log)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let status = cmd.status().map_err(|source| ClientError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
    drop(masq);
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    let totals = Totals::read(&log, start)
        .map_err(|e| ClientError::Setup(format!("reading {}: {e}", log.display())))?;
    Ok((code, totals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobserver_and_job_flags_are_recognised() {
        assert!(makeflags_set_jobs(
            " -j8 --jobserver-auth=fifo:/tmp/GMfifo1"
        ));
        assert!(makeflags_set_jobs("--jobserver-auth=3,4"));
        assert!(makeflags_set_jobs("--jobserver-fds=3,4 -j"));
        assert!(!makeflags_set_jobs("s -- CC=cc"));
        assert!(has_jobs_flag(&["-j4".into()]));
        assert!(has_jobs_flag(&["--jobs=4".into()]));
    }

    fn words(v: Vec<OsString>) -> Vec<String> {
        v.into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn cmake_configure_gets_launchers_and_build_gets_parallel() {
        let me = Path::new("/opt/hg/hgbuild");
        let a = |s: &[&str]| -> Vec<OsString> { s.iter().map(OsString::from).collect() };
        let env_unset = |v: &str| std::env::var_os(v).is_none();
        let (args, env) = cmake_args(me, &a(&["-S", ".", "-B", "b"]), Some(8));
        assert_eq!(words(args), ["-S", ".", "-B", "b"]);
        if env_unset("CMAKE_C_COMPILER_LAUNCHER") && env_unset("CMAKE_CXX_COMPILER_LAUNCHER") {
            assert_eq!(
                env,
                [
                    ("CMAKE_C_COMPILER_LAUNCHER".to_owned(), OsString::from(me)),
                    ("CMAKE_CXX_COMPILER_LAUNCHER".to_owned(), OsString::from(me))
                ]
            );
            // The user's own launcher is kept.
            let (_, env) = cmake_args(me, &a(&["-DCMAKE_C_COMPILER_LAUNCHER=ccache", "."]), None);
            assert_eq!(
                env,
                [("CMAKE_CXX_COMPILER_LAUNCHER".to_owned(), OsString::from(me))]
            );
        }
        if env_unset("CMAKE_BUILD_PARALLEL_LEVEL") && env_unset("MAKEFLAGS") {
            let (args, env) = cmake_args(me, &a(&["--build", "b"]), Some(8));
            assert_eq!(words(args), ["--build", "b", "--parallel", "8"]);
            assert!(env.is_empty());
        }
        let (args, _) = cmake_args(me, &a(&["--build", "b", "-j2"]), Some(8));
        assert_eq!(words(args), ["--build", "b", "-j2"]);
        let (args, env) = cmake_args(me, &a(&["-E", "echo", "x"]), Some(8));
        assert_eq!(words(args), ["-E", "echo", "x"]);
        assert!(env.is_empty());
    }
}
