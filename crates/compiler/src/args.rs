//! The argument table and [`parse`]: classify a C/C++ compiler command line.

use crate::CompilerKind;
use crate::job::{ArgClass, ClassifiedArg, ColorMode, CompileJob, Depfile, Language};
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

/// What to do with one compiler invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Invocation {
    /// A single-source compile to an object file that can run on another machine.
    Distributable(CompileJob),
    /// Must run locally, unchanged, for this reason.
    Local(LocalReason),
}

/// Why an invocation must run locally. A value, not an error: running locally is always correct.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalReason {
    /// No `-c` (linking), or `-S` / `-fsyntax-only` (no object file).
    NotCompileOnly,
    /// `-E`: preprocessing only.
    PreprocessOnly,
    /// `-M` / `-MM` (dependency generation instead of compiling).
    DepsOnly,
    /// More than one input file.
    MultipleSources,
    /// No input file.
    NoSource,
    /// The source's language (by `-x` or extension) is not C or C++; carries the language or file.
    UnsupportedLanguage(String),
    /// The source is `-` (standard input).
    StdinSource,
    /// A flag that cannot be shipped safely (it reads or writes files beyond the preprocessed
    /// source and the object, or changes what the object records); carries the flag as given.
    UnsupportedFlag(String),
    /// A flag outside the allow-list of what is shipped (see `allow.rs`): GCC's long-option
    /// aliases (`--prefix=`, `--for-assembler=`), options this crate does not know, `-march=native`;
    /// carries the flag as given.
    UnknownFlag(String),
    /// A flag that needs a value came last, with none; carries the flag.
    MissingValue(String),
    /// `-o -`.
    OutputToStdout,
    /// The compiler family has no verified preprocess-then-compile path; carries the family
    /// name. (Not returned for any family this crate knows today.)
    UnsupportedCompiler(String),
    /// clang with DWARF 5 debug info (clang's default for `-g`): its line table carries an MD5
    /// of every source file, which a compile of shipped text cannot compute (clang computes
    /// none for files named only by line markers), so the object would differ. `-gdwarf-4`
    /// compiles remotely.
    DebugFileChecksums,
}

/// How a table entry takes its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shape {
    /// No value: matches the argument exactly.
    Flag,
    /// Value in the next argument only (`-MF path`).
    Sep,
    /// Value glued (`-Ipath`) or in the next argument (`-I path`).
    JoinedOrSep,
    /// Prefix with the value glued (`-fprofile-use=path`, `-fprofile-use`).
    Prefix,
}

/// What a table entry means.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    /// Passed to the local preprocessor and to the remote compile.
    Both,
    /// Preprocessor only (`-I`, `-D`, `-include`, ...).
    Pre,
    /// Link only: dropped (no effect with `-c`).
    Link,
    /// Cannot be shipped: the invocation runs locally.
    Refuse,
    /// `-c`.
    Compile,
    /// `-E`.
    Preprocess,
    /// `-S`, `-fsyntax-only`: no object.
    NoObject,
    /// `-M`, `-MM`.
    DepsOnly,
    /// `-MD`, `-MMD`.
    DepRequest,
    /// `-MF`.
    DepFile,
    /// `-MT`, `-MQ`.
    DepTarget,
    /// `-MP`, `-MG`: depfile modifiers.
    DepModifier,
    /// `-o`.
    Output,
    /// `-x`.
    Lang,
    /// `-Wp,...`.
    WpComma,
    /// `-Wa,...`.
    WaComma,
    /// `-Xpreprocessor`.
    XPreprocessor,
    /// `-Xclang`.
    XClang,
    /// `-Xassembler`.
    XAssembler,
}

