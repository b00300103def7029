//! Cache keys client and worker compute alike (BLAKE3, each in a domain of its own; see
//! `docs/CACHE.md`):
//! - the **result key** ([`result_key`]) over the compiler identity, the normalised arguments
//!   ([`CompileJob::cache_relevant_args`]), the source path as given (the worker compiles at a
//!   path mirroring it: it becomes `__BASE_FILE__` and `DW_AT_name`, whatever the text's line
//!   markers say) and the preprocessed text (which carries, with `-g`, the working directory).
//!   Results are stored under it locally and in the shared tier.
//! - the **manifest key** ([`manifest_key`], direct mode) over what is known before preprocessing:
//!   compiler identity, arguments, source path and contents, the working directory when the object
//!   carries debug info, the depfile request, and the environment variables that change which
//!   headers are found. Its manifest lists the headers a previous compile read and points to a
//!   [`crate::DirectEntry`] (result key + depfile bytes).

use crate::command::{PREPROCESSED_INPUT, parse_command};
use hybridgrid_compiler::{CompileJob, Invocation};
use hybridgrid_core::{Digest, TaskSpec, Toolchain};
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

/// The key of a compile's result: compiler identity, normalised arguments, source path as
/// given, preprocessed text: every input that reaches the object.
pub fn result_key(tc: &Toolchain, job: &CompileJob, preprocessed: &[u8]) -> Digest {
    KeyHasher::new("hybridgrid 2026 compile result key v2")
        .toolchain(tc)
        .args(&job.cache_relevant_args())
        .os(job.source().as_os_str())
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
    let Invocation::Distributable(job) = parse_command(&spec.command) else {
        return None;
    };
    let text = spec.inputs.iter().find(|f| f.path == PREPROCESSED_INPUT)?;
    (!time_dependent(&text.contents)).then(|| result_key(tc, &job, &text.contents))
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

/// The result key of a compile cached in depend mode (no preprocessing: the headers are those the
/// compiler's own depfile lists): the manifest key (compiler identity, arguments, source path and
/// contents, working directory, environment) and every file the compile read, by path and digest.
/// Only in the local tier: a worker cannot compute it, so it is never shared.
pub fn depend_result_key<'a>(
    manifest: &Digest,
    files: impl IntoIterator<Item = (&'a Path, &'a Digest)>,
) -> Digest {
    let mut h = KeyHasher::new("hybridgrid 2026 compile depend-mode result key v1");
    h.part(&manifest.0);
    for (path, digest) in files {
        h.os(path.as_os_str()).part(&digest.0);
    }
    h.finish()
}

/// The prerequisites of the first rule of a depfile as GCC writes it (`-MD`): the source, then every
/// header read. Understands GCC's escapes (`\ ` for a space, `\#`, `$$`) and continuation lines;
/// the phony rules of `-MP` follow the first rule and are not read.
pub fn depfile_prerequisites(depfile: &[u8]) -> Vec<PathBuf> {
    use std::os::unix::ffi::OsStringExt;
    // The target list ends at the first ':' followed by whitespace or the end.
    let Some(colon) = (0..depfile.len()).find(|&i| {
        depfile[i] == b':' && depfile.get(i + 1).is_none_or(|c| c.is_ascii_whitespace())
    }) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut name = Vec::new();
    let mut i = colon + 1;
    let push = |name: &mut Vec<u8>, out: &mut Vec<PathBuf>| {
        if !name.is_empty() {
            out.push(PathBuf::from(OsString::from_vec(std::mem::take(name))));
        }
    };
    while i < depfile.len() {
        let c = depfile[i];
        match c {
            b'\\' if depfile.get(i + 1) == Some(&b'\n') => {
                push(&mut name, &mut out);
                i += 1;
            }
            b'\\' if depfile.get(i + 1) == Some(&b'\r') && depfile.get(i + 2) == Some(&b'\n') => {
                push(&mut name, &mut out);
                i += 2;
            }
            b'\\' if matches!(depfile.get(i + 1), Some(b' ' | b'#' | b'\t')) => {
                name.push(depfile[i + 1]);
                i += 1;
            }
            b'$' if depfile.get(i + 1) == Some(&b'$') => {
                name.push(b'$');
                i += 1;
            }
            b'\n' => break,
            b' ' | b'\t' | b'\r' => push(&mut name, &mut out),
            _ => name.push(c),
        }
        i += 1;
    }
    push(&mut name, &mut out);
    out
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
    fn depfile_prerequisites_reads_the_first_rule_with_gccs_escapes() {
        let d = b"obj/a.o: src/a.c /usr/include/stdio.h \\\n my\\ dir/h.h we$$ird.h \\#x.h\n\nsrc/a.h:\n";
        let got: Vec<String> = depfile_prerequisites(d)
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        assert_eq!(
            got,
            [
                "src/a.c",
                "/usr/include/stdio.h",
                "my dir/h.h",
                "we$ird.h",
                "#x.h"
            ]
        );
        // A target with a colon that is not followed by whitespace (a drive-like name).
        let got = depfile_prerequisites(b"c:x.o: a.c\n");
        assert_eq!(got, [PathBuf::from("a.c")]);
        assert!(depfile_prerequisites(b"no rule here").is_empty());
    }

    #[test]
    fn depend_result_key_covers_every_file_and_digest() {
        let m = Digest([1; 32]);
        let (a, b) = (Path::new("a.h"), Path::new("b.h"));
        let (d1, d2) = (Digest([2; 32]), Digest([3; 32]));
        let k = depend_result_key(&m, [(a, &d1), (b, &d2)]);
        assert_eq!(k, depend_result_key(&m, [(a, &d1), (b, &d2)]));
        assert_ne!(k, depend_result_key(&m, [(a, &d1), (b, &d1)]));
        assert_ne!(k, depend_result_key(&m, [(a, &d1)]));
        assert_ne!(k, depend_result_key(&Digest([9; 32]), [(a, &d1), (b, &d2)]));
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

    /// The worker compiles at a path mirroring the source path, which reaches the object
    /// (`__BASE_FILE__`, `DW_AT_name`) even when the texts are equal.
    #[test]
    fn result_key_covers_the_source_path() {
        let text = b"# 0 \"a.c\"\nconst char *f = __BASE_FILE__;\n";
        assert_ne!(
            result_key(&tc(), &job("-c a.c"), text),
            result_key(&tc(), &job("-c sub/a.c"), text)
        );
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
