//! The order in which a build's ready compiles start when every core is busy: **largest source
//! first**, across the build's wrapper processes.
//!
//! `make` starts compiles in its own order, so a long compile late in that order (Lua's `lvm.c`
//! is the 31st of 32) would start last and run alone while the other cores idle. The build runs
//! more compiles at once than there are cores (see `Slots::jobs`), and those waiting for a core
//! queue here: each holds a lock on a board file `wait-<weight>-<pid>` in the slots directory, and
//! only the heaviest live waiter (the head) takes the next free farm CPU or local core; the others
//! sleep on the lock of the waiter just ahead of them, so waiting costs no CPU and a waiter learns
//! at once when the one ahead has left. The weight is the source file's size, known before
//! preprocessing; on Lua it orders the long compiles first as well as their compile times do.
//!
//! A waiter that died leaves an unlocked file: the next waiter that finds it removes it. A board
//! that cannot be used (no slots directory) orders nothing: the compile waits as it would alone.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

/// A place on the board, held while a compile waits for a core; leaving is dropping it.
pub(crate) struct Waiter {
    dir: PathBuf,
    name: String,
    /// The locked board file (the lock marks this waiter as live).
    _file: File,
}

/// Creates `dir/name` locked by this process: locked before it is visible under its name, so no
/// other process takes it for the file of a dead one.
fn publish_locked(dir: &Path, name: &str) -> Option<File> {
    let staging = dir.join(format!("join-{}", std::process::id()));
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&staging)
        .ok()?;
    file.try_lock().ok()?;
    std::fs::rename(&staging, dir.join(name)).ok()?;
    Some(file)
}

/// `path` opened when a live process holds its lock; a file nobody holds (its process died) is
/// removed.
fn held(path: &Path) -> Option<File> {
    let f = File::open(path).ok()?;
    match f.try_lock_shared() {
        Err(std::fs::TryLockError::WouldBlock) => Some(f),
        Ok(()) => {
            let _ = std::fs::remove_file(path);
            None
        }
        Err(std::fs::TryLockError::Error(_)) => None,
    }
}

/// The board file name of a waiter: names sort by weight, then by pid.
fn board_name(weight: u64, pid: u32) -> String {
    format!("wait-{weight:020}-{pid:010}")
}

impl Waiter {
    /// Joins the board in `dir` with `weight` (the source's size). `None`: the board cannot be
    /// used.
    pub(crate) fn join(dir: &Path, weight: u64) -> Option<Waiter> {
        std::fs::create_dir_all(dir).ok()?;
        let name = board_name(weight, std::process::id());
        let file = publish_locked(dir, &name)?;
        Some(Waiter {
            dir: dir.to_owned(),
            name,
            _file: file,
        })
    }

    /// Whether this waiter is the heaviest one waiting now.
    pub(crate) fn is_head(&self) -> bool {
        ahead_of(&self.dir, &self.name).is_none()
    }

    /// Blocks until this waiter is the heaviest one waiting (a blocking call: run it off the
    /// async threads).
    pub(crate) fn wait_turn(&self) {
        while let Some(ahead) = ahead_of(&self.dir, &self.name) {
            // Returns when that waiter has left (or died): then look again.
            let _ = ahead.lock_shared();
        }
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        // Removed while still locked: a waiter blocked on it wakes when the lock goes with the file.
        let _ = std::fs::remove_file(self.dir.join(&self.name));
    }
}

/// A farm CPU this wrapper has taken for its text before the farm counts it (the text is being
/// made, the task is not placed yet): the head of the board takes one when the farm shows a CPU
/// free that no other claim holds, and the next head sees it taken. Released when the task is
/// sent (from then on the farm counts it) or the compile goes elsewhere.
pub(crate) struct Claim {
    path: PathBuf,
    _file: File,
}