/// One table entry: `(name, shape, role)`.
type Spec = (&'static str, Shape, Role);

use Role::*;
use Shape::*;

/// The argument table. Exact entries (`Flag`, `Sep`) are matched first, then glued values and
/// prefixes, longest name first. An unlisted flag is passed to both steps only when the
/// allow-list (`allow.rs`) ships its family (`-O2`, `-g`, `-fPIC`, `-march=...`, `-Wall`,
/// `-std=c11`, ...); any other runs locally ([`LocalReason::UnknownFlag`]). An allowed flag that
/// takes a separate value makes its value look like a second source, so it safely runs locally.
static TABLE: &[Spec] = &[
    // Mode of operation.
    ("-c", Flag, Compile),
    ("-E", Flag, Preprocess),
    ("-S", Flag, NoObject),
    ("-fsyntax-only", Flag, NoObject),
    ("-M", Flag, DepsOnly),
    ("-MM", Flag, DepsOnly),
    ("-o", JoinedOrSep, Output),
    ("-x", JoinedOrSep, Lang),
    // Dependency files.
    ("-MD", Flag, DepRequest),
    ("-MMD", Flag, DepRequest),
    ("-MF", JoinedOrSep, DepFile),
    ("-MT", JoinedOrSep, DepTarget),
    ("-MQ", JoinedOrSep, DepTarget),
    ("-MP", Flag, DepModifier),
    ("-MG", Flag, DepModifier),
    ("-MJ", JoinedOrSep, Refuse),
    // Preprocessor.
    ("-D", JoinedOrSep, Pre),
    ("-U", JoinedOrSep, Pre),
    ("-I", JoinedOrSep, Pre),
    ("-A", JoinedOrSep, Pre),
    ("-include", JoinedOrSep, Pre),
    ("-imacros", JoinedOrSep, Pre),
    ("-isystem", JoinedOrSep, Pre),
    ("-iquote", JoinedOrSep, Pre),
    ("-idirafter", JoinedOrSep, Pre),
    ("-iprefix", JoinedOrSep, Pre),
    ("-iwithprefix", JoinedOrSep, Pre),
    ("-iwithprefixbefore", JoinedOrSep, Pre),
    ("-isysroot", JoinedOrSep, Pre),
    ("-imultilib", JoinedOrSep, Pre),
    ("-imultiarch", JoinedOrSep, Pre),
    ("-iframework", JoinedOrSep, Pre),
    ("-cxx-isystem", JoinedOrSep, Pre),
    ("--sysroot", Sep, Pre),
    ("--sysroot=", Prefix, Pre),
    ("-nostdinc", Flag, Pre),
    ("-nostdinc++", Flag, Pre),
    ("-H", Flag, Pre),
    ("-C", Flag, Pre),
    ("-CC", Flag, Pre),
    ("-Xpreprocessor", Sep, XPreprocessor),
    ("-Wp,", Prefix, WpComma),
    ("-Wa,", Prefix, WaComma),
    // Values for both steps that are separate arguments.
    ("-Xassembler", Sep, XAssembler),
    ("-Xclang", Sep, XClang),
    ("--param", Sep, Both),
    ("--param=", Prefix, Both),
    ("-target", Sep, Both),
    ("-arch", Sep, Both),
    ("-mllvm", Sep, Both),
    ("-dumpbase", Sep, Both),
    ("-dumpbase-ext", Sep, Both),
    ("-dumpdir", Sep, Both),
    // Link only.
    ("-L", JoinedOrSep, Link),
    ("-l", JoinedOrSep, Link),
    ("-u", Sep, Link),
    ("-z", JoinedOrSep, Link),
    ("-T", JoinedOrSep, Link),
    ("-e", Sep, Link),
    ("-Xlinker", Sep, Link),
    ("-Wl,", Prefix, Link),
    ("-shared", Flag, Link),
    ("-static", Flag, Link),
    ("-rdynamic", Flag, Link),
    ("-s", Flag, Link),
    ("-pie", Flag, Link),
    ("-no-pie", Flag, Link),
    ("-static-pie", Flag, Link),
    ("-nostdlib", Flag, Link),
    ("-nodefaultlibs", Flag, Link),
    ("-nostartfiles", Flag, Link),
    ("-static-libgcc", Flag, Link),
    ("-shared-libgcc", Flag, Link),
    ("-static-libstdc++", Flag, Link),
    // Refused: read or write files the worker does not have, or record the command line.
    ("-B", JoinedOrSep, Refuse),
    // GCC's long aliases of -B and -Xassembler (its option table, `gcc --help=common`).
    ("--prefix", Sep, Refuse),
    ("--prefix=", Prefix, Refuse),
    ("--for-assembler", Sep, Refuse),
    ("--for-assembler=", Prefix, Refuse),
    ("-specs", Sep, Refuse),
    ("-specs=", Prefix, Refuse),
    ("--specs=", Prefix, Refuse),
    ("-wrapper", Sep, Refuse),
    ("-include-pch", Sep, Refuse),
    ("-aux-info", Sep, Refuse),
    ("-save-temps", Prefix, Refuse),
    ("--save-temps", Flag, Refuse),
    ("-frecord-gcc-switches", Flag, Refuse),
    ("-fplugin", Prefix, Refuse),
    ("-iplugindir=", Prefix, Refuse),
    ("-fprofile-", Prefix, Refuse),
    ("-fauto-profile", Prefix, Refuse),
    ("-fbranch-probabilities", Flag, Refuse),
    ("-fprofile-arcs", Flag, Refuse),
    ("-ftest-coverage", Flag, Refuse),
    ("--coverage", Flag, Refuse),
    ("-coverage", Flag, Refuse),
    ("-fsanitize-blacklist=", Prefix, Refuse),
    ("-fsanitize-ignorelist=", Prefix, Refuse),
    ("-fsanitize-coverage-allowlist=", Prefix, Refuse),
    ("-fsanitize-coverage-ignorelist=", Prefix, Refuse),
    ("-fsanitize-coverage-whitelist=", Prefix, Refuse),
    ("-fsanitize-coverage-blacklist=", Prefix, Refuse),
    ("-fdump-", Prefix, Refuse),
    ("-fopt-info", Prefix, Refuse),
    ("-fdiagnostics-format=sarif-file", Flag, Refuse),
    ("--serialize-diagnostics", Sep, Refuse),
    ("-fsave-optimization-record", Prefix, Refuse),
    ("-ftime-trace", Prefix, Refuse),
    ("-fstack-usage", Flag, Refuse),
    ("-fcallgraph-info", Prefix, Refuse),
    ("-fcompare-debug", Prefix, Refuse),
    ("-fmodule", Prefix, Refuse),
    ("-fmodules", Prefix, Refuse),
    ("-fdirectives-only", Flag, Refuse),
    // LTO objects record the compile options (the worker's differ); without the working-directory
    // marker the worker cannot restore DW_AT_comp_dir.
    ("-flto", Prefix, Refuse),
    ("-fno-working-directory", Flag, Refuse),
    ("-fpreprocessed", Flag, Refuse),
    ("-fpch-preprocess", Flag, Refuse),
    ("-gsplit-dwarf", Flag, Refuse),
    ("-P", Flag, Refuse),
    ("-traditional", Flag, Refuse),
    ("-traditional-cpp", Flag, Refuse),
    ("-v", Flag, Refuse),
    ("-###", Flag, Refuse),
    ("--help", Prefix, Refuse),
    ("--version", Flag, Refuse),
];

/// Finds the table entry for `arg`: exact match first, then the longest glued/prefix match.
fn lookup(arg: &str) -> Option<&'static Spec> {
    if let Some(spec) = TABLE
        .iter()
        .find(|(name, shape, _)| *name == arg && matches!(shape, Flag | Sep | JoinedOrSep))
    {
        return Some(spec);
    }
    TABLE
        .iter()
        .filter(|(name, shape, _)| {
            matches!(shape, JoinedOrSep | Prefix) && arg.starts_with(name) && arg != *name
                || matches!(shape, Prefix) && arg == *name
        })
        .max_by_key(|(name, _, _)| name.len())
}

