//! Toolchain identity: which compiler binary, version and target a program name stands for.

use crate::{CompilerKind, UnknownCompiler};
use hybridgrid_core::Toolchain;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};
use std::time::SystemTime;

/// Probing a compiler failed; every variant names the compiler.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// The name is not a known compiler driver.
    #[error(transparent)]
    Unknown(#[from] UnknownCompiler),
    /// Not found on `PATH` (or the given path does not exist).
    #[error("compiler `{0}` not found on PATH")]
    NotFound(String),
    /// Resolving, reading or hashing the binary failed.
    #[error("cannot read compiler `{path}`: {source}")]
    Io {
        /// The binary.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Running the compiler to ask it something failed or it answered nothing.
    #[error("`{compiler} {arg}` failed: {detail}")]
    Query {
        /// The binary.
        compiler: PathBuf,
        /// The question (`-dumpmachine`, ...).
        arg: &'static str,
        /// Exit status / stderr / io error.
        detail: String,
    },
}

impl ProbeError {
    /// Whether trying again can help: never; a missing, unknown or broken compiler stays so.
    pub fn retry(&self) -> hybridgrid_core::Retry {
        hybridgrid_core::Retry::Never
    }
}

type Key = (PathBuf, Option<SystemTime>, u64);

fn memo() -> &'static Mutex<HashMap<Key, Toolchain>> {
    static MEMO: OnceLock<Mutex<HashMap<Key, Toolchain>>> = OnceLock::new();
    MEMO.get_or_init(Default::default)
}

/// Resolves `compiler` (a name looked up on `PATH`, or a path) through its symlinks and reports
/// its identity: family (`gcc`, `g++`, `clang`, `clang++`; `cc`/`c++` are reported as what they
/// really are), version (`-dumpfullversion` for GCC; for clang the first line of `--version`,
/// its `-print-resource-dir` and a digest of the builtin headers there),
/// target (`-dumpmachine`) and the BLAKE3 of the resolved binary. Memoised per process by
/// (resolved path, mtime, size). Blocking: it may run the compiler three times.
///
/// ```
/// let tc = hybridgrid_compiler::probe_toolchain("gcc".as_ref()).unwrap();
/// assert_eq!(tc.name, "gcc");
/// assert!(!tc.binary_hash.is_empty());
/// assert!(hybridgrid_compiler::probe_toolchain("no-such-gcc-99".as_ref()).is_err());
/// ```
pub fn probe_toolchain(compiler: &Path) -> Result<Toolchain, ProbeError> {
    let kind = CompilerKind::detect(compiler)?;
    let found = resolve_on_path(compiler)
        .ok_or_else(|| ProbeError::NotFound(compiler.display().to_string()))?;
    let io = |source| ProbeError::Io {
        path: found.clone(),
        source,
    };
    let real = std::fs::canonicalize(&found).map_err(io)?;
    let meta = std::fs::metadata(&real).map_err(io)?;
    let key = (real.clone(), meta.modified().ok(), meta.len());
    if let Some(tc) = memo().lock().ok().and_then(|m| m.get(&key).cloned()) {
        return Ok(tc);
    }
    let version_text = query(&real, "--version")?;
    let is_clang = version_text.to_ascii_lowercase().contains("clang");
    let name = match (is_clang, kind.is_cxx()) {
        (true, false) => "clang",
        (true, true) => "clang++",
        (false, false) => "gcc",
        (false, true) => "g++",
    };
    let version = if is_clang {
        // clang's builtin headers and runtime live in its resource dir, outside the binary: the
        // identity covers the dir and the contents of its headers.
        let first = version_text.lines().next().unwrap_or_default().trim();
        let dir = query(&real, "-print-resource-dir")?.trim().to_owned();
        let digest = resource_dir_digest(Path::new(&dir)).map_err(|source| ProbeError::Io {
            path: PathBuf::from(&dir),
            source,
        })?;
        format!("{first}; resource dir {dir} {digest}")
    } else {
        query(&real, "-dumpfullversion")?.trim().to_owned()
    };
    let target = query(&real, "-dumpmachine")?.trim().to_owned();
    let bytes = std::fs::read(&real).map_err(|source| ProbeError::Io {
        path: real.clone(),
        source,
    })?;
    let tc = Toolchain {
        name: name.to_owned(),
        version,
        target,
        binary_hash: blake3::hash(&bytes).to_hex().to_string(),
    };
    tracing::debug!(compiler = %compiler.display(), resolved = %real.display(), name = %tc.name, version = %tc.version, target = %tc.target, "probed toolchain");
    if let Ok(mut m) = memo().lock() {
        m.insert(key, tc.clone());
    }
    Ok(tc)
}

