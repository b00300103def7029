//! The compile cache of the farm: keys, stored formats and the toolchain-identity memo shared by
//! `hgbuild` ([`client::ClientCache`]) and the workers (which write every clean compile to the
//! shared tier under the same key the client computes).
//!
//! Two keys, both BLAKE3 (see `docs/CACHE.md`):
//! - the **result key** ([`result_key`]) over the compiler identity, the normalised arguments
//!   ([`CompileJob::cache_relevant_args`]) and the preprocessed text (which carries the source
//!   name and, with `-g`, the working directory). Client and worker compute it alike; results are
//!   stored under it locally and in the shared tier.
//! - the **manifest key** ([`manifest_key`], direct mode) over what is known before preprocessing:
//!   compiler identity, arguments, source path and contents, the working directory when the object
//!   carries debug info, the depfile request, and the environment variables that change which
//!   headers are found. Its manifest lists the headers a previous compile read and points to a
//!   [`DirectEntry`] (result key + depfile bytes).
//!
//! ```
//! use hybridgrid_farm::cache::{CachedResult, included_files};
//! let r = CachedResult { exit_code: 0, stderr: b"warning: x\n".to_vec(), diag_env: [0; 32], object: b"\x7fELF".to_vec() };
//! assert_eq!(CachedResult::decode(&r.encode()).unwrap(), r);
//! let text = b"# 0 \"a.c\"\n# 1 \"<built-in>\"\n# 1 \"inc/a.h\" 1\nint x;\n";
//! assert_eq!(included_files(text), vec![std::path::PathBuf::from("a.c"), "inc/a.h".into()]);
//! ```

pub mod client;

use crate::worker::PREPROCESSED_INPUT;
use hybridgrid_compiler::{CompileJob, Invocation};
use hybridgrid_core::{Digest, TaskSpec, Toolchain};
use serde::{Deserialize, Serialize};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variables that change the compiler's diagnostics (language, quoting). A cached
/// result that printed something is served only under the same values.
pub const DIAG_ENV: &[&str] = &["LANG", "LC_ALL", "LC_MESSAGES", "LC_CTYPE"];
/// Environment variables that change which headers are found or where GCC looks for its parts;
/// part of the manifest key (the result key sees their effect in the preprocessed text).
pub const DIRECT_ENV: &[&str] = &[
    "CPATH",
    "C_INCLUDE_PATH",
    "CPLUS_INCLUDE_PATH",
    "OBJC_INCLUDE_PATH",
    "GCC_EXEC_PREFIX",
    "COMPILER_PATH",
    "DEPENDENCIES_OUTPUT",
    "SUNPRO_DEPENDENCIES",
];

const RESULT_MAGIC: [u8; 4] = *b"HGCR";
const DIRECT_MAGIC: [u8; 4] = *b"HGCD";
const FORMAT_VERSION: u8 = 1;