/// Parses a compiler command line (without the compiler itself) for a C driver (`cc`, `gcc`,
/// `clang`): `.c` files are C. Use [`parse_for`] for `g++`/`c++`/`clang++`, which compile `.c` as C++.
///
/// ```
/// use hybridgrid_compiler::{parse, Invocation, LocalReason};
/// let args: Vec<std::ffi::OsString> = ["-c", "-O2", "src/foo.c", "-o", "obj/foo.o"].iter().map(Into::into).collect();
/// let Invocation::Distributable(job) = parse(&args) else { panic!() };
/// assert_eq!(job.output(), std::path::Path::new("obj/foo.o"));
///
/// let link: Vec<std::ffi::OsString> = ["foo.o", "-o", "foo"].iter().map(Into::into).collect();
/// assert_eq!(parse(&link), Invocation::Local(LocalReason::NotCompileOnly));
/// ```
pub fn parse(args: &[OsString]) -> Invocation {
    parse_for(CompilerKind::Gcc, args)
}

/// Parses a command line for the given driver (its C++-ness decides the language of `.c` files).
///
/// Pass the family the compiler really is: `cc` may be clang, so derive the kind from the probed
/// [`hybridgrid_core::Toolchain::name`] (`CompilerKind::detect(tc.name.as_ref())`). For clang
/// the job preprocesses with `-frewrite-includes` (see [`CompileJob::preprocess_args`]).
pub fn parse_for(driver: CompilerKind, args: &[OsString]) -> Invocation {
    parse_with(driver, args, false)
}

