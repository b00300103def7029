//! What a compile request is: the names of its input and output files, and how its `command` is
//! read. Client and worker parse a request alike, so both compute the same cache key from it.
//!
//! ```
//! use hybridgrid_farm_protocol::parse_command;
//! use hybridgrid_compiler::Invocation;
//! let cmd: Vec<String> = ["g++", "-c", "foo.c", "-o", "foo.o"].map(String::from).into();
//! assert!(matches!(parse_command(&cmd), Invocation::Distributable(_)));
//! assert!(matches!(parse_command(&[]), Invocation::Local(_)));
//! ```

use hybridgrid_compiler::{CompilerKind, Invocation, LocalReason};
use std::ffi::OsString;
use std::path::Path;

/// Name of the input file carrying the client's preprocessed text in a compile request.
pub const PREPROCESSED_INPUT: &str = "preprocessed";
/// Name under which the worker returns the object file.
pub const OBJECT_OUTPUT: &str = "out.o";

/// Parses a compile request's `command` (`[driver, original args...]`) as that driver does: the
/// driver decides the language (`g++ -c foo.c` is C++), on the client and on the worker alike.
pub fn parse_command(command: &[String]) -> Invocation {
    let Some((driver, args)) = command.split_first() else {
        return Invocation::Local(LocalReason::NoSource);
    };
    let args: Vec<OsString> = args.iter().map(Into::into).collect();
    match CompilerKind::detect(Path::new(driver)) {
        Ok(kind) => hybridgrid_compiler::parse_for(kind, &args),
        Err(e) => Invocation::Local(LocalReason::UnsupportedFlag(e.to_string())),
    }
}
