//! # hybridgrid-compiler
//!
//! Understands C/C++ compiler invocations for the compile farm (`hgbuild`, the worker and the
//! compile cache): which command lines can be distributed, how to preprocess them locally, and
//! how a worker compiles the preprocessed text into an object **byte-identical** to a plain local
//! build (checked against the real `gcc` in `tests/identical.rs`).
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
//! // Client: `cc <pre>` in its working directory; stdout is the text to ship, the depfile is written.
//! let pre = job.preprocess_args();
//! assert!(pre.contains(&OsString::from("-Iinc")) && !pre.contains(&OsString::from("-c")));
//!
//! // Worker: `cc <cmd.args>` in `cmd.cwd`, with `cmd.input` written at `cmd.input_path`.
//! let cmd = job.remote_command(b"# 0 \"src/foo.c\"\nint x;\n", "/tmp/w1".as_ref()).unwrap();
//! assert!(!cmd.args.contains(&OsString::from("-Iinc")));
//! assert_eq!(cmd.output, std::path::Path::new("/tmp/w1/out.o"));
//! ```
//!
//! The pieces: [`parse`] → [`Invocation`] (a [`CompileJob`] or a [`LocalReason`]);
//! [`CompileJob::preprocess_args`], [`CompileJob::remote_command`] (exact) and
//! [`CompileJob::remote_args`] (simple, see its caveat), [`CompileJob::cache_relevant_args`];
//! [`expand_response_files`] for `@file` arguments (which [`parse`] alone runs locally);
//! [`probe_toolchain`] and [`CompilerKind::detect`] for toolchain identity.
//!
//! Features: none. GCC is the verified compiler; clang's argument syntax is accepted, but clang
//! has no `-fdirectives-only`, so its preprocessing step is not yet supported.

mod args;
mod family;
mod job;
mod probe;
mod remote;
mod response;

pub use args::{Invocation, LocalReason, parse, parse_for};
pub use family::{CompilerKind, UnknownCompiler};
pub use job::{ColorMode, CompileJob, Depfile, Language};
pub use probe::{ProbeError, probe_toolchain};
pub use remote::{RemoteCommand, RemoteError};
pub use response::{ResponseFileError, expand_response_files};