/// [`parse_for`]; with `rooted`, clang's DWARF 5 debug info is distributable (the compile runs
/// at the client's paths, see `closure.rs`).
pub(crate) fn parse_with(driver: CompilerKind, args: &[OsString], rooted: bool) -> Invocation {
    let parser = Parser {
        rooted,
        ..Parser::default()
    };
    match parser.run(driver, args) {
        Ok(job) => Invocation::Distributable(job),
        Err(reason) => Invocation::Local(reason),
    }
}

#[derive(Default)]
struct Parser {
    classified: Vec<ClassifiedArg>,
    compile: bool,
    preprocess: bool,
    no_object: bool,
    deps_only: bool,
    refused: Option<LocalReason>,
    inputs: Vec<(OsString, Option<String>)>,
    lang: Option<String>,
    output: Option<OsString>,
    dep_request: bool,
    dep_file: Option<OsString>,
    dep_targets: bool,
    wp_depfile: Option<OsString>,
    color: ColorMode,
    debug: bool,
    debug_level3: bool,
    /// The last `-gdwarf-N`'s N (`-gdwarf` alone: the default, 0 here).
    dwarf_version: Option<u8>,
    /// `-fdebug-default-version=N` (clang).
    dwarf_default: Option<u8>,
    /// Flags that only clang's path refuses (it records them or the text cannot carry them).
    clang_refused: Option<String>,
    /// A rooted compile (`closure.rs`): DWARF 5 is accepted.
    rooted: bool,
}

impl Parser {
    fn refuse(&mut self, flag: &OsStr) {
        if self.refused.is_none() {
            self.refused = Some(LocalReason::UnsupportedFlag(
                flag.to_string_lossy().into_owned(),
            ));
        }
    }

    fn push(&mut self, class: ArgClass, words: Vec<OsString>) {
        self.classified.push(ClassifiedArg { class, words });
    }