/// A stored value that cannot be read (the frame checksum passed, so this is a format mismatch).
#[derive(Debug, thiserror::Error)]
#[error("cache value unreadable: {0}")]
pub struct FormatError(&'static str);

/// Length-prefixed parts into a BLAKE3 in a domain of its own.
struct KeyHasher(blake3::Hasher);

impl KeyHasher {
    fn new(domain: &str) -> Self {
        KeyHasher(blake3::Hasher::new_derive_key(domain))
    }
    fn part(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
        self
    }
    fn os(&mut self, s: &std::ffi::OsStr) -> &mut Self {
        use std::os::unix::ffi::OsStrExt;
        self.part(s.as_bytes())
    }
    fn toolchain(&mut self, tc: &Toolchain) -> &mut Self {
        self.part(tc.name.as_bytes())
            .part(tc.version.as_bytes())
            .part(tc.target.as_bytes())
            .part(tc.binary_hash.as_bytes())
    }
    fn args(&mut self, args: &[OsString]) -> &mut Self {
        self.part(&(args.len() as u64).to_le_bytes());
        for a in args {
            self.os(a);
        }
        self
    }
    fn finish(&self) -> Digest {
        Digest(*self.0.finalize().as_bytes())
    }
}

/// The key of a compile's result: compiler identity, normalised arguments, preprocessed text.
pub fn result_key(tc: &Toolchain, job: &CompileJob, preprocessed: &[u8]) -> Digest {
    KeyHasher::new("hybridgrid 2026 compile result key v1")
        .toolchain(tc)
        .args(&job.cache_relevant_args())
        .part(preprocessed)
        .finish()
}

/// True when the text uses `__DATE__`, `__TIME__` or `__TIMESTAMP__`: its object depends on the
/// clock (or the source's mtime), so it is never cached.
pub fn time_dependent(preprocessed: &[u8]) -> bool {
    ["__DATE__", "__TIME__", "__TIMESTAMP__"]
        .iter()
        .any(|m| memchr::memmem::find(preprocessed, m.as_bytes()).is_some())
}

/// The result key of a worker's compile request (`command = [toolchain, original args...]` plus
/// the [`PREPROCESSED_INPUT`]), computed with the worker's `tc`; `None` when the request is not a
/// cacheable compile.
pub fn request_key(tc: &Toolchain, spec: &TaskSpec) -> Option<Digest> {
    let Invocation::Distributable(job) = crate::worker::parse_command(&spec.command) else {
        return None;
    };
    let text = spec.inputs.iter().find(|f| f.path == PREPROCESSED_INPUT)?;
    (!time_dependent(&text.contents)).then(|| result_key(tc, &job, &text.contents))
}

/// Writes a worker's clean compile (exit 0, empty stderr, one output file) to `cache` under
/// `key`. Best effort: a failure is logged, the compile's answer is not affected.
pub async fn share_result(
    cache: &dyn hybridgrid_core::Cache,
    key: &Digest,
    out: &hybridgrid_core::TaskOutput,
) {
    let [object] = out.files.as_slice() else {
        return;
    };
    if !out.success() || !out.stderr.is_empty() {
        return;
    }
    let result = CachedResult {
        exit_code: 0,
        stderr: Vec::new(),
        diag_env: [0; 32],
        object: object.contents.to_vec(),
    };
    match cache.put(key, result.encode().into()).await {
        Ok(()) => tracing::debug!(key = %key, "compile result shared"),
        Err(e) => tracing::warn!(key = %key, error = %e, "cannot share compile result"),
    }
}

/// The manifest key (direct mode) of `job` run as `raw_args` in `cwd`, whose source has
/// `source_digest`; `env` reads the environment.
pub fn manifest_key(
    tc: &Toolchain,
    job: &CompileJob,
    raw_args: &[OsString],
    source_digest: &Digest,
    cwd: &Path,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Digest {
    let mut h = KeyHasher::new("hybridgrid 2026 compile manifest key v1");
    h.toolchain(tc)
        .args(&job.cache_relevant_args())
        .os(job.source().as_os_str())
        .part(&source_digest.0);
    // With debug info the object records the working directory (and the text carries it).
    h.part(if job.debug_info() {
        cwd.as_os_str().as_encoded_bytes()
    } else {
        b""
    });
    // The depfile names the object and may name the depfile flags' targets: key on all of it.
    if job.depfile().is_some() {
        h.part(b"depfile")
            .args(raw_args)
            .os(job.output().as_os_str());
    } else {
        h.part(b"");
    }
    for var in DIRECT_ENV {
        h.part(var.as_bytes());
        match env(var) {
            Some(v) => h.part(b"=").os(&v),
            None => h.part(b""),
        };
    }
    h.finish()
}

/// The key of a [`DirectEntry`]: one per (manifest, result, depfile) combination.
pub fn direct_entry_key(manifest: &Digest, result: &Digest, depfile: Option<&[u8]>) -> Digest {
    let mut h = KeyHasher::new("hybridgrid 2026 compile direct entry v1");
    h.part(&manifest.0).part(&result.0);
    match depfile {
        Some(d) => h.part(b"d").part(d),
        None => h.part(b""),
    };
    h.finish()
}

/// Digest of the [`DIAG_ENV`] values, as read by `env`.
pub fn diag_env_digest(env: &dyn Fn(&str) -> Option<OsString>) -> [u8; 32] {
    let mut h = KeyHasher::new("hybridgrid 2026 diagnostics env v1");
    for var in DIAG_ENV {
        match env(var) {
            Some(v) => h.part(b"=").os(&v),
            None => h.part(b""),
        };
    }
    h.finish().0
}

/// The [`DIAG_ENV`] digest of this process.
pub fn process_diag_env() -> [u8; 32] {
    diag_env_digest(&|v| std::env::var_os(v))
}

/// A successful compile as stored: exit code, what it printed on stderr (under which diagnostics
/// environment) and the object file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CachedResult {
    /// Always 0 today (failures are not cached); kept so the format can say otherwise.
    pub exit_code: i32,
    /// The compiler's standard error (warnings), replayed on a hit.
    pub stderr: Vec<u8>,
    /// [`diag_env_digest`] of the compile that printed `stderr`.
    pub diag_env: [u8; 32],
    /// The object file.
    pub object: Vec<u8>,
}

impl CachedResult {
    /// The stored form: magic `HGCR`, version, exit code, diag env, stderr, object.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(49 + self.stderr.len() + self.object.len());
        out.extend_from_slice(&RESULT_MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.exit_code.to_le_bytes());
        out.extend_from_slice(&self.diag_env);
        out.extend_from_slice(&(self.stderr.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.stderr);
        out.extend_from_slice(&self.object);
        out
    }

    /// Reads what [`CachedResult::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<CachedResult, FormatError> {
        let mut r = Reader(b);
        if r.take(4)? != RESULT_MAGIC || r.take(1)? != [FORMAT_VERSION] {
            return Err(FormatError("not a compile result of this version"));
        }
        let exit_code = i32::from_le_bytes(r.array()?);
        let diag_env = r.array()?;
        let n = u32::from_le_bytes(r.array()?) as usize;
        let stderr = r.take(n)?.to_vec();
        Ok(CachedResult {
            exit_code,
            stderr,
            diag_env,
            object: r.0.to_vec(),
        })
    }

    /// Whether this result may be served where the diagnostics environment digests to `env`:
    /// always when it printed nothing, else only under the same values.
    pub fn servable_under(&self, env: &[u8; 32]) -> bool {
        self.stderr.is_empty() || &self.diag_env == env
    }
}

