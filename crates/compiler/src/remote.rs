//! The exact remote compile: the worker recompiles the directives-only text *as source*, at a
//! path that mirrors the client's, so the object is byte-identical to the plain local build.

use crate::job::{CompileJob, remap};
use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Environment variables the worker must copy from the client's environment (when set there)
/// into the compile's: `SOURCE_DATE_EPOCH` (`__DATE__`/`__TIME__` expand on the worker), and the
/// ones that shape diagnostics (language, quoting, colours).
pub const CLIENT_ENV: &[&str] = &[
    "SOURCE_DATE_EPOCH",
    "LANG",
    "LANGUAGE",
    "LC_ALL",
    "LC_CTYPE",
    "LC_MESSAGES",
    "GCC_COLORS",
    "GCC_URLS",
    "TERM",
];

/// Everything a worker needs to run one exact remote compile (see [`CompileJob::remote_command`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RemoteCommand {
    /// Working directory for the compiler: `worker_dir/cwd` (create it; keep it empty).
    pub cwd: PathBuf,
    /// Where to write [`RemoteCommand::input`]: `worker_dir/in/<source file name>` (create its
    /// parent).
    pub input_path: PathBuf,
    /// The text to compile: the preprocessed text minus GCC's working-directory marker and its
    /// predefined-macro block (the worker's compiler predefines them again).
    pub input: Vec<u8>,
    /// Compiler arguments (run `cc <args>` in `cwd`).
    pub args: Vec<OsString>,
    /// Environment to set: `PWD` = `cwd`, because GCC trusts `$PWD` for the working directory.
    /// Add the client's values of [`CLIENT_ENV`].
    pub env: Vec<(OsString, OsString)>,
    /// The object file the compiler writes.
    pub output: PathBuf,
}

impl RemoteCommand {
    /// Creates [`RemoteCommand::cwd`] and the input's directory, and writes the input there.
    pub fn write_input(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.cwd)?;
        if let Some(dir) = self.input_path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(&self.input_path, &self.input)
    }
}

/// The remote command cannot be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The worker directory must be absolute and free of `=` (it goes
    /// into `-fdebug-prefix-map=<old>=<new>`).
    #[error("worker directory `{0}` must be absolute and contain no `=`")]
    InvalidWorkerDir(PathBuf),
    /// Debug info is on but the preprocessed text has no working-directory line marker
    /// (`# 1 "<cwd>//"`): it was not produced by [`CompileJob::preprocess_args`].
    #[error("preprocessed text lacks the working-directory line marker that debug info needs")]
    MissingWorkingDir,
    /// The text holds a directive that would make the worker's compiler read one of the worker's
    /// files (`#include`, `#pragma GCC dependency`, ...): text from
    /// [`CompileJob::preprocess_args`] has none. Run the job locally.
    #[error("preprocessed text line {line} would read a file on the worker (#include or similar)")]
    ReadsWorkerFiles {
        /// 1-based line in the text.
        line: usize,
    },
    /// clang's preprocessed text does not start as `-frewrite-includes` output does, or the
    /// working directory cannot be written in a line marker (it holds a line break).
    #[error("preprocessed text is not clang -frewrite-includes output as expected")]
    UnexpectedText,
}

impl RemoteError {
    /// Whether trying again can help: never (the same input fails the same way; run locally).
    pub fn retry(&self) -> hybridgrid_core::Retry {
        hybridgrid_core::Retry::Never
    }
}

impl CompileJob {
    /// Checks, before shipping, that a worker would accept `preprocessed`: the text holds no
    /// directive that would make the worker's compiler read one of its files (the scan
    /// [`CompileJob::remote_command`] makes; `_Pragma("GCC dependency ...")` passes
    /// directives-only preprocessing, and text that only a trigraph-aware reading makes safe is
    /// refused too). A client runs such a job locally instead of having a worker refuse it.
    pub fn check_text(&self, preprocessed: &[u8]) -> Result<(), RemoteError> {
        let (input, _) = strip_markers(preprocessed);
        match crate::scan::first_file_directive(&input) {
            Some(line) => Err(RemoteError::ReadsWorkerFiles { line }),
            None => Ok(()),
        }
    }