    fn run(mut self, driver: CompilerKind, args: &[OsString]) -> Result<CompileJob, LocalReason> {
        let mut i = 0;
        while i < args.len() {
            let raw = &args[i];
            i += 1;
            let Some(arg) = raw.to_str() else {
                if raw.as_encoded_bytes().first() == Some(&b'-') {
                    self.refuse(raw);
                } else {
                    self.inputs.push((raw.clone(), self.lang.clone()));
                }
                continue;
            };
            if arg == "-" {
                self.inputs.push((raw.clone(), self.lang.clone()));
                continue;
            }
            if arg.starts_with('@') {
                self.refuse(raw);
                continue;
            }
            if !arg.starts_with('-') || arg.len() == 1 {
                self.inputs.push((raw.clone(), self.lang.clone()));
                continue;
            }
            let Some(&(name, shape, role)) = lookup(arg) else {
                self.other_flag(raw, arg);
                continue;
            };
            // Split into the words as given and the value.
            let (words, value): (Vec<OsString>, Option<OsString>) = match shape {
                Flag | Prefix => (vec![raw.clone()], None),
                Sep | JoinedOrSep if arg == name => {
                    let Some(v) = args.get(i) else {
                        return Err(LocalReason::MissingValue(arg.to_owned()));
                    };
                    i += 1;
                    (vec![raw.clone(), v.clone()], Some(v.clone()))
                }
                _ => (vec![raw.clone()], Some(OsString::from(&arg[name.len()..]))),
            };
            if value
                .as_ref()
                .is_some_and(|v| v.as_encoded_bytes().first() == Some(&b'@'))
            {
                // `-include @foo`: GCC would read a response file here.
                self.refuse(raw);
                continue;
            }
            match role {
                Both => self.push(ArgClass::Both, words),
                Pre => self.push(ArgClass::Pre, words),
                Link => {}
                Refuse => self.refuse(raw),
                Compile => self.compile = true,
                Preprocess => self.preprocess = true,
                NoObject => self.no_object = true,
                DepsOnly => self.deps_only = true,
                DepRequest => {
                    self.dep_request = true;
                    self.push(ArgClass::Dep, words);
                }
                DepFile => {
                    self.dep_file = value;
                    self.push(ArgClass::Dep, words);
                }
                DepTarget => {
                    self.dep_targets = true;
                    self.push(ArgClass::Dep, words);
                }
                DepModifier => self.push(ArgClass::Dep, words),
                Output => self.output = value,
                Lang => {
                    let v = value.unwrap_or_default().to_string_lossy().into_owned();
                    self.lang = (v != "none").then_some(v);
                }
                WpComma => self.wp(raw, &arg[name.len()..]),
                WaComma => {
                    // Only listed assembler options: listings (`-a...=file`), depfiles
                    // (`--MD file`) and include paths would read or write files on the worker.
                    if arg[name.len()..]
                        .split(',')
                        .all(crate::allow::assembler_option_allowed)
                    {
                        self.push(ArgClass::Both, words);
                    } else {
                        self.refuse(raw);
                    }
                }
                XAssembler => {
                    let v = value.unwrap_or_default();
                    if v.to_str()
                        .is_some_and(crate::allow::assembler_option_allowed)
                    {
                        self.push(ArgClass::Both, words);
                    } else {
                        self.refuse(&v);
                    }
                }
                XPreprocessor => {
                    let v = value.unwrap_or_default();
                    if v.to_string_lossy().starts_with("-M") {
                        self.refuse(&v);
                    } else {
                        self.push(ArgClass::Pre, words);
                    }
                }
                XClang => {
                    let v = value.unwrap_or_default();
                    let s = v.to_string_lossy();
                    if [
                        "-load",
                        "-plugin",
                        "-add-plugin",
                        "-include-pch",
                        "-emit-pch",
                    ]
                    .contains(&s.as_ref())
                        || s.starts_with("-fprofile")
                    {
                        self.refuse(&v);
                    } else {
                        self.push(ArgClass::Both, words);
                    }
                }
            }
        }
        self.finish(driver)
    }

    /// A flag not in the table: colour, debug level, prefix maps, or plain pass-through.
    fn other_flag(&mut self, raw: &OsString, arg: &str) {
        if arg == "-fdiagnostics-color" || arg == "-fcolor-diagnostics" {
            self.color = ColorMode::Always;
            self.push(ArgClass::Color, vec![raw.clone()]);
            return;
        }
        if arg == "-fno-diagnostics-color" || arg == "-fno-color-diagnostics" {
            self.color = ColorMode::Never;
            self.push(ArgClass::Color, vec![raw.clone()]);
            return;
        }
        if let Some(v) = arg.strip_prefix("-fdiagnostics-color=") {
            self.color = match v {
                "always" => ColorMode::Always,
                "never" => ColorMode::Never,
                _ => ColorMode::Auto,
            };
            self.push(ArgClass::Color, vec![raw.clone()]);
            return;
        }
        if let Some(why) = crate::allow::unknown_flag_reason(arg) {
            tracing::debug!(flag = arg, why, "flag outside the allow-list: runs locally");
            if self.refused.is_none() {
                self.refused = Some(LocalReason::UnknownFlag(arg.to_owned()));
            }
            return;
        }
        if let Some(level) = arg.strip_prefix("-g") {
            self.debug_flag(level);
        }
        if let Some(v) = arg.strip_prefix("-fdebug-default-version=") {
            self.dwarf_default = Some(v.parse().unwrap_or(u8::MAX));
        }
        // clang records these switches in the object, or its debug info cannot be rebuilt from
        // shipped text; the macros those warnings look at live in the text on a worker.
        if [
            "-grecord-command-line",
            "-grecord-gcc-switches",
            "-gcodeview",
            "-gembed-source",
            "-Weverything",
            "-Wunused-macros",
        ]
        .contains(&arg)
            && self.clang_refused.is_none()
        {
            self.clang_refused = Some(arg.to_owned());
        }
        self.push(ArgClass::Both, vec![raw.clone()]);
    }

