//! [`CompileJob`]: one distributable compile, and the command lines derived from it.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// Source language of a distributable compile.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Language {
    /// C (`-x c`).
    C,
    /// C++ (`-x c++`).
    Cxx,
}

impl Language {
    /// The `-x` name of the source language.
    pub fn as_str(self) -> &'static str {
        match self {
            Language::C => "c",
            Language::Cxx => "c++",
        }
    }

    /// The `-x` name of this language's preprocessed form.
    pub fn preprocessed(self) -> &'static str {
        match self {
            Language::C => "cpp-output",
            Language::Cxx => "c++-cpp-output",
        }
    }
}

/// The colour the user asked for in diagnostics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ColorMode {
    /// Not asked, or `=auto`: the compiler decides from its stderr (never a terminal on a worker;
    /// `hgbuild` may add `-fdiagnostics-color=always` when its own stderr is a terminal).
    #[default]
    Auto,
    /// `-fdiagnostics-color` / `=always`.
    Always,
    /// `-fno-diagnostics-color` / `=never`.
    Never,
}

/// The dependency file a compile writes (`-MD`/`-MMD`, or `-Wp,-MD,path`).
///
/// It is always written by the *local* preprocessing step ([`CompileJob::preprocess_args`]),
/// byte-identical to what the plain compile writes; the worker never sees depfile flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Depfile {
    /// Where it is written (relative to the client's working directory when relative).
    pub path: PathBuf,
    /// `-MF` was given (otherwise the path is derived from the object path, as GCC does).
    pub explicit_path: bool,
    /// `-MT`/`-MQ` was given (otherwise the target is the object path).
    pub explicit_target: bool,
}

/// Which command line(s) an argument belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ArgClass {
    /// Local preprocessing and remote compile (`-O2`, `-g`, `-fPIC`, `-m*`, `-W*`, `-std=`).
    Both,
    /// Local preprocessing only (`-I`, `-D`, `-include`, `-isystem`, `-Wp,`).
    Pre,
    /// Depfile flags as given: local preprocessing only, never in the cache key.
    Dep,
    /// Diagnostics colour: both steps, never in the cache key.
    Color,
}

/// One argument (one or two words, as the user wrote it) and its class.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ClassifiedArg {
    pub(crate) class: ArgClass,
    pub(crate) words: Vec<OsString>,
}

/// A single-source compile to an object file, safe to run as *preprocess locally, compile
/// remotely*.
///
/// Built by [`crate::parse`]; arguments keep their original order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompileJob {
    pub(crate) source: PathBuf,
    pub(crate) language: Language,
    pub(crate) output: PathBuf,
    pub(crate) output_explicit: bool,
    pub(crate) depfile: Option<Depfile>,
    pub(crate) color: ColorMode,
    pub(crate) debug_info: bool,
    /// clang (`-frewrite-includes`) rather than GCC (`-fdirectives-only`).
    pub(crate) clang: bool,
    pub(crate) args: Vec<ClassifiedArg>,
}

impl CompileJob {
    /// The source file as given on the command line.
    pub fn source(&self) -> &Path {
        &self.source
    }

    /// The source language.
    pub fn language(&self) -> Language {
        self.language
    }

    /// The object file: `-o` as given, or GCC's default (`src/foo.c` → `foo.o` in the working
    /// directory).
    pub fn output(&self) -> &Path {
        &self.output
    }

    /// The dependency file the compile writes, if any.
    pub fn depfile(&self) -> Option<&Depfile> {
        self.depfile.as_ref()
    }

    /// The diagnostics colour the user asked for.
    pub fn color(&self) -> ColorMode {
        self.color
    }

    /// True when the object carries debug info (`-g` and not a later `-g0`): then it records the
    /// client's working directory, so a cache key must too (the preprocessed text does: GCC writes
    /// it as a `# 1 "<cwd>//"` line marker).
    pub fn debug_info(&self) -> bool {
        self.debug_info
    }

    fn words(&self, keep: impl Fn(ArgClass) -> bool) -> impl Iterator<Item = &OsString> {
        self.args
            .iter()
            .filter(move |a| keep(a.class))
            .flat_map(|a| a.words.iter())
    }