/// What a direct-mode manifest entry points to: the result key and the depfile to write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirectEntry {
    /// Key of the [`CachedResult`].
    pub result: Digest,
    /// The depfile bytes, when the compile writes one.
    pub depfile: Option<Vec<u8>>,
}

impl DirectEntry {
    /// The stored form: magic `HGCD`, version, result key, depfile flag and bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(38 + self.depfile.as_ref().map_or(0, Vec::len));
        out.extend_from_slice(&DIRECT_MAGIC);
        out.push(FORMAT_VERSION);
        out.extend_from_slice(&self.result.0);
        match &self.depfile {
            Some(d) => {
                out.push(1);
                out.extend_from_slice(d);
            }
            None => out.push(0),
        }
        out
    }

    /// Reads what [`DirectEntry::encode`] wrote.
    pub fn decode(b: &[u8]) -> Result<DirectEntry, FormatError> {
        let mut r = Reader(b);
        if r.take(4)? != DIRECT_MAGIC || r.take(1)? != [FORMAT_VERSION] {
            return Err(FormatError("not a direct entry of this version"));
        }
        let result = Digest(r.array()?);
        let depfile = match r.take(1)? {
            [0] if r.0.is_empty() => None,
            [1] => Some(r.0.to_vec()),
            _ => return Err(FormatError("bad depfile flag")),
        };
        Ok(DirectEntry { result, depfile })
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if self.0.len() < n {
            return Err(FormatError("ends early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

/// The files named by the line markers (`# <line> "<file>" <flags>`) of preprocessed text, in
/// order of first appearance: the source, then every header read. Pseudo-files (`<built-in>`,
/// `<command-line>`) and the working-directory marker GCC writes with `-g` (`"<cwd>//"`) are left out.
pub fn included_files(text: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    let mut out: Vec<PathBuf> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.split(|&b| b == b'\n') {
        let Some(rest) = line.strip_prefix(b"# ") else {
            continue;
        };
        if !rest.first().is_some_and(u8::is_ascii_digit) {
            continue;
        }
        let Some(open) = memchr::memchr(b'"', rest) else {
            continue;
        };
        let mut name = Vec::new();
        let mut it = rest[open + 1..].iter();
        let mut closed = false;
        while let Some(&c) = it.next() {
            match c {
                b'\\' => {
                    if let Some(&n) = it.next() {
                        name.push(n);
                    }
                }
                b'"' => {
                    closed = true;
                    break;
                }
                _ => name.push(c),
            }
        }
        if !closed || name.is_empty() || name.starts_with(b"<") || name.ends_with(b"//") {
            continue;
        }
        if seen.insert(name.clone()) {
            out.push(PathBuf::from(OsString::from_vec(name)));
        }
    }
    out
}

/// A compiler's identity as remembered on disk, valid while the binary's stat stamp is unchanged.
#[derive(Serialize, Deserialize)]
struct ToolchainMemo {
    compiler: PathBuf,
    stamp: [i64; 5],
    toolchain: Toolchain,
}

fn binary_stamp(path: &Path) -> std::io::Result<[i64; 5]> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok([
        m.dev() as i64,
        m.ino() as i64,
        m.size() as i64,
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    ])
}

/// The identity of `compiler` (as the wrapper resolved it), from a memo file in `memo_dir` when
/// the binary it leads to has the same device, inode, size, mtime and ctime as when it was probed;
/// otherwise probed ([`hybridgrid_compiler::probe_toolchain`], which runs the compiler) and
/// remembered. A wrapper process hitting the cache therefore never runs the compiler.
pub fn toolchain(
    compiler: &Path,
    memo_dir: &Path,
) -> Result<Toolchain, hybridgrid_compiler::ProbeError> {
    use std::os::unix::ffi::OsStrExt;
    let file = memo_dir.join(format!(
        "{}.json",
        &blake3::hash(compiler.as_os_str().as_bytes()).to_hex()[..32]
    ));
    let stamp = binary_stamp(compiler).ok();
    if let Some(stamp) = stamp
        && let Ok(bytes) = std::fs::read(&file)
        && let Ok(memo) = serde_json::from_slice::<ToolchainMemo>(&bytes)
        && memo.compiler == compiler
        && memo.stamp == stamp
    {
        return Ok(memo.toolchain);
    }
    let tc = hybridgrid_compiler::probe_toolchain(compiler)?;
    if let Some(stamp) = stamp {
        let memo = ToolchainMemo {
            compiler: compiler.to_owned(),
            stamp,
            toolchain: tc.clone(),
        };
        let write = std::fs::create_dir_all(memo_dir).and_then(|()| {
            let bytes = serde_json::to_vec(&memo).map_err(std::io::Error::other)?;
            crate::client::write_atomic(&file, &bytes)
        });
        if let Err(e) = write {
            tracing::debug!(path = %file.display(), error = %e, "cannot remember toolchain identity");
        }
    }
    Ok(tc)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn job(args: &str) -> CompileJob {
        let args: Vec<OsString> = args.split_whitespace().map(Into::into).collect();
        match hybridgrid_compiler::parse(&args) {
            Invocation::Distributable(j) => j,
            Invocation::Local(r) => panic!("{r:?}"),
        }
    }

    fn tc() -> Toolchain {
        Toolchain {
            name: "gcc".into(),
            version: "12.2.0".into(),
            target: "x86_64-linux-gnu".into(),
            binary_hash: "ab".into(),
        }
    }

    #[test]
    fn result_key_ignores_output_and_depfile_but_not_codegen() {
        let text = b"# 0 \"a.c\"\nint x;\n";
        let k = |a: &str| result_key(&tc(), &job(a), text);
        assert_eq!(k("-c a.c -o x/a.o"), k("-c a.c -o y/b.o -MD"));
        assert_ne!(k("-c a.c -O2"), k("-c a.c -O1"));
        assert_ne!(k("-c a.c -DX=1"), k("-c a.c -DX=2"));
        assert_ne!(k("-c a.c"), result_key(&tc(), &job("-c a.c"), b"int y;"));
        let mut other = tc();
        other.binary_hash = "cd".into();
        assert_ne!(k("-c a.c"), result_key(&other, &job("-c a.c"), text));
    }

    #[test]
    fn manifest_key_splits_on_cwd_only_with_debug_info_and_on_env() {
        let d = Digest([1; 32]);
        let none = |_: &str| None;
        let j = job("-c a.c -O2");
        let a = manifest_key(&tc(), &j, &[], &d, "/x".as_ref(), &none);
        assert_eq!(a, manifest_key(&tc(), &j, &[], &d, "/y".as_ref(), &none));
        let g = job("-c a.c -O2 -g");
        assert_ne!(
            manifest_key(&tc(), &g, &[], &d, "/x".as_ref(), &none),
            manifest_key(&tc(), &g, &[], &d, "/y".as_ref(), &none)
        );
        let cpath = |v: &str| (v == "CPATH").then(|| OsString::from("/inc"));
        assert_ne!(a, manifest_key(&tc(), &j, &[], &d, "/x".as_ref(), &cpath));
        assert_ne!(
            a,
            manifest_key(&tc(), &j, &[], &Digest([2; 32]), "/x".as_ref(), &none)
        );
    }

    #[test]
    fn formats_round_trip_and_refuse_damage() {
        let d = DirectEntry {
            result: Digest([5; 32]),
            depfile: Some(b"a.o: a.c\n".to_vec()),
        };
        assert_eq!(DirectEntry::decode(&d.encode()).unwrap(), d);
        let n = DirectEntry {
            result: Digest([5; 32]),
            depfile: None,
        };
        assert_eq!(DirectEntry::decode(&n.encode()).unwrap(), n);
        assert!(DirectEntry::decode(&d.encode()[..20]).is_err());
        let r = CachedResult {
            exit_code: 0,
            stderr: vec![],
            diag_env: [1; 32],
            object: vec![9; 100],
        };
        assert_eq!(CachedResult::decode(&r.encode()).unwrap(), r);
        assert!(CachedResult::decode(&r.encode()[..30]).is_err());
        assert!(CachedResult::decode(&n.encode()).is_err());
        assert!(r.servable_under(&[2; 32]), "silent results serve anywhere");
        let w = CachedResult {
            stderr: b"w".to_vec(),
            ..r
        };
        assert!(w.servable_under(&[1; 32]) && !w.servable_under(&[2; 32]));
    }

    #[test]
    fn markers_are_parsed_with_escapes() {
        let text = b"# 0 \"src/a.c\"\n# 0 \"/home/u/p//\"\n# 0 \"<command-line>\"\n# 1 \"/usr/include/stdio.h\" 1 3 4\n#define X 1\n# 1 \"q\\\"x.h\" 1\n# 5 \"src/a.c\" 2\n";
        assert_eq!(
            included_files(text),
            vec![
                PathBuf::from("src/a.c"),
                "/usr/include/stdio.h".into(),
                "q\"x.h".into()
            ]
        );
        assert!(time_dependent(b"const char *d = __DATE__;"));
        assert!(!time_dependent(b"int x;"));
    }
}