impl Claim {
    /// Takes a claim in `dir` (`None`: the directory cannot be used).
    pub(crate) fn take(dir: &Path) -> Option<Claim> {
        let name = format!("claim-{:010}", std::process::id());
        let file = publish_locked(dir, &name)?;
        Some(Claim {
            path: dir.join(name),
            _file: file,
        })
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// How many live claims (see [`Claim`]) are in `dir`; dead ones found are removed.
pub(crate) fn claims_now(dir: &Path) -> u32 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let live = entries
        .flatten()
        .filter(|e| e.file_name().as_encoded_bytes().starts_with(b"claim-"))
        .filter(|e| held(&e.path()).is_some())
        .count();
    u32::try_from(live).unwrap_or(u32::MAX)
}

/// Whether a live waiter heavier than `weight` is on the board in `dir`: a compile that could
/// start now leaves the free core to it.
pub(crate) fn heavier_waiting(dir: &Path, weight: u64) -> bool {
    ahead_of(dir, &board_name(weight, std::process::id())).is_some()
}

/// The live waiter just ahead of the one named `name` (the lightest heavier one), opened; dead
/// waiters found on the way are removed.
fn ahead_of(dir: &Path, name: &str) -> Option<File> {
    let mut heavier: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with("wait-") && n.as_str() > name)
        .collect();
    heavier.sort_unstable();
    heavier.into_iter().find_map(|n| held(&dir.join(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn board() -> tempfile::TempDir {
        tempfile::tempdir().unwrap_or_else(|e| panic!("tempdir: {e}"))
    }

    #[test]
    fn the_heaviest_waiter_is_the_head() {
        let dir = board();
        let light = Waiter::join(dir.path(), 100).expect("join");
        assert!(light.is_head(), "alone on the board");
        // Another process's heavier waiter: a locked file on the board.
        let heavy = dir.path().join(board_name(5000, 1));
        let f = File::create(&heavy).expect("create");
        f.lock().expect("lock");
        assert!(!light.is_head());
        assert!(heavier_waiting(dir.path(), 4999));
        assert!(!heavier_waiting(dir.path(), 5001));
        drop(f);
        // Its lock is gone (the process died): it no longer counts, and is cleared away.
        assert!(light.is_head());
        assert!(!heavy.exists(), "a dead waiter's file is removed");
    }

    #[test]
    fn a_waiter_wakes_when_the_one_ahead_leaves() {
        let dir = board();
        let light = Waiter::join(dir.path(), 10).expect("join");
        let heavy = dir.path().join(board_name(20, 2));
        let f = File::create(&heavy).expect("create");
        f.lock().expect("lock");
        let waiting = std::thread::spawn(move || {
            light.wait_turn();
            light.is_head()
        });
        std::thread::sleep(std::time::Duration::from_millis(50));
        assert!(
            !waiting.is_finished(),
            "waits while a heavier waiter is on the board"
        );
        let _ = std::fs::remove_file(&heavy);
        drop(f);
        assert!(waiting.join().unwrap_or(false));
    }

    #[test]
    fn claims_count_while_held() {
        let dir = board();
        assert_eq!(claims_now(dir.path()), 0);
        let c = Claim::take(dir.path()).expect("claim");
        assert_eq!(claims_now(dir.path()), 1);
        // Another process's claim whose process died: not counted, and removed.
        std::fs::write(dir.path().join("claim-0000000001"), b"").expect("write");
        assert_eq!(claims_now(dir.path()), 1);
        assert!(!dir.path().join("claim-0000000001").exists());
        drop(c);
        assert_eq!(claims_now(dir.path()), 0);
    }

    #[test]
    fn leaving_removes_the_board_file() {
        let dir = board();
        let w = Waiter::join(dir.path(), 7).expect("join");
        assert!(dir.path().join(board_name(7, std::process::id())).exists());
        drop(w);
        assert_eq!(
            std::fs::read_dir(dir.path()).map(|d| d.count()).ok(),
            Some(0)
        );
    }
}
