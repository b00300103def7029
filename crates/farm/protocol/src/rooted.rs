//! Rooted compile requests: clang with DWARF 5 debug info (its default `-g`), whose line table
//! holds an MD5 of every file and so cannot come from shipped text. The request ships the
//! compile's inputs instead (see `hybridgrid_compiler::input_closure`): the client's files under
//! [`ROOTED_PREFIX`]`<absolute path>`, and a [`RootedManifest`] as [`ROOTED_MANIFEST`] naming the
//! client's working directory and, by digest only, the system headers the worker must have
//! identically. A worker that can run such compiles advertises the executor [`ROOTED_EXECUTOR`];
//! the coordinator places these requests on such workers only (an older coordinator refuses them
//! as not distributable, and the client compiles locally, as before).
//!
//! ```
//! use hybridgrid_farm_protocol::RootedManifest;
//! let m = RootedManifest {
//!     cwd: "/home/me/proj/build".into(),
//!     system: vec![("/usr/include/stdio.h".into(), "ab12".into())],
//! };
//! assert_eq!(RootedManifest::decode(&m.encode()).unwrap(), m);
//! ```

use hybridgrid_compiler::{CompilerKind, Invocation, LocalReason};
use std::ffi::OsString;
use std::path::Path;

/// Name of the manifest input of a rooted compile request.
pub const ROOTED_MANIFEST: &str = "rooted.manifest";
/// Prefix of the shipped files' input names: `root/` + the absolute path without its `/`.
pub const ROOTED_PREFIX: &str = "root/";
/// The executor a worker advertises when it runs rooted compiles.
pub const ROOTED_EXECUTOR: &str = "rooted";
/// How a worker's refusal of a rooted compile whose system headers it does not have identically
/// begins (a `TOOLCHAIN_UNAVAILABLE` failure): the request's property, not the worker's fault.
pub const ROOTED_HEADER_MISMATCH: &str = "system header differs on this worker";

const MAGIC: &str = "hybridgrid-rooted 1";

/// What a rooted request names besides its files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RootedManifest {
    /// The client's working directory (what the compile records as `DW_AT_comp_dir`).
    pub cwd: String,
    /// `(absolute path, digest)` of each system header read: the worker's copy must match.
    pub system: Vec<(String, String)>,
}

/// A manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("malformed rooted manifest: {0}")]
pub struct ManifestError(String);

impl RootedManifest {
    /// The text form: a version line, `cwd <path>`, then `system <digest> <path>` lines.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = format!("{MAGIC}\ncwd {}\n", self.cwd);
        for (path, digest) in &self.system {
            out.push_str(&format!("system {digest} {path}\n"));
        }
        out.into_bytes()
    }

    /// Reads [`RootedManifest::encode`]'s form; every path must be absolute.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let text = std::str::from_utf8(bytes).map_err(|_| ManifestError("not UTF-8".into()))?;
        let mut lines = text.lines();
        if lines.next() != Some(MAGIC) {
            return Err(ManifestError("unknown version".into()));
        }
        let absolute = |p: &str| -> Result<String, ManifestError> {
            if Path::new(p).is_absolute() && !p.contains('\0') {
                Ok(p.to_owned())
            } else {
                Err(ManifestError(format!("path {p:?} is not absolute")))
            }
        };
        let mut m = RootedManifest::default();
        for line in lines {
            if let Some(cwd) = line.strip_prefix("cwd ") {
                m.cwd = absolute(cwd)?;
            } else if let Some(rest) = line.strip_prefix("system ") {
                let (digest, path) = rest
                    .split_once(' ')
                    .ok_or_else(|| ManifestError(format!("line {line:?}")))?;
                m.system.push((absolute(path)?, digest.to_owned()));
            } else {
                return Err(ManifestError(format!("line {line:?}")));
            }
        }
        if m.cwd.is_empty() {
            return Err(ManifestError("no cwd".into()));
        }
        Ok(m)
    }
}

/// The digest a manifest names a file's contents by (BLAKE3, hex).
pub fn file_digest(contents: &[u8]) -> String {
    blake3::hash(contents).to_hex().to_string()
}

/// Parses a rooted request's `command` as [`crate::parse_command`] does, with clang's DWARF 5
/// accepted (`hybridgrid_compiler::parse_rooted`).
pub fn parse_rooted_command(command: &[String]) -> Invocation {
    let Some((driver, args)) = command.split_first() else {
        return Invocation::Local(LocalReason::NoSource);
    };
    let args: Vec<OsString> = args.iter().map(Into::into).collect();
    match CompilerKind::detect(Path::new(driver)) {
        Ok(kind) => hybridgrid_compiler::parse_rooted(kind, &args),
        Err(e) => Invocation::Local(LocalReason::UnsupportedFlag(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_manifests_are_refused() {
        for bad in [
            &b"x\ncwd /a\n"[..],
            b"hybridgrid-rooted 1\n",
            b"hybridgrid-rooted 1\ncwd rel\n",
            b"hybridgrid-rooted 1\ncwd /a\nsystem abc usr/include/x.h\n",
            b"hybridgrid-rooted 1\ncwd /a\nfile x\n",
        ] {
            assert!(RootedManifest::decode(bad).is_err(), "{bad:?}");
        }
    }
}