    /// Arguments for the local preprocessing step: `cc <these>` in the client's working directory
    /// writes the preprocessed text to standard output, and the depfile (if any) exactly as the
    /// plain compile would.
    ///
    /// Uses `-E -fdirectives-only` (GCC): includes and conditionals are resolved, macros are kept
    /// as `#define`s and expanded by the worker, so column numbers in debug info stay exact.
    /// For clang, `-E -frewrite-includes`: includes are inlined (each original `#include` kept in
    /// an `#if 0` group), `#if`/`#elif` conditions replaced by `0`/`1`, `#ifdef`s and macros kept;
    /// pass its output through [`CompileJob::ship_text`] before shipping it.
    /// Every flag except `-c`/`-o` is passed (`-O`, `-g`, `-m*` and `-f*` change predefined
    /// macros, and `-g` makes GCC record the working directory). When the user gave no `-MF`, it
    /// is added with GCC's derived path; when no `-MT`/`-MQ`, `-MQ <object>` is added, because
    /// under `-E` GCC would otherwise name the target after the source.
    pub fn preprocess_args(&self) -> Vec<OsString> {
        let mode = if self.clang {
            "-frewrite-includes"
        } else {
            "-fdirectives-only"
        };
        let mut out: Vec<OsString> = vec!["-E".into(), mode.into()];
        out.extend(self.words(|_| true).cloned());
        if let Some(dep) = &self.depfile
            && self.args.iter().any(|a| {
                a.class == ArgClass::Dep
                    && a.words.first().is_some_and(|w| w == "-MD" || w == "-MMD")
            })
        {
            if !dep.explicit_path {
                out.push("-MF".into());
                out.push(dep.path.clone().into_os_string());
            }
            if !dep.explicit_target {
                out.push("-MQ".into());
                out.push(self.output.clone().into_os_string());
            }
        }
        out.push("-x".into());
        out.push(self.language.as_str().into());
        out.push(self.source.clone().into_os_string());
        out
    }

    /// Arguments for a worker that compiles the preprocessed text saved as `preprocessed_name`
    /// into `output_name`, in any directory: code-generation and warning flags in their original
    /// order, then `-fpreprocessed -fdirectives-only -x cpp-output -c <in> -o <out>`.
    ///
    /// The object is byte-identical to the plain compile **unless** debug info is on with GCC's
    /// default `-grecord-gcc-switches`: then `DW_AT_producer` also lists `-fdirectives-only`. Use
    /// [`CompileJob::remote_command`] for an exact object in every case.
    pub fn remote_args(&self, preprocessed_name: &str, output_name: &str) -> Vec<OsString> {
        let mut out: Vec<OsString> = self.remote_codegen_words().cloned().collect();
        out.extend(
            [
                "-fpreprocessed",
                "-fdirectives-only",
                "-c",
                "-x",
                self.language.preprocessed(),
                preprocessed_name,
                "-o",
                output_name,
            ]
            .map(OsString::from),
        );
        out
    }

    /// Normalised arguments that decide the object, for a compile-cache key: the language, then
    /// every preprocessing and code-generation argument in order (include paths and defines
    /// verbatim), without the source path, `-c`, `-o`, depfile flags and colour flags.
    ///
    /// A key over these, the [`hybridgrid_core::Toolchain`], the **source path** and the
    /// **preprocessed text** is complete: the worker compiles at a path mirroring the source path
    /// (`__BASE_FILE__`, `DW_AT_name`; a shipped text's line markers need not agree with it), and
    /// the text carries, with debug info, the working directory. A direct-mode key (over source and header contents instead of the
    /// text) must add the source path and, when [`CompileJob::debug_info`], the working
    /// directory. The depfile is not an output of the cached step: it is always written by the
    /// local preprocessing.
    pub fn cache_relevant_args(&self) -> Vec<OsString> {
        let mut out: Vec<OsString> = vec!["-x".into(), self.language.as_str().into()];
        out.extend(
            self.words(|c| matches!(c, ArgClass::Both | ArgClass::Pre))
                .filter_map(without_wp_depfile),
        );
        out
    }

    /// True for a clang job (preprocessed with `-frewrite-includes`).
    pub fn is_clang(&self) -> bool {
        self.clang
    }

