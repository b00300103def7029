//! # hybridgrid-compiler
//!
//! Understands C/C++ compiler invocations for the compile farm (`hgbuild`, the worker and the
//! compile cache): which command lines can be distributed, how to preprocess them locally, and
//! how a worker compiles the preprocessed text into an object **byte-identical** to a plain local
//! build, debug info included (checked against the real `gcc`/`g++` in `tests/identical.rs`,
//! over hand-written cases and every Lua 5.4 source).
//!
//! ```
//! use hybridgrid_compiler::{parse, Invocation};
//! use std::ffi::OsString;
//!
//! let args: Vec<OsString> = ["-c", "-O2", "-g", "-Iinc", "-DV=1", "-MD", "src/foo.c", "-o", "obj/foo.o"]
//!     .iter().map(Into::into).collect();
//! let Invocation::Distributable(job) = parse(&args) else { panic!("runs locally") };
//! assert_eq!(job.depfile().unwrap().path, std::path::Path::new("obj/foo.d"));
//!
//! // Client: `gcc <pre>` in its working directory; stdout is the text to ship, and the depfile
//! // is written exactly as the plain compile writes it.
//! let pre = job.preprocess_args();
//! assert!(pre.contains(&OsString::from("-Iinc")) && !pre.contains(&OsString::from("-c")));
//!
//! // Worker: parse the same args, write `cmd.input` at `cmd.input_path`, run `gcc <cmd.args>`
//! // in `cmd.cwd` with `cmd.env`, and return `cmd.output`.
//! let text = b"# 0 \"src/foo.c\"\n# 1 \"/home/me/proj//\"\nint x;\n";
//! let cmd = job.remote_command(text, "/var/tmp/hg/job-1".as_ref()).unwrap();
//! assert!(!cmd.args.contains(&OsString::from("-Iinc")));
//! assert_eq!(cmd.output, std::path::Path::new("/var/tmp/hg/job-1/out.o"));
//! ```
//!
//! The pieces: [`parse`]/[`parse_for`] → [`Invocation`] (a [`CompileJob`] or a typed
//! [`LocalReason`]); [`CompileJob::preprocess_args`], [`CompileJob::remote_command`] (exact) and
//! [`CompileJob::remote_args`] (simple, see its caveat), [`CompileJob::cache_relevant_args`];
//! [`expand_response_files`] for `@file` arguments (which [`parse`] alone runs locally);
//! [`probe_toolchain`] and [`CompilerKind::detect`] for toolchain identity.
//!
//! ## Flow (`hgbuild` and the worker)
//! 1. Client: `tc = probe_toolchain(compiler)`, `kind = CompilerKind::detect(tc.name.as_ref())`,
//!    `args = expand_response_files(&args, &cwd)`, then [`parse_for`]`(kind, &args)`.
//!    [`Invocation::Local`] → run the compiler unchanged.
//! 2. Client: run `compiler <job.preprocess_args()>` in `cwd`, capturing stdout. If it fails
//!    (`#error`, a missing header, `-Werror` on a directive warning), its stderr and exit status
//!    are the compile's: the plain compile fails the same way. The depfile is now written.
//! 3. Cache key: BLAKE3 over the [`hybridgrid_core::Toolchain`],
//!    [`CompileJob::cache_relevant_args`] and the preprocessed text.
//! 4. Ship `kind`, `args`, the text and the client's values of [`CLIENT_ENV`]. The worker calls
//!    [`parse_for`] on the same args, [`CompileJob::remote_command`] with a fresh absolute
//!    directory, [`RemoteCommand::write_input`], runs the compiler, returns `output`, stderr and
//!    the exit status.
//! 5. Client: write the object to [`CompileJob::output`], print the preprocessing stderr, then
//!    the worker's.
//!
//! ## How the object stays identical (GCC 12, measured here)
//! - Fully preprocessed text (`-E`) loses the columns of macro expansions, so `-g` line tables
//!   differ. `-E -fdirectives-only` keeps macros unexpanded (the worker expands them).
//! - Compiling that text with `-fpreprocessed -fdirectives-only` is exact except that
//!   `DW_AT_producer` (GCC's default `-grecord-gcc-switches`) then lists `-fdirectives-only`.
//! - So the worker compiles it as ordinary source (`-x c -nostdinc`) and maps its own paths to
//!   the client's with `-fdebug-prefix-map`/`-fmacro-prefix-map`, which GCC does not record:
//!   `DW_AT_name` and `__FILE__` come from the line markers and the maps, `DW_AT_comp_dir` from
//!   the `# 1 "<cwd>//"` marker GCC writes under `-g`.
//! - Refused (run locally): `-flto` (records the options), `-g3` (macro info), `-gsplit-dwarf`,
//!   `-frecord-gcc-switches`, profiling/coverage, plugins, `-save-temps`, `-fno-working-directory`.
//!
//! ## clang (14, measured here)
//! - [`CompileJob::preprocess_args`] uses `-E -frewrite-includes` (clang has no
//!   `-fdirectives-only`): includes inlined, each original `#include` kept inside an `#if 0`
//!   group, `#if`/`#elif` conditions evaluated to `0`/`1`, `#ifdef`s and macros kept. The worker's
//!   scan accepts file directives only in groups the compiler certainly skips.
//! - The text lacks the `-D`/`-U` macros and the directories debug info records:
//!   [`CompileJob::ship_text`] adds them (a `<command line>` block; the working-directory marker;
//!   the compile unit's name, which clang takes from the first spelling of the source's directory
//!   its FileManager met, e.g. `-I../src`).
//! - Identical objects with `-gdwarf-4` and without debug info (every Lua 5.4 source, absolute
//!   and relative paths). DWARF 5 (clang's default `-g`) cannot come from shipped text
//!   ([`LocalReason::DebugFileChecksums`]): its line table holds an MD5 of every file, which clang
//!   computes from the files themselves and omits for files named only by line markers. It is
//!   compiled **rooted** instead ([`parse_rooted`], [`input_closure`],
//!   [`CompileJob::rooted_args`]): the worker runs the original command at the client's paths
//!   over the shipped files. Run locally:
//!   `-include`, `-imacros`, `-grecord-command-line`, `-Weverything`/`-Wunused-macros`.
//!
//! Features: none.

mod allow;
mod args;
mod closure;
mod family;
mod job;
mod probe;
mod remote;
mod response;
mod scan;

pub use args::{Invocation, LocalReason, parse, parse_for};
pub use closure::{ClosureError, ClosureFile, input_closure, parse_rooted};
pub use family::{CompilerKind, UnknownCompiler};
pub use job::{ColorMode, CompileJob, Depfile, Language, compile_dir};
pub use probe::{ProbeError, probe_toolchain};
pub use remote::{CLIENT_ENV, RemoteCommand, RemoteError};
pub use response::{ResponseFileError, expand_response_files};
