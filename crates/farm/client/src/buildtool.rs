//! `hgbuild make -j16`, `hgbuild cmake --build build`, `hgbuild ninja`: runs the build with a
//! directory of compiler-named links to hgbuild first on `PATH` (like distcc's masquerade mode), so
//! every `cc`, `gcc`, `g++`, `c++`, `clang` or `clang++` the build runs goes through the wrapper,
//! then prints how its compiles were served.

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

/// Runs `program args` under the wrapper, with `env` added; `jobs` is added as `-jN` to make/ninja
/// when the user gave none.
/// Returns the build's exit code and the totals of its compiles.
pub fn run(
    wrapper: &Path,
    program: &OsStr,
    args: &[OsString],
    jobs: Option<u32>,
    env: &[(&str, String)],
) -> Result<(i32, Totals), ClientError> {
    let masq = Masquerade::create(wrapper)?;
    let log = stats_log();
    let start = std::fs::metadata(&log).map(|m| m.len()).unwrap_or(0);
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![masq.dir().to_owned()];
    paths.extend(std::env::split_paths(&path));
    let new_path =
        std::env::join_paths(paths).map_err(|e| ClientError::Setup(format!("PATH: {e}")))?;
    let mut cmd = Command::new(program);
    let base = Path::new(program)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if let Some(n) = jobs
        && matches!(base.as_str(), "make" | "gmake" | "ninja")
        && !has_jobs_flag(args)
    {
        cmd.arg(format!("-j{n}"));
    }
    cmd.args(args)
        .env("PATH", new_path)
        .env(MASQUERADE_ENV, masq.dir())
        .env(STATS_ENV, &log)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())));
    let status = cmd.status().map_err(|source| ClientError::Spawn {
        program: program.to_string_lossy().into_owned(),
        source,
    })?;
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
}
