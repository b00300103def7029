//! # hybridgrid-farm-protocol
//!
//! What the compile farm's roles must agree on, and nothing else: the names of a compile request's
//! input and output ([`PREPROCESSED_INPUT`], [`OBJECT_OUTPUT`]) and how its command is parsed
//! ([`parse_command`]); the cache keys client and worker compute alike ([`result_key`],
//! [`request_key`], [`manifest_key`]); the stored form of cached results ([`CachedResult`],
//! [`DirectEntry`]); and the one config file all three binaries read ([`config::FarmConfig`]).
//! The coordinator, worker and client crates depend on this one and never on each other.
//!
//! ```
//! use hybridgrid_farm_protocol::{CachedResult, included_files};
//! let r = CachedResult { exit_code: 0, stderr: b"warning: x\n".to_vec(), diag_env: [0; 32], object: b"\x7fELF".to_vec() };
//! assert_eq!(CachedResult::decode(&r.encode()).unwrap(), r);
//! let text = b"# 0 \"a.c\"\n# 1 \"<built-in>\"\n# 1 \"inc/a.h\" 1\nint x;\n";
//! assert_eq!(included_files(text), vec![std::path::PathBuf::from("a.c"), "inc/a.h".into()]);
//! ```

mod command;
pub mod config;
pub mod cross;
mod framing;
mod keys;
mod rooted;

pub use command::{OBJECT_OUTPUT, PREPROCESSED_INPUT, parse_command};
pub use framing::{CachedResult, DirectEntry, FormatError};
pub use keys::{
    DIAG_ENV, DIRECT_ENV, depend_result_key, depfile_prerequisites, diag_env_digest,
    direct_entry_key, included_files, manifest_key, process_diag_env, request_key, result_key,
    time_dependent,
};
pub use rooted::{
    ROOTED_EXECUTOR, ROOTED_HEADER_MISMATCH, ROOTED_MANIFEST, ROOTED_PREFIX, RootedManifest,
    file_digest, parse_rooted_command,
};