    /// Builds the worker-side command for an exact object from `preprocessed` (the standard
    /// output of `cc <`[`CompileJob::preprocess_args`]`>` on the client), in the empty, absolute
    /// worker directory `worker_dir`, writing the object to `worker_dir/out.o`.
    ///
    /// The worker compiles the text as ordinary C/C++ (`-x c`, `-nostdinc`: every include is
    /// already inlined, and the line markers name the client's files) with the same
    /// code-generation flags, and maps its own paths back to the client's with
    /// `-fdebug-prefix-map`/`-fmacro-prefix-map` (composed with the user's own maps): the input
    /// file to the source path as given, its working directory to the client's (recorded by GCC in
    /// the text). GCC leaves those flags and `-nostdinc` out of `DW_AT_producer`, so the object is
    /// byte-identical, debug info included. Diagnostics name the client's files and lines too;
    /// only the quoted source excerpts under them are missing, because the worker does not have
    /// the client's files. The worker may call [`crate::parse`] on the client's original
    /// arguments to get the same job.
    pub fn remote_command(
        &self,
        preprocessed: &[u8],
        worker_dir: &Path,
    ) -> Result<RemoteCommand, RemoteError> {
        if !worker_dir.is_absolute() || worker_dir.as_os_str().as_encoded_bytes().contains(&b'=') {
            return Err(RemoteError::InvalidWorkerDir(worker_dir.to_owned()));
        }
        // clang's text with debug info names the compile unit on its third line (`ship_text`).
        let (preprocessed, unit_name) = if self.clang && self.debug_info {
            let (rest, name) =
                take_line_marker(preprocessed, 2).ok_or(RemoteError::UnexpectedText)?;
            (std::borrow::Cow::Owned(rest), Some(name))
        } else {
            (std::borrow::Cow::Borrowed(preprocessed), None)
        };
        let (input, client_wd) = strip_markers(&preprocessed);
        if let Some(line) = crate::scan::first_file_directive(&input) {
            return Err(RemoteError::ReadsWorkerFiles { line });
        }
        let debug_maps = self.prefix_maps(false);
        let macro_maps = self.prefix_maps(true);
        let cwd = worker_dir.join("cwd");
        let file_name = self
            .source
            .file_name()
            .map_or_else(|| OsString::from("source"), |f| f.to_owned());
        let input_path = worker_dir.join("in").join(file_name);
        let client = self.source.as_os_str();
        let unit = unit_name.as_deref().unwrap_or(client);
        let mut extra = vec![
            map_flag(
                "-fdebug-prefix-map=",
                &input_path,
                &remap(&debug_maps, unit),
            ),
            map_flag(
                "-fmacro-prefix-map=",
                &input_path,
                &remap(&macro_maps, client),
            ),
        ];
        match client_wd {
            Some(wd) => extra.push(map_flag(
                "-fdebug-prefix-map=",
                &cwd,
                &remap(&debug_maps, &wd),
            )),
            None if self.debug_info => return Err(RemoteError::MissingWorkingDir),
            None => {}
        }
        let output = worker_dir.join("out.o");
        let mut args: Vec<OsString> = self.remote_codegen_words().cloned().collect();
        args.extend(extra);
        args.extend(["-nostdinc", "-c", "-x", self.language.as_str()].map(OsString::from));
        args.push(input_path.clone().into_os_string());
        args.push("-o".into());
        args.push(output.clone().into_os_string());
        Ok(RemoteCommand {
            env: vec![("PWD".into(), cwd.clone().into_os_string())],
            cwd,
            input_path,
            input,
            args,
            output,
        })
    }
}

fn map_flag(flag: &str, old: &Path, new: &std::ffi::OsStr) -> OsString {
    let mut s = OsString::from(flag);
    s.push(old.as_os_str());
    s.push("=");
    s.push(new);
    s
}

/// Removes GCC's working-directory marker (`# 1 "/cwd//"`, second line, present with debug info)
/// and the `#define`s of the `<built-in>` block; returns the text and the recorded directory.
fn strip_markers(text: &[u8]) -> (Vec<u8>, Option<OsString>) {
    let mut out = Vec::with_capacity(text.len());
    let mut wd = None;
    let mut in_builtin = false;
    for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(name) = marker_name(body) {
            if n == 1
                && let Some(dir) = name.strip_suffix(b"//")
            {
                wd = Some(os_from_bytes(&unescape(dir)));
                continue;
            }
            in_builtin = name == b"<built-in>";
        } else if in_builtin && (body.starts_with(b"#define ") || body.starts_with(b"#undef ")) {
            continue;
        }
        out.extend_from_slice(line);
    }
    (out, wd)
}

/// Removes line `index` (0-based) when it is a line marker; returns the rest and its name.
fn take_line_marker(text: &[u8], index: usize) -> Option<(Vec<u8>, OsString)> {
    let mut out = Vec::with_capacity(text.len());
    let mut name = None;
    for (n, line) in text.split_inclusive(|b| *b == b'\n').enumerate() {
        if n == index {
            let body = line.strip_suffix(b"\n").unwrap_or(line);
            name = Some(os_from_bytes(&unescape(marker_name(body)?)));
            continue;
        }
        out.extend_from_slice(line);
    }
    name.map(|n| (out, n))
}