    /// Tracks whether debug info is on (`-g`, `-g2`, `-ggdb`, `-gdwarf-5`; `-g0` turns it off)
    /// and whether macro info (`-g3`) is requested.
    fn debug_flag(&mut self, rest: &str) {
        if let Some(v) = rest.strip_prefix("dwarf") {
            // Sets the format; turns debug info on at the default level if it was off.
            self.debug = true;
            if let Some(n) = v.strip_prefix('-') {
                self.dwarf_version = Some(n.parse().unwrap_or(u8::MAX));
            } else if v.is_empty() {
                self.dwarf_version = Some(0);
            }
            return;
        }
        if [
            "line-tables-only",
            "line-directives-only",
            "mlt",
            "lldb",
            "sce",
            "dbx",
        ]
        .contains(&rest)
        {
            self.debug = true;
            return;
        }
        let level = rest.strip_prefix("gdb").unwrap_or(rest);
        match level {
            "0" => {
                self.debug = false;
                self.debug_level3 = false;
            }
            "" | "1" | "2" => {
                self.debug = true;
                self.debug_level3 = false;
            }
            "3" => {
                self.debug = true;
                self.debug_level3 = true;
            }
            _ => {}
        }
    }

    /// `-Wp,a,b,c`: preprocessor options. `-Wp,-MD,path` / `-Wp,-MMD,path` (Linux kernel style)
    /// are supported: the preprocessor writes the same depfile under `-E` as under `-c`.
    fn wp(&mut self, raw: &OsString, list: &str) {
        let parts: Vec<&str> = list.split(',').collect();
        let mut j = 0;
        while j < parts.len() {
            let p = parts[j];
            if (p == "-MD" || p == "-MMD") && j + 1 < parts.len() {
                self.wp_depfile = Some(parts[j + 1].into());
                j += 2;
                continue;
            }
            if p.starts_with("-M")
                || p.starts_with('@')
                || matches!(lookup(p), Some((_, _, Refuse | Preprocess | NoObject)))
            {
                self.refuse(raw);
                return;
            }
            j += 1;
        }
        self.push(ArgClass::Pre, vec![raw.clone()]);
    }

    fn finish(self, driver: CompilerKind) -> Result<CompileJob, LocalReason> {
        if self.preprocess {
            return Err(LocalReason::PreprocessOnly);
        }
        if self.deps_only {
            return Err(LocalReason::DepsOnly);
        }
        if self.no_object || !self.compile {
            return Err(LocalReason::NotCompileOnly);
        }
        if let Some(reason) = self.refused {
            return Err(reason);
        }
        let clang = matches!(driver, CompilerKind::Clang | CompilerKind::Clangxx);
        if clang {
            self.clang_checks()?;
        }
        if self.debug_level3 {
            // Macro debug info needs the macro definitions the preprocessed text no longer
            // carries in the same form.
            return Err(LocalReason::UnsupportedFlag("-g3".into()));
        }
        let (source, lang) = match self.inputs.as_slice() {
            [] => return Err(LocalReason::NoSource),
            [one] => one.clone(),
            _ => return Err(LocalReason::MultipleSources),
        };
        if source == "-" {
            return Err(LocalReason::StdinSource);
        }
        let language = language_of(driver, Path::new(&source), lang.as_deref())?;
        if self.output.as_deref() == Some(OsStr::new("-")) {
            return Err(LocalReason::OutputToStdout);
        }
        let output = match &self.output {
            Some(o) => PathBuf::from(o),
            None => with_extension_replaced(Path::new(&source), "o", true),
        };
        let depfile = if self.dep_request {
            let path = match &self.dep_file {
                Some(f) => PathBuf::from(f),
                None => with_extension_replaced(&output, "d", false),
            };
            Some(Depfile {
                path,
                explicit_path: self.dep_file.is_some(),
                explicit_target: self.dep_targets,
            })
        } else {
            self.wp_depfile.map(|p| Depfile {
                path: PathBuf::from(p),
                explicit_path: true,
                explicit_target: true,
            })
        };
        Ok(CompileJob {
            source: PathBuf::from(source),
            language,
            output,
            output_explicit: self.output.is_some(),
            depfile,
            color: self.color,
            debug_info: self.debug,
            clang,
            args: self.classified,
        })
    }

