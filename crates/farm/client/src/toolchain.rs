//! Compiler identities, remembered on disk so a cache hit never runs the compiler.

use crate::paths::write_atomic;
use hybridgrid_core::Toolchain;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A compiler's identity as remembered on disk, valid while the binary's stat stamp is unchanged.
#[derive(Serialize, Deserialize)]
struct ToolchainMemo {
    compiler: PathBuf,
    stamp: [i64; 5],
    toolchain: Toolchain,
}

fn binary_stamp(path: &Path) -> std::io::Result<[i64; 5]> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path)?;
    Ok([
        m.dev() as i64,
        m.ino() as i64,
        m.size() as i64,
        m.mtime() * 1_000_000_000 + m.mtime_nsec(),
        m.ctime() * 1_000_000_000 + m.ctime_nsec(),
    ])
}

/// The identity of `compiler` (as the wrapper resolved it), from a memo file in `memo_dir` when
/// the binary it leads to has the same device, inode, size, mtime and ctime as when it was probed;
/// otherwise probed ([`hybridgrid_compiler::probe_toolchain`], which runs the compiler) and
/// remembered. A wrapper process hitting the cache therefore never runs the compiler.
pub fn toolchain(
    compiler: &Path,
    memo_dir: &Path,
) -> Result<Toolchain, hybridgrid_compiler::ProbeError> {
    use std::os::unix::ffi::OsStrExt;
    let file = memo_dir.join(format!(
        "{}.json",
        &blake3::hash(compiler.as_os_str().as_bytes()).to_hex()[..32]
    ));
    let stamp = binary_stamp(compiler).ok();
    if let Some(stamp) = stamp
        && let Ok(bytes) = std::fs::read(&file)
        && let Ok(memo) = serde_json::from_slice::<ToolchainMemo>(&bytes)
        && memo.compiler == compiler
        && memo.stamp == stamp
    {
        return Ok(memo.toolchain);
    }
    let tc = hybridgrid_compiler::probe_toolchain(compiler)?;
    if let Some(stamp) = stamp {
        let memo = ToolchainMemo {
            compiler: compiler.to_owned(),
            stamp,
            toolchain: tc.clone(),
        };
        let write = std::fs::create_dir_all(memo_dir).and_then(|()| {
            let bytes = serde_json::to_vec(&memo).map_err(std::io::Error::other)?;
            write_atomic(&file, &bytes)
        });
        if let Err(e) = write {
            tracing::debug!(path = %file.display(), error = %e, "cannot remember toolchain identity");
        }
    }
    Ok(tc)
}