/// Undoes GCC's quoting of `\\` and `"` in line-marker names.
fn unescape(name: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len());
    let mut it = name.iter();
    while let Some(&b) = it.next() {
        if b == b'\\'
            && let Some(&next) = it.next()
        {
            out.push(next);
            continue;
        }
        out.push(b);
    }
    out
}

/// The file name of a line marker `# <n> "<name>" [flags]`, or `None`.
fn marker_name(line: &[u8]) -> Option<&[u8]> {
    let rest = line.strip_prefix(b"# ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let rest = rest[digits..].strip_prefix(b" \"")?;
    // Names escape `"` and `\` with a backslash; the closing quote is the last one on the line.
    let end = rest.iter().rposition(|b| *b == b'"')?;
    Some(&rest[..end])
}

#[cfg(unix)]
fn os_from_bytes(b: &[u8]) -> OsString {
    use std::os::unix::ffi::OsStrExt;
    std::ffi::OsStr::from_bytes(b).to_owned()
}

#[cfg(not(unix))]
fn os_from_bytes(b: &[u8]) -> OsString {
    String::from_utf8_lossy(b).into_owned().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn strips_working_dir_and_builtins() {
        let text = b"# 0 \"foo.c\"\n# 1 \"/home/u/p//\"\n# 0 \"<built-in>\"\n#define __STDC__ 1\n# 0 \"<command-line>\"\n#define VAL 3\n# 1 \"foo.c\"\nint x;\n";
        let (out, wd) = strip_markers(text);
        assert_eq!(wd, Some(OsString::from("/home/u/p")));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "# 0 \"foo.c\"\n# 0 \"<built-in>\"\n# 0 \"<command-line>\"\n#define VAL 3\n# 1 \"foo.c\"\nint x;\n"
        );
    }

    fn job(args: &[&str]) -> CompileJob {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match crate::parse(&args) {
            crate::Invocation::Distributable(j) => j,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn refuses_text_that_reads_worker_files() {
        let j = job(&["-c", "foo.c"]);
        let text = b"# 0 \"foo.c\"\nint x;\n#include \"/etc/passwd\"\n";
        assert_eq!(
            j.remote_command(text, Path::new("/w")),
            Err(RemoteError::ReadsWorkerFiles { line: 3 })
        );
    }

    #[test]
    fn debug_needs_the_working_dir_marker_and_worker_dir_is_absolute() {
        let j = job(&["-c", "-g", "foo.c"]);
        assert_eq!(
            j.remote_command(b"# 0 \"foo.c\"\n", Path::new("/w")),
            Err(RemoteError::MissingWorkingDir)
        );
        assert_eq!(
            j.remote_command(b"", Path::new("w")),
            Err(RemoteError::InvalidWorkerDir("w".into()))
        );
        assert_eq!(
            j.remote_command(b"", Path::new("/a=b")),
            Err(RemoteError::InvalidWorkerDir("/a=b".into()))
        );
    }

    #[test]
    fn maps_worker_paths_to_client_paths() {
        let j = job(&[
            "-c",
            "-g",
            "-O2",
            "-Iinc",
            "-fdebug-prefix-map=/home/u/p=/src",
            "src/foo.c",
        ]);
        let cmd = j
            .remote_command(
                b"# 0 \"src/foo.c\"\n# 1 \"/home/u/p//\"\nint x;\n",
                Path::new("/w"),
            )
            .unwrap();
        let args: Vec<String> = cmd
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-g",
                "-O2",
                "-fdebug-prefix-map=/home/u/p=/src",
                "-fdebug-prefix-map=/w/in/foo.c=src/foo.c",
                "-fmacro-prefix-map=/w/in/foo.c=src/foo.c",
                "-fdebug-prefix-map=/w/cwd=/src",
                "-nostdinc",
                "-c",
                "-x",
                "c",
                "/w/in/foo.c",
                "-o",
                "/w/out.o"
            ]
        );
        assert_eq!(cmd.input, b"# 0 \"src/foo.c\"\nint x;\n");
        assert_eq!(cmd.cwd, Path::new("/w/cwd"));
        assert_eq!(cmd.env, [("PWD".into(), "/w/cwd".into())]);
    }

    #[test]
    fn working_dir_with_quotes_and_backslashes() {
        let text = b"# 0 \"a.c\"\n# 1 \"/tmp/we\\\"ird\\\\dir//\"\nint x;\n";
        let (_, wd) = strip_markers(text);
        assert_eq!(wd, Some(OsString::from("/tmp/we\"ird\\dir")));
    }

    #[test]
    fn no_marker_without_debug() {
        let text = b"# 0 \"foo.c\"\n# 0 \"<built-in>\"\nint x;\n";
        let (out, wd) = strip_markers(text);
        assert_eq!(wd, None);
        assert_eq!(out, text);
    }
}