    /// What clang's path (`-frewrite-includes`) cannot ship: flags it refuses, preprocessor
    /// options whose effect the rewritten text does not carry (`-imacros`, `-A`, comments kept
    /// with `-C`/`-CC`; `-include`, whose file clang 14 names `./inc/h.h` in the text but
    /// `inc/h.h` in debug info), `-D` values with a line break (the worker gets every `-D`/`-U` as a
    /// `#define`/`#undef` line), and DWARF 5 debug info ([`LocalReason::DebugFileChecksums`]).
    fn clang_checks(&self) -> Result<(), LocalReason> {
        if let Some(flag) = &self.clang_refused {
            return Err(LocalReason::UnsupportedFlag(flag.clone()));
        }
        for a in self.classified.iter().filter(|a| a.class == ArgClass::Pre) {
            let Some(first) = a.words.first().and_then(|w| w.to_str()) else {
                continue;
            };
            let refused = first.starts_with("-imacros")
                || first.starts_with("-include")
                || first.starts_with("-A")
                || first == "-C"
                || first == "-CC"
                || first == "-Xpreprocessor"
                || first.starts_with("-Wp,")
                    && !first.split(',').skip(1).all(|p| {
                        matches!(p, "-MD" | "-MMD") || !p.starts_with('-') && !p.is_empty()
                    });
            let bad_define = (first.starts_with("-D") || first.starts_with("-U"))
                && a.words.iter().any(|w| {
                    w.as_encoded_bytes()
                        .iter()
                        .any(|b| *b == b'\n' || *b == b'\r')
                });
            if refused || bad_define {
                return Err(LocalReason::UnsupportedFlag(first.to_owned()));
            }
        }
        if self.debug && !self.rooted {
            let version = match self.dwarf_version {
                Some(0) | None => self.dwarf_default.unwrap_or(5),
                Some(n) => n,
            };
            if version >= 5 {
                return Err(LocalReason::DebugFileChecksums);
            }
        }
        Ok(())
    }
}

/// GCC's output naming: `dir/foo.c` → `foo.o` (in the current directory, `basename` = true), or
/// `obj/foo.o` → `obj/foo.d` (same directory). Only the last extension of the file name is
/// replaced; a name without one gets the extension appended.
fn with_extension_replaced(path: &Path, ext: &str, basename: bool) -> PathBuf {
    let file = path.file_name().unwrap_or(path.as_os_str());
    let replaced = Path::new(file).with_extension(ext);
    match path.parent() {
        Some(dir) if !basename && !dir.as_os_str().is_empty() => dir.join(replaced),
        _ => replaced,
    }
}

/// The language of `source` under `-x lang` (if any) or by its extension.
fn language_of(
    driver: CompilerKind,
    source: &Path,
    lang: Option<&str>,
) -> Result<Language, LocalReason> {
    if let Some(lang) = lang {
        return match lang {
            "c" => Ok(Language::C),
            "c++" => Ok(Language::Cxx),
            other => Err(LocalReason::UnsupportedLanguage(other.to_owned())),
        };
    }
    let ext = source.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "c" if driver.is_cxx() => Ok(Language::Cxx),
        "c" => Ok(Language::C),
        "cc" | "cp" | "cxx" | "cpp" | "CPP" | "c++" | "C" => Ok(Language::Cxx),
        _ => Err(LocalReason::UnsupportedLanguage(
            source.display().to_string(),
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
#[path = "args_tests.rs"]
mod tests;
