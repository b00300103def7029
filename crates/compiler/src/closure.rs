//! Rooted compiles: clang with DWARF 5 debug info (its default `-g`), compiled on a worker from
//! the original files at the client's own paths.
//!
//! DWARF 5 line tables carry an MD5 of every source file, which clang computes from the files it
//! reads and omits for files named only by the line markers of shipped text
//! ([`LocalReason::DebugFileChecksums`](crate::LocalReason::DebugFileChecksums)). So such a
//! compile ships its **inputs** instead: [`input_closure`] lists every file the compile read, from
//! the line markers of the `-frewrite-includes` text the client produces anyway (for its cache key
//! and its depfile); the client ships the contents of its own files and, for system headers
//! (line-marker flag 3, beneath `/usr/`), only a digest the worker compares with its own copy.
//! The worker lays the files out at their absolute paths in a root of its own and runs
//! [`CompileJob::rooted_args`] there, in the client's working directory: the original command but
//! for `-o` and the depfile flags, which the object does not record.

use crate::args::parse_with;
use crate::job::{ArgClass, CompileJob};
use crate::{CompilerKind, Invocation};
use std::ffi::OsString;
use std::path::{Component, Path, PathBuf};

/// [`crate::parse_for`] for a rooted compile: like it, except that clang's DWARF 5 debug info is
/// distributable. Use it only where the compile then runs rooted (not from shipped text).
pub fn parse_rooted(driver: CompilerKind, args: &[OsString]) -> Invocation {
    parse_with(driver, args, true)
}

/// One file a compile read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClosureFile {
    /// Absolute path: lexically normalised for the client's files, as clang spelled it for
    /// system headers.
    pub path: PathBuf,
    /// A system header of the toolchain (shipped as a digest only).
    pub system: bool,
}

/// Why a compile cannot run rooted (it then runs locally).
#[derive(Debug, thiserror::Error)]
pub enum ClosureError {
    /// A line marker the parser does not understand (an escape other than `\\` and `\"`).
    #[error("unexpected line marker: {0}")]
    Marker(String),
    /// A file name that is not valid UTF-8 or holds a line break (the manifest is text).
    #[error("file name {0:?} cannot be shipped")]
    Name(String),
    /// The path the compiler read is not the path the worker would lay out (a symlink or `..`
    /// through one).
    #[error("{path} is reached through a symlink ({real})")]
    Symlink {
        /// The path as the compiler named it.
        path: String,
        /// Where it really is.
        real: String,
    },
    /// A file that cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
}

/// `path` joined to `cwd` when relative, with `.` and `..` removed lexically.
fn absolute(cwd: &Path, path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in cwd.join(path).components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

/// The name and flags of a line marker `# <n> "<name>" <flags>`, if `line` is one.
fn marker(line: &[u8]) -> Option<Result<(String, bool), ClosureError>> {
    let rest = line.strip_prefix(b"# ")?;
    let digits = rest.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return None;
    }
    let rest = rest.get(digits..)?.strip_prefix(b" \"")?;
    let mut name = Vec::new();
    let mut i = 0;
    let bad = || ClosureError::Marker(String::from_utf8_lossy(line).into_owned());
    loop {
        match rest.get(i) {
            None => return Some(Err(bad())),
            Some(b'"') => break,
            Some(b'\\') => match rest.get(i + 1) {
                Some(c @ (b'\\' | b'"')) => {
                    name.push(*c);
                    i += 2;
                }
                _ => return Some(Err(bad())),
            },
            Some(c) => {
                name.push(*c);
                i += 1;
            }
        }
    }
    let flags = rest.get(i + 1..).unwrap_or_default();
    let system = flags.split(|b| *b == b' ').any(|f| f == b"3");
    Some(match String::from_utf8(name) {
        Ok(name) if !name.contains(['\n', '\r']) => Ok((name, system)),
        Ok(name) => Err(ClosureError::Name(name)),
        Err(e) => Err(ClosureError::Name(
            String::from_utf8_lossy(e.as_bytes()).into_owned(),
        )),
    })
}

