//! Bounds on local work shared by every wrapper process of a build, so that `make -j64` against a
//! large farm does not run 64 preprocessors on 2 cores: `N` compile slots (local compiles, by
//! choice or as fallbacks) and `N` preprocessing slots (text made here for the farm). The two sets
//! are apart so that feeding the farm never waits behind a local compile: a build with one local
//! core keeps its remote cores busy while that core compiles. The slots are lock files
//! (`~/.hybridgrid/slots/slot-<i>`, `pre-<i>`) held with `flock`: a crashed wrapper's slot frees
//! itself, and nothing has to be cleaned up.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variable overriding the slot directory.
pub const SLOTS_DIR_ENV: &str = "HGBUILD_SLOTS_DIR";
/// When set, each slot's hold interval is appended to the stats log as
/// `local_work <start> <end> <kind>` (microseconds since the epoch; kind `compile` or
/// `preprocess`), so tests can measure the concurrency of local work.
pub const TRACE_ENV: &str = "HGBUILD_TRACE_LOCAL";

/// What a slot is held for: each kind has its own `client.local_jobs` slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Work {
    /// A compile on this machine (by choice, a fallback, a rerun for diagnostics).
    Compile,
    /// Preprocessing text to ship to the farm.
    Preprocess,
}

impl Work {
    fn prefix(self) -> &'static str {
        match self {
            Work::Compile => "slot",
            Work::Preprocess => "pre",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Work::Compile => "compile",
            Work::Preprocess => "preprocess",
        }
    }
}

/// A held slot; released on drop.
pub struct LocalSlot {
    _file: File,
    started: SystemTime,
    work: Work,
}

fn micros(t: SystemTime) -> u128 {
    t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_micros())
}

/// The configured bound: `n`, or the number of local CPUs when `n` is 0.
fn bound(n: u32) -> usize {
    if n > 0 {
        n as usize
    } else {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    }
}

/// How many wrappers of a build may preprocess at once: the preprocessing slots for `local_jobs`.
pub fn preprocess_slots(local_jobs: u32) -> u32 {
    u32::try_from(bound(local_jobs).max(1)).unwrap_or(u32::MAX)
}

/// The number of local CPUs this process may run on (its affinity mask under `taskset`).
pub fn local_cpus() -> u32 {
    std::thread::available_parallelism().map_or(1, |n| u32::try_from(n.get()).unwrap_or(u32::MAX))
}

/// The directory of the slot files (and of the waiting board, `waiting.rs`).
pub(crate) fn slots_dir() -> PathBuf {
    std::env::var_os(SLOTS_DIR_ENV).map_or_else(
        || crate::paths::home_dir().join(".hybridgrid").join("slots"),
        PathBuf::from,
    )
}

fn open_slot(dir: &std::path::Path, prefix: &str, i: usize) -> Option<File> {
    OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(format!("{prefix}-{i}")))
        .ok()
}

/// Takes a free slot of kind `work` (bound `n`) if one is free now.
fn try_take(dir: &std::path::Path, work: Work, n: usize) -> Option<LocalSlot> {
    (0..n.max(1)).find_map(|i| {
        let f = open_slot(dir, work.prefix(), i)?;
        f.try_lock().is_ok().then(|| LocalSlot {
            _file: f,
            started: SystemTime::now(),
            work,
        })
    })
}

/// A compile slot for compiling locally *by choice*, if one of the `client.local_jobs` compile
/// slots is free now; never waits. Fallbacks take the same slots, so all local compiles together
/// stay within `client.local_jobs`.
///
/// A compile by choice is backfill: it takes what the core has left once this build's
/// preprocessors, which feed the farm, have run. So a granted slot lowers this process's CPU
/// priority by [`BY_CHOICE_NICE`] (inherited by the compiler it starts; the wrapper exits after
/// it): on a core shared with them, the remote cores are kept fed and the local one still
/// never idles.
pub fn try_acquire_choice(local_jobs: u32) -> Option<LocalSlot> {
    let dir = slots_dir();
    std::fs::create_dir_all(&dir).ok()?;
    let slot = try_take(&dir, Work::Compile, bound(local_jobs).max(1))?;
    lower_priority();
    Some(slot)
}

/// How much nicer than the rest of the build a compile by choice runs: at 10 a preprocessor
/// gets about 90% of a core it shares with one (CFS weights 1024 and 110).
pub const BY_CHOICE_NICE: i32 = 10;

/// Adds [`BY_CHOICE_NICE`] to this thread's nice value (Linux: the calling thread's, which the
/// compiler started from it inherits). Failing to is harmless: the compile runs as it would.
fn lower_priority() {
    let now = rustix::process::getpriority_process(None).unwrap_or(0);
    let nicer = now.saturating_add(BY_CHOICE_NICE).min(19);
    if let Err(e) = rustix::process::setpriority_process(None, nicer) {
        tracing::debug!(error = %e, "cannot lower the priority of a compile by choice");
    }
}

/// Takes one of the `client.local_jobs` compile slots (0: one per local CPU), waiting for one
/// to free up. `None` when the slot files cannot be used (then local work is not bounded, as in
/// a plain build).
pub fn acquire(local_jobs: u32) -> Option<LocalSlot> {
    acquire_for(Work::Compile, local_jobs)
}

/// [`acquire`] for the slots of `work`.
pub fn acquire_for(work: Work, local_jobs: u32) -> Option<LocalSlot> {
    let n = bound(local_jobs).max(1);
    let dir = slots_dir();
    std::fs::create_dir_all(&dir).ok()?;
    if let Some(slot) = try_take(&dir, work, n) {
        return Some(slot);
    }
    // All taken: wait on one of them (spread by pid).
    let f = open_slot(&dir, work.prefix(), std::process::id() as usize % n)?;
    f.lock().ok()?;
    Some(LocalSlot {
        _file: f,
        started: SystemTime::now(),
        work,
    })
}

impl Drop for LocalSlot {
    fn drop(&mut self) {
        if std::env::var_os(TRACE_ENV).is_some() {
            let line = format!(
                "local_work {} {} {}\n",
                micros(self.started),
                micros(SystemTime::now()),
                self.work.label()
            );
            if let Ok(mut f) = OpenOptions::new()
                .create(true)
                .append(true)
                .open(crate::paths::stats_log())
            {
                let _ = f.write_all(line.as_bytes());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_compile_by_choice_runs_nicer_than_the_build() {
        // On a thread of its own: Linux keeps a nice value per thread.
        std::thread::spawn(|| {
            let before = rustix::process::getpriority_process(None).unwrap_or(0);
            super::lower_priority();
            let after = rustix::process::getpriority_process(None).unwrap_or(0);
            assert_eq!(after, (before + super::BY_CHOICE_NICE).min(19));
        })
        .join()
        .unwrap_or_else(|_| panic!("the test thread panicked"));
    }
}