    /// The text to ship (and to key a cache on) from the standard output of
    /// `cc <`[`CompileJob::preprocess_args`]`>`, run in `compile_dir` (the directory the
    /// compiler records: [`compile_dir`]).
    ///
    /// GCC's text is returned unchanged. clang's `-frewrite-includes` text lacks what GCC's has:
    /// the `-D`/`-U` macros (they are added as `#define`/`#undef` lines in a `<command line>`
    /// block after the first line, in command-line order, before any `-include`d file, as clang
    /// itself reads them) and, with debug info, the working directory (added as GCC's
    /// `# 1 "<dir>//"` marker on the second line) and the name clang gives the compile unit
    /// (`# 1 "<name>"` on the third), which [`CompileJob::remote_command`] maps back.
    pub fn ship_text(
        &self,
        preprocessed: Vec<u8>,
        compile_dir: &Path,
    ) -> Result<Vec<u8>, crate::RemoteError> {
        if !self.clang {
            return Ok(preprocessed);
        }
        let unexpected = || crate::RemoteError::UnexpectedText;
        let first_end = preprocessed
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(unexpected)?;
        if preprocessed[..first_end] != *b"# 1 \"<built-in>\"" {
            return Err(unexpected());
        }
        let mut out = Vec::with_capacity(preprocessed.len() + 256);
        out.extend_from_slice(&preprocessed[..=first_end]);
        if self.debug_info {
            let dir = compile_dir.as_os_str().as_encoded_bytes();
            let mut dir = dir.to_vec();
            dir.extend_from_slice(b"//");
            out.extend_from_slice(&marker_line(&dir)?);
            // The name clang gives the compile unit: `DW_AT_name` and the line table's file 0.
            let name = self.clang_main_file_name(compile_dir);
            out.extend_from_slice(&marker_line(name.as_os_str().as_encoded_bytes())?);
        }
        out.extend_from_slice(b"# 1 \"<command line>\" 1\n");
        for a in self.args.iter().filter(|a| a.class == ArgClass::Pre) {
            let Some((flag, value)) = define_or_undef(&a.words) else {
                continue;
            };
            if flag == 'D' {
                let (name, body) = value.split_once('=').unwrap_or((value, "1"));
                out.extend_from_slice(format!("#define {name} {body}\n").as_bytes());
            } else {
                out.extend_from_slice(format!("#undef {value}\n").as_bytes());
            }
        }
        out.extend_from_slice(b"# 1 \"<built-in>\" 2\n");
        out.extend_from_slice(&preprocessed[first_end + 1..]);
        Ok(out)
    }

    /// The name clang 14 gives the compile unit of this job run in `compile_dir`: the source's
    /// directory as its FileManager first met it, joined with the file name, `.` components
    /// removed. The FileManager meets the user's include directories before the source (`-I` in
    /// order, then `-idirafter`, `-iquote`, `-isystem`), so one naming the source's directory
    /// (`-I../src` with `/abs/src/x.c`) lends its spelling (`../src/x.c`).
    pub(crate) fn clang_main_file_name(&self, compile_dir: &Path) -> PathBuf {
        use std::os::unix::fs::MetadataExt;
        let id = |p: &Path| {
            let p = if p.as_os_str().is_empty() {
                compile_dir.to_owned()
            } else {
                compile_dir.join(p)
            };
            std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino()))
        };
        let parent = self.source.parent().unwrap_or(Path::new(""));
        let mut dir = parent.to_owned();
        if let Some(want) = id(parent) {
            let mut candidates: Vec<&OsStr> = Vec::new();
            for prefix in ["-I", "-idirafter", "-iquote", "-isystem"] {
                for a in self.args.iter().filter(|a| a.class == ArgClass::Pre) {
                    let Some(first) = a.words.first().and_then(|w| w.to_str()) else {
                        continue;
                    };
                    let Some(glued) = first.strip_prefix(prefix) else {
                        continue;
                    };
                    match (glued.is_empty(), a.words.get(1)) {
                        (true, Some(v)) => candidates.push(v),
                        (false, _) => candidates.push(OsStr::new(glued)),
                        _ => {}
                    }
                }
            }
            if let Some(c) = candidates
                .into_iter()
                .find(|c| id(Path::new(c)) == Some(want))
            {
                dir = PathBuf::from(c);
            }
        }
        let joined = match self.source.file_name() {
            Some(f) => dir.join(f),
            None => self.source.clone(),
        };
        joined
            .components()
            .filter(|c| !matches!(c, std::path::Component::CurDir))
            .collect()
    }

    /// The arguments of the remote compile step, in order.
    pub(crate) fn remote_codegen_words(&self) -> impl Iterator<Item = &OsString> {
        self.words(|c| matches!(c, ArgClass::Both | ArgClass::Color))
    }

    /// User prefix maps that apply to debug names (`-fdebug-prefix-map=`, `-ffile-prefix-map=`)
    /// or to `__FILE__` (`-fmacro-prefix-map=`, `-ffile-prefix-map=`), in order.
    pub(crate) fn prefix_maps(&self, macro_maps: bool) -> Vec<(String, String)> {
        let wanted: &[&str] = if macro_maps {
            &["-fmacro-prefix-map=", "-ffile-prefix-map="]
        } else {
            &["-fdebug-prefix-map=", "-ffile-prefix-map="]
        };
        self.words(|c| c == ArgClass::Both)
            .filter_map(|w| w.to_str())
            .filter_map(|w| {
                let rest = wanted.iter().find_map(|p| w.strip_prefix(p))?;
                let (old, new) = rest.split_once('=')?;
                Some((old.to_owned(), new.to_owned()))
            })
            .collect()
    }
}