/// BLAKE3 (first 16 hex digits) over the relative path and contents of every file below
/// `<dir>/include`, in path order; `none` when the dir has no `include` directory.
fn resource_dir_digest(dir: &Path) -> std::io::Result<String> {
    fn walk(root: &Path, dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
        for e in std::fs::read_dir(dir)? {
            let p = e?.path();
            if p.is_dir() {
                walk(root, &p, files)?;
            } else if let Ok(rel) = p.strip_prefix(root) {
                files.push(rel.to_owned());
            }
        }
        Ok(())
    }
    let include = dir.join("include");
    if !include.is_dir() {
        return Ok("none".into());
    }
    let mut files = Vec::new();
    walk(&include, &include, &mut files)?;
    files.sort();
    let mut h = blake3::Hasher::new();
    for rel in &files {
        use std::os::unix::ffi::OsStrExt;
        h.update(rel.as_os_str().as_bytes());
        h.update(&[0]);
        h.update(&std::fs::read(include.join(rel))?);
        h.update(&[0]);
    }
    Ok(h.finalize().to_hex()[..16].to_owned())
}

/// `PATH` lookup for a bare name; a name with a `/` is used as is.
fn resolve_on_path(compiler: &Path) -> Option<PathBuf> {
    if compiler.components().count() > 1 {
        return compiler.is_file().then(|| compiler.to_owned());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(compiler))
        .find(|p| p.is_file())
}

fn query(compiler: &Path, arg: &'static str) -> Result<String, ProbeError> {
    let err = |detail: String| ProbeError::Query {
        compiler: compiler.to_owned(),
        arg,
        detail,
    };
    let out = Command::new(compiler)
        .arg(arg)
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| err(e.to_string()))?;
    if !out.status.success() {
        return Err(err(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if text.trim().is_empty() {
        return Err(err("empty output".into()));
    }
    Ok(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn probes_gcc_and_cc_alike() {
        let gcc = probe_toolchain(Path::new("gcc")).unwrap();
        let cc = probe_toolchain(Path::new("cc")).unwrap();
        assert_eq!(gcc.name, "gcc");
        assert!(gcc.matches(&cc), "{gcc:?} vs {cc:?}");
        assert!(gcc.version.chars().next().unwrap().is_ascii_digit());
        assert!(gcc.target.contains("linux"));
        assert_eq!(gcc.binary_hash.len(), 64);
        let gxx = probe_toolchain(Path::new("g++")).unwrap();
        assert_eq!(gxx.name, "g++");
        assert!(!gcc.matches(&gxx));
    }

    #[test]
    fn clang_identity_covers_its_resource_dir() {
        // clang comes from scripts/ci-deps/farm-tools.sh; a missing clang fails this test.
        let tc = probe_toolchain(Path::new("clang")).unwrap();
        assert_eq!(tc.name, "clang");
        let out = Command::new("clang")
            .arg("-print-resource-dir")
            .output()
            .unwrap();
        let dir = String::from_utf8(out.stdout).unwrap();
        assert!(
            tc.version.contains(&format!("resource dir {}", dir.trim())),
            "{}",
            tc.version
        );
        let digest = tc.version.rsplit(' ').next().unwrap();
        assert_eq!(digest.len(), 16, "{}", tc.version);
    }

    #[test]
    fn errors_name_the_compiler() {
        match probe_toolchain(Path::new("gcc-999")) {
            Err(ProbeError::NotFound(n)) => assert_eq!(n, "gcc-999"),
            other => panic!("{other:?}"),
        }
        match probe_toolchain(Path::new("/bin/true")) {
            Err(ProbeError::Unknown(e)) => assert_eq!(e.name, "/bin/true"),
            other => panic!("{other:?}"),
        }
    }
}
