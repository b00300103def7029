//! Where the client keeps its files, and how it writes them.

use std::path::{Path, PathBuf};

/// Environment variable naming the masquerade directory the build-tool mode put first on `PATH`.
pub const MASQUERADE_ENV: &str = "HGBUILD_MASQUERADE_DIR";
/// Environment variable naming the stats log the wrapper appends to.
pub const STATS_ENV: &str = "HGBUILD_STATS_FILE";

/// The user's home directory (`$HOME`), or `/` when unset.
pub fn home_dir() -> PathBuf {
    std::env::var_os("HOME").map_or_else(|| PathBuf::from("/"), PathBuf::from)
}

/// Where the wrapper records its counters: `$HGBUILD_STATS_FILE`, else `~/.hybridgrid/stats.log`.
pub fn stats_log() -> PathBuf {
    std::env::var_os(STATS_ENV).map_or_else(
        || home_dir().join(".hybridgrid").join("stats.log"),
        PathBuf::from,
    )
}

/// Where the wrapper remembers compiler identities: `~/.hybridgrid/toolchains`.
pub fn toolchain_memo_dir() -> PathBuf {
    home_dir().join(".hybridgrid").join("toolchains")
}

/// Writes `bytes` to `path` through a temporary file and a rename, so a reader never sees half.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.hgbuild-{}.tmp", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}