/// A line marker `# 1 "<name>"` with GCC's quoting of `\\` and `"`; a name with a line break
/// cannot be written.
fn marker_line(name: &[u8]) -> Result<Vec<u8>, crate::RemoteError> {
    if name.contains(&b'\n') || name.contains(&b'\r') {
        return Err(crate::RemoteError::UnexpectedText);
    }
    let mut out = b"# 1 \"".to_vec();
    for b in name {
        if matches!(b, b'\\' | b'"') {
            out.push(b'\\');
        }
        out.push(*b);
    }
    out.extend_from_slice(b"\"\n");
    Ok(out)
}

/// `-DNAME[=VALUE]` / `-UNAME` (glued or with the value in the next word): the letter and the
/// value; `None` for other words or a value that is not UTF-8.
fn define_or_undef(words: &[OsString]) -> Option<(char, &str)> {
    let first = words.first()?.to_str()?;
    let flag = match first.get(..2)? {
        "-D" => 'D',
        "-U" => 'U',
        _ => return None,
    };
    let value = if first.len() > 2 {
        &first[2..]
    } else {
        words.get(1)?.to_str()?
    };
    Some((flag, value))
}

/// The directory a compiler run here records as its working directory: `$PWD` when it is
/// absolute and names the current directory (GCC and clang both trust it then), else the
/// current directory.
pub fn compile_dir() -> std::io::Result<PathBuf> {
    use std::os::unix::fs::MetadataExt;
    if let Some(pwd) = std::env::var_os("PWD").map(PathBuf::from)
        && pwd.is_absolute()
        && let (Ok(a), Ok(b)) = (std::fs::metadata(&pwd), std::fs::metadata("."))
        && a.dev() == b.dev()
        && a.ino() == b.ino()
    {
        return Ok(pwd);
    }
    std::env::current_dir()
}

/// `-Wp,...` without its `-MD,<path>`/`-MMD,<path>` part (the depfile path is not an input);
/// `None` when nothing remains. Other words are returned unchanged.
fn without_wp_depfile(word: &OsString) -> Option<OsString> {
    let Some(list) = word.to_str().and_then(|w| w.strip_prefix("-Wp,")) else {
        return Some(word.clone());
    };
    let mut kept = Vec::new();
    let mut parts = list.split(',');
    while let Some(p) = parts.next() {
        if p == "-MD" || p == "-MMD" {
            parts.next();
        } else {
            kept.push(p);
        }
    }
    (!kept.is_empty()).then(|| format!("-Wp,{}", kept.join(",")).into())
}

/// GCC's `remap_filename`: the most recently given map whose old prefix starts `name` wins.
pub(crate) fn remap(maps: &[(String, String)], name: &OsStr) -> OsString {
    let Some(s) = name.to_str() else {
        return name.to_owned();
    };
    for (old, new) in maps.iter().rev() {
        if let Some(rest) = s.strip_prefix(old.as_str()) {
            return format!("{new}{rest}").into();
        }
    }
    name.to_owned()
}
