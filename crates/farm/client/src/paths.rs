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
///
/// The temporary file has a random name and is created exclusively (`O_CREAT | O_EXCL`, which
/// also refuses a symlink planted at that name), so another user of a shared directory can
/// neither predict it nor redirect the write; the rename replaces `path` itself, never what a
/// symlink at `path` points to.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name: String = path
        .file_name()
        .map(|n| n.to_string_lossy().chars().take(64).collect())
        .unwrap_or_default();
    let mut attempt = 0;
    let (tmp, mut file) = loop {
        let tmp = dir.join(format!(
            ".{name}.hgbuild-{}.tmp",
            uuid::Uuid::new_v4().simple()
        ));
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
        {
            Ok(f) => break (tmp, f),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 3 => {
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    };
    let written = file.write_all(bytes).and_then(|()| file.flush());
    drop(file);
    written
        .and_then(|()| std::fs::rename(&tmp, path))
        .inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn write_atomic_never_writes_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, b"precious").unwrap();
        // The old predictable temp name, and the target itself, as symlinks to the victim.
        let out = dir.path().join("a.o");
        std::os::unix::fs::symlink(
            &victim,
            dir.path()
                .join(format!(".a.o.hgbuild-{}.tmp", std::process::id())),
        )
        .unwrap();
        write_atomic(&out, b"object").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert_eq!(std::fs::read(&out).unwrap(), b"object");
        let link = dir.path().join("b.o");
        std::os::unix::fs::symlink(&victim, &link).unwrap();
        write_atomic(&link, b"object").unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
        assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
        // Nothing left behind but the two outputs, the victim and the planted link.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 4);
    }
}