/// Every file the compile that printed `text` (clang `-E -frewrite-includes`, run in `cwd`) read,
/// in first-read order, from its line markers: the main file first. `<built-in>` and
/// `<command line>` are skipped. A system header (flag 3) beneath `/usr/` is marked
/// [`ClosureFile::system`]; any other file must be reached without symlinks, so that the worker's
/// layout of it answers every lookup as the client's file system did.
pub fn input_closure(text: &[u8], cwd: &Path) -> Result<Vec<ClosureFile>, ClosureError> {
    let mut files: Vec<ClosureFile> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in text.split(|b| *b == b'\n') {
        let Some(found) = marker(line) else { continue };
        let (name, system_flag) = found?;
        if name.starts_with('<') || !seen.insert(name.clone()) {
            continue;
        }
        let spelled = Path::new(&name);
        let system = system_flag && spelled.is_absolute() && spelled.starts_with("/usr");
        let path = if system {
            spelled.to_owned()
        } else {
            let path = absolute(cwd, spelled);
            let real = std::fs::canonicalize(&path).map_err(|source| ClosureError::Read {
                path: path.display().to_string(),
                source,
            })?;
            if real != path {
                return Err(ClosureError::Symlink {
                    path: path.display().to_string(),
                    real: real.display().to_string(),
                });
            }
            path
        };
        if !files.iter().any(|f| f.path == path) {
            files.push(ClosureFile { path, system });
        }
    }
    Ok(files)
}

impl CompileJob {
    /// The worker's arguments for a rooted compile: every preprocessing, code-generation and
    /// colour argument in its original order, then `-c -x <language> <source> -o <output>`.
    /// Depfile flags are left out (the client's preprocessing wrote the depfile); `None` when a
    /// `-Wp,` argument carries one (it cannot be split off exactly).
    pub fn rooted_args(&self, output: &Path) -> Option<Vec<OsString>> {
        let mut out: Vec<OsString> = Vec::new();
        for a in &self.args {
            match a.class {
                ArgClass::Dep => continue,
                ArgClass::Pre
                    if a.words.iter().any(|w| {
                        w.to_str().is_some_and(|w| {
                            w.starts_with("-Wp,") && (w.contains(",-MD") || w.contains(",-MMD"))
                        })
                    }) =>
                {
                    return None;
                }
                _ => out.extend(a.words.iter().cloned()),
            }
        }
        out.extend(
            ["-c", "-x", self.language.as_str()]
                .into_iter()
                .map(OsString::from),
        );
        out.push(self.source.clone().into_os_string());
        out.push("-o".into());
        out.push(output.as_os_str().to_owned());
        Some(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn line_markers_name_the_inputs() {
        let dir = tempfile::tempdir().unwrap();
        let cwd = dir.path().canonicalize().unwrap();
        std::fs::create_dir(cwd.join("src")).unwrap();
        std::fs::write(cwd.join("src/a.c"), "").unwrap();
        std::fs::write(cwd.join("src/a.h"), "").unwrap();
        let text = format!(
            "# 1 \"src/a.c\"\n# 1 \"<built-in>\" 1\n# 1 \"/usr/include/stdio.h\" 1 3 4\n# 1 \"{}/src/../src/a.h\" 1\n#if 0\n# 7 \"src/a.c\" 2\n",
            cwd.display()
        );
        let files = input_closure(text.as_bytes(), &cwd).unwrap();
        assert_eq!(
            files,
            vec![
                ClosureFile {
                    path: cwd.join("src/a.c"),
                    system: false
                },
                ClosureFile {
                    path: "/usr/include/stdio.h".into(),
                    system: true
                },
                ClosureFile {
                    path: cwd.join("src/a.h"),
                    system: false
                },
            ]
        );
        assert!(input_closure(b"# 1 \"a\\x.h\"\n", &cwd).is_err());
        assert!(input_closure(b"# 1 \"missing.h\"\n", &cwd).is_err());
    }

    #[test]
    fn rooted_args_keep_the_command_but_output_and_depfile() {
        let args: Vec<OsString> = "-O2 -g -Iinc -DX=1 -MD -MF a.d -c src/a.c -o obj/a.o"
            .split(' ')
            .map(Into::into)
            .collect();
        let Invocation::Distributable(job) = parse_rooted(CompilerKind::Clang, &args) else {
            panic!("not distributable")
        };
        let words: Vec<String> = job
            .rooted_args(Path::new("/.hg-out/out.o"))
            .unwrap()
            .into_iter()
            .map(|w| w.into_string().unwrap())
            .collect();
        assert_eq!(
            words.join(" "),
            "-O2 -g -Iinc -DX=1 -c -x c src/a.c -o /.hg-out/out.o"
        );
        assert!(matches!(
            crate::parse_for(CompilerKind::Clang, &args),
            Invocation::Local(crate::LocalReason::DebugFileChecksums)
        ));
    }
}
