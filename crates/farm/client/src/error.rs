//! Errors of the client.

use std::path::PathBuf;

/// Errors of the client that stop it before any compiler runs.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The named compiler is not on `PATH` (or only hgbuild itself is).
    #[error(
        "compiler {name:?} not found on PATH (hgbuild wraps a real compiler: is it installed?)"
    )]
    CompilerNotFound {
        /// The name given.
        name: String,
    },
    /// The compiler could not be identified.
    #[error("cannot identify compiler {path}: {message}")]
    Probe {
        /// Its path.
        path: PathBuf,
        /// Why.
        message: String,
    },
    /// Running a local program failed.
    #[error("cannot run {program}: {source}")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Setting up the build environment failed.
    #[error("{0}")]
    Setup(String),
}
