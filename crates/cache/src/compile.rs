//! Direct-mode lookups for a compile cache (the ccache idea): find a result without running the
//! preprocessor, by remembering which files a previous compile read and checking they are unchanged.
//!
//! The flow, with keys and values stored in any [`hybridgrid_core::Cache`]:
//! 1. `mkey = manifest_key(&[compiler identity, arguments, source digest, ...])` from what is known
//!    before preprocessing.
//! 2. Lookup: `cache.get(mkey)` → [`Manifest::decode`] → [`Manifest::lookup`] checks each recorded
//!    set of files against the file system (through a [`FileMemo`], so unchanged files are only
//!    stat'ed, not re-read) and yields the result key of the first set that still matches →
//!    `cache.get(result_key)`.
//! 3. On a miss, compile (the preprocessor tells which headers were read), store the result under
//!    its key, [`FileMemo::records`] the headers, [`Manifest::record`] them with the result key and
//!    `cache.put(mkey, manifest.encode())`.
//!
//! Nothing here knows about compilers: paths, digests, sizes and times only. Unix only (inode
//! and ctime are part of a file's stamp).
//!
//! ```
//! use hybridgrid_cache::compile::{FileMemo, Manifest, manifest_key};
//! use hybridgrid_core::Digest;
//!
//! # let tmp = tempfile::tempdir().unwrap();
//! let header = tmp.path().join("config.h");
//! std::fs::write(&header, "#define N 1\n").unwrap();
//! let memo = FileMemo::new();
//! let mkey = manifest_key(&[b"cc 13.2", b"-O2 -c main.c", b"<digest of main.c>"]);
//!
//! let mut manifest = Manifest::default();
//! let result = Digest([7; 32]); // where the object file was stored
//! manifest.record(memo.records([&header]).unwrap(), result);
//! let stored = manifest.encode(); // cache.put(&mkey, stored.into())
//!
//! let manifest = Manifest::decode(&stored).unwrap();
//! assert_eq!(manifest.lookup(&memo), Some(result));
//! std::fs::write(&header, "#define N 2\n").unwrap();
//! assert_eq!(manifest.lookup(&memo), None);
//! # let _ = mkey;
//! ```

use hybridgrid_core::Digest;
use parking_lot::Mutex;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// At most this many file sets are kept per manifest (newest first).
pub const MAX_ENTRIES: usize = 16;
/// A file modified less than this long ago is hashed on every use and not memoized: file times are
/// coarse (a few milliseconds), so a second write within one tick can leave size and mtime unchanged.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

const MAGIC: [u8; 4] = *b"HGMF";
const VERSION: u16 = 1;

/// The key under which a manifest is stored: BLAKE3 of the length-prefixed `parts` (so `["ab", "c"]`
/// and `["a", "bc"]` differ), in a domain of its own.
pub fn manifest_key(parts: &[&[u8]]) -> Digest {
    let mut h = blake3::Hasher::new_derive_key("hybridgrid 2026 compile manifest key v1");
    h.update(&(parts.len() as u64).to_le_bytes());
    for part in parts {
        h.update(&(part.len() as u64).to_le_bytes());
        h.update(part);
    }
    Digest(*h.finalize().as_bytes())
}

/// One file a compile read, as it was then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileRecord {
    /// The path as the compile saw it.
    pub path: PathBuf,
    /// BLAKE3 of the contents.
    pub digest: Digest,
    /// Size in bytes.
    pub size: u64,
    /// Modification time, nanoseconds since the Unix epoch (informative; matching uses the digest).
    pub mtime_ns: i64,
}

/// One recorded compile: the files it read and the key of its result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The files read, with their state at the time.
    pub files: Vec<FileRecord>,
    /// The cache key of the result.
    pub result: Digest,
}

/// The file sets seen for one manifest key, newest first, at most [`MAX_ENTRIES`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Manifest {
    /// The recorded compiles.
    pub entries: Vec<ManifestEntry>,
}

/// A stored manifest that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// Bad magic, unknown version, or bytes that end early.
    #[error("manifest unreadable at byte {offset}: {reason}")]
    Decode {
        /// Where reading stopped.
        offset: usize,
        /// What was wrong.
        reason: &'static str,
    },
    /// A file could not be read while recording it.
    #[error("cannot record {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
}

impl Manifest {
    /// Adds a compile at the front; an older entry with the same files (paths and digests) is
    /// replaced, and the oldest beyond [`MAX_ENTRIES`] are dropped.
    pub fn record(&mut self, files: Vec<FileRecord>, result: Digest) {
        let same_files = |e: &ManifestEntry| {
            e.files.len() == files.len()
                && e.files
                    .iter()
                    .zip(&files)
                    .all(|(a, b)| a.path == b.path && a.digest == b.digest)
        };
        self.entries.retain(|e| !same_files(e));
        self.entries.insert(0, ManifestEntry { files, result });
        self.entries.truncate(MAX_ENTRIES);
    }

    /// The result of the newest entry whose files all have the recorded contents now.
    /// A file that is gone or unreadable makes its entry not match.
    pub fn lookup(&self, memo: &FileMemo) -> Option<Digest> {
        self.entries
            .iter()
            .find(|entry| {
                entry.files.iter().all(|f| match memo.stat(&f.path) {
                    Ok(stamp) if stamp.size != f.size => false,
                    Ok(stamp) => memo
                        .digest_with(&f.path, stamp)
                        .is_ok_and(|d| d == f.digest),
                    Err(_) => false,
                })
            })
            .map(|entry| entry.result)
    }

    /// The stored form (compact binary, little endian).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.entries.len() * 256);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&VERSION.to_le_bytes());
        out.extend_from_slice(&(self.entries.len() as u32).to_le_bytes());
        for entry in &self.entries {
            out.extend_from_slice(&entry.result.0);
            out.extend_from_slice(&(entry.files.len() as u32).to_le_bytes());
            for f in &entry.files {
                let path = path_bytes(&f.path);
                out.extend_from_slice(&(path.len() as u32).to_le_bytes());
                out.extend_from_slice(&path);
                out.extend_from_slice(&f.digest.0);
                out.extend_from_slice(&f.size.to_le_bytes());
                out.extend_from_slice(&f.mtime_ns.to_le_bytes());
            }
        }
        out
    }

    /// Reads what [`Manifest::encode`] wrote.
    pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
        let mut r = Reader { bytes, at: 0 };
        if r.take(4)? != MAGIC {
            return Err(r.fail("bad magic"));
        }
        if u16::from_le_bytes(r.array()?) != VERSION {
            return Err(r.fail("unknown version"));
        }
        let n = u32::from_le_bytes(r.array()?) as usize;
        let mut entries = Vec::with_capacity(n.min(MAX_ENTRIES));
        for _ in 0..n {
            let result = Digest(r.array()?);
            let nfiles = u32::from_le_bytes(r.array()?) as usize;
            let mut files = Vec::with_capacity(nfiles.min(4096));
            for _ in 0..nfiles {
                let len = u32::from_le_bytes(r.array()?) as usize;
                let path =
                    path_from_bytes(r.take(len)?).ok_or_else(|| r.fail("path not valid here"))?;
                files.push(FileRecord {
                    path,
                    digest: Digest(r.array()?),
                    size: u64::from_le_bytes(r.array()?),
                    mtime_ns: i64::from_le_bytes(r.array()?),
                });
            }
            entries.push(ManifestEntry { files, result });
        }
        if r.at != bytes.len() {
            return Err(r.fail("trailing bytes"));
        }
        Ok(Manifest { entries })
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn fail(&self, reason: &'static str) -> ManifestError {
        ManifestError::Decode {
            offset: self.at,
            reason,
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ManifestError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.bytes.len())
            .ok_or_else(|| self.fail("ends early"))?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], ManifestError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
}

fn path_bytes(p: &Path) -> Vec<u8> {
    use std::os::unix::ffi::OsStrExt;
    p.as_os_str().as_bytes().to_vec()
}

fn path_from_bytes(b: &[u8]) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    Some(PathBuf::from(std::ffi::OsStr::from_bytes(b)))
}

/// What `stat` says about a file; equal stamps mean unchanged contents (outside the racy window).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    size: u64,
    mtime_ns: i64,
    ctime_ns: i64,
    ino: u64,
    dev: u64,
}

/// Remembers file digests by `(size, mtime, ctime, inode, device)`, so a file that has not changed is
/// stat'ed but not read again. Share one per process (it is `Sync`); it grows by one small entry
/// per distinct path.
pub struct FileMemo {
    known: Mutex<HashMap<PathBuf, (Stamp, Digest)>>,
    hashed: AtomicU64,
    racy_window: Duration,
}

impl Default for FileMemo {
    fn default() -> Self {
        FileMemo::new()
    }
}

impl FileMemo {
    /// An empty memo with the default [`RACY_WINDOW`].
    pub fn new() -> Self {
        FileMemo::with_racy_window(RACY_WINDOW)
    }

    /// An empty memo that trusts a file's stamp once its mtime and ctime are `window` old.
    pub fn with_racy_window(window: Duration) -> Self {
        FileMemo {
            known: Mutex::default(),
            hashed: AtomicU64::new(0),
            racy_window: window,
        }
    }

    /// How many times a file was read and hashed (rather than answered from the memo).
    pub fn files_hashed(&self) -> u64 {
        self.hashed.load(Relaxed)
    }

    /// Records of `paths` as they are now, for [`Manifest::record`].
    pub fn records<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
    ) -> Result<Vec<FileRecord>, ManifestError> {
        paths
            .into_iter()
            .map(|p| {
                let path = p.as_ref();
                let io = |source| ManifestError::Io {
                    path: path.to_path_buf(),
                    source,
                };
                let stamp = self.stat(path).map_err(io)?;
                let digest = self.digest_with(path, stamp).map_err(io)?;
                Ok(FileRecord {
                    path: path.to_path_buf(),
                    digest,
                    size: stamp.size,
                    mtime_ns: stamp.mtime_ns,
                })
            })
            .collect()
    }

    /// [`FileMemo::records`] of `paths`, reading each file once and showing its contents to
    /// `accept` (files the memo knows are read too): `Ok(None)` as soon as `accept` refuses one.
    /// For a caller that must look into every file it records (e.g. for `__DATE__`).
    pub fn records_accepted<P: AsRef<Path>>(
        &self,
        paths: impl IntoIterator<Item = P>,
        accept: impl Fn(&[u8]) -> bool,
    ) -> Result<Option<Vec<FileRecord>>, ManifestError> {
        let mut out = Vec::new();
        for p in paths {
            let path = p.as_ref();
            let io = |source| ManifestError::Io {
                path: path.to_path_buf(),
                source,
            };
            let (mut file, stamp, bytes) = read_stamped(path).map_err(io)?;
            if !accept(&bytes) {
                return Ok(None);
            }
            let digest = self.remember(path, &mut file, stamp, &bytes).map_err(io)?;
            out.push(FileRecord {
                path: path.to_path_buf(),
                digest,
                size: stamp.size,
                mtime_ns: stamp.mtime_ns,
            });
        }
        Ok(Some(out))
    }

    /// The BLAKE3 of `path`'s contents, from the memo when its stamp is unchanged.
    pub fn digest(&self, path: &Path) -> io::Result<Digest> {
        let stamp = self.stat(path)?;
        self.digest_with(path, stamp)
    }

    fn stat(&self, path: &Path) -> io::Result<Stamp> {
        stamp_of(&std::fs::metadata(path)?)
    }

    fn digest_with(&self, path: &Path, stamp: Stamp) -> io::Result<Digest> {
        if let Some((known, digest)) = self.known.lock().get(path)
            && *known == stamp
        {
            return Ok(*digest);
        }
        let (mut file, stamp, bytes) = read_stamped(path)?;
        self.remember(path, &mut file, stamp, &bytes)
    }

    /// Hashes `bytes`, read from `file` (opened at `path`) after it was stat'ed as `stamp`, and
    /// remembers the digest when nothing changed meanwhile (the open file is stat'ed again) and
    /// the file is old enough for its stamp to be trusted.
    fn remember(
        &self,
        path: &Path,
        file: &mut std::fs::File,
        stamp: Stamp,
        bytes: &[u8],
    ) -> io::Result<Digest> {
        if let Some((known, digest)) = self.known.lock().get(path)
            && *known == stamp
        {
            return Ok(*digest);
        }
        let digest = Digest(*blake3::hash(bytes).as_bytes());
        self.hashed.fetch_add(1, Relaxed);
        let after = stamp_of(&file.metadata()?)?;
        let now_ns = time_ns(SystemTime::now());
        let window = i64::try_from(self.racy_window.as_nanos()).unwrap_or(i64::MAX);
        let settled = |t: i64| now_ns.saturating_sub(t) >= window;
        if after == stamp && settled(stamp.mtime_ns) && settled(stamp.ctime_ns) {
            self.known
                .lock()
                .insert(path.to_path_buf(), (stamp, digest));
        } else {
            self.known.lock().remove(path);
        }
        Ok(digest)
    }
}

fn time_ns(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_nanos()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_nanos()).unwrap_or(i64::MAX),
    }
}

/// Opens `path` and reads it whole, with the stamp of the open file before the read: one path
/// lookup, and the stamp is of the very file read (a rename over `path` meanwhile cannot mix two).
fn read_stamped(path: &Path) -> io::Result<(std::fs::File, Stamp, Vec<u8>)> {
    use std::io::Read;
    let mut file = std::fs::File::open(path)?;
    let stamp = stamp_of(&file.metadata()?)?;
    let mut bytes =
        Vec::with_capacity(usize::try_from(stamp.size).map_or(0, |n| n.saturating_add(1)));
    file.read_to_end(&mut bytes)?;
    Ok((file, stamp, bytes))
}

fn stamp_of(meta: &std::fs::Metadata) -> io::Result<Stamp> {
    use std::os::unix::fs::MetadataExt;
    Ok(Stamp {
        size: meta.len(),
        mtime_ns: meta
            .mtime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.mtime_nsec()),
        ctime_ns: meta
            .ctime()
            .saturating_mul(1_000_000_000)
            .saturating_add(meta.ctime_nsec()),
        ino: meta.ino(),
        dev: meta.dev(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::fs::{FileTimes, OpenOptions};

    /// Writes `path` and dates it an hour back, so its stamp may be memoized.
    fn write_old(path: &Path, contents: &str) {
        std::fs::write(path, contents).unwrap();
        let t = SystemTime::now() - Duration::from_secs(3600);
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_times(FileTimes::new().set_modified(t).set_accessed(t))
            .unwrap();
    }

    #[test]
    fn manifest_key_separates_parts() {
        assert_ne!(manifest_key(&[b"ab", b"c"]), manifest_key(&[b"a", b"bc"]));
        assert_ne!(manifest_key(&[b"a"]), manifest_key(&[b"a", b""]));
        assert_eq!(manifest_key(&[b"x", b"y"]), manifest_key(&[b"x", b"y"]));
        assert_ne!(manifest_key(&[b"x"]).0, *blake3::hash(b"x").as_bytes());
    }

    #[test]
    fn lookup_follows_contents_not_times() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.h"), tmp.path().join("b.h"));
        write_old(&a, "int a;");
        write_old(&b, "int b;");
        let memo = FileMemo::new();
        let mut m = Manifest::default();
        m.record(memo.records([&a, &b]).unwrap(), Digest([1; 32]));
        assert_eq!(m.lookup(&memo), Some(Digest([1; 32])));

        write_old(&b, "int B;"); // same size, new contents
        assert_eq!(m.lookup(&memo), None);
        m.record(memo.records([&a, &b]).unwrap(), Digest([2; 32]));
        assert_eq!(m.lookup(&memo), Some(Digest([2; 32])));

        write_old(&b, "int b;"); // back to the first version: the older entry matches again
        assert_eq!(m.lookup(&memo), Some(Digest([1; 32])));
        std::fs::remove_file(&a).unwrap();
        assert_eq!(m.lookup(&memo), None, "a missing file never matches");
    }

    #[test]
    fn recent_files_are_rehashed_every_time() {
        let tmp = tempfile::tempdir().unwrap();
        let a = tmp.path().join("fresh.h");
        std::fs::write(&a, "x").unwrap();
        let memo = FileMemo::new();
        let d1 = memo.digest(&a).unwrap();
        let d2 = memo.digest(&a).unwrap();
        assert_eq!(d1, d2);
        assert_eq!(
            memo.files_hashed(),
            2,
            "a file inside the racy window must not be memoized"
        );
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.h"), tmp.path().join("b.h"));
        write_old(&a, "int a;");
        write_old(&b, "int b;");
        // ctime cannot be dated back, so trust stamps at once instead of waiting out the window.
        let memo = FileMemo::with_racy_window(Duration::ZERO);
        let mut m = Manifest::default();
        m.record(memo.records([&a, &b]).unwrap(), Digest([1; 32]));
        assert_eq!(memo.files_hashed(), 2);
        for _ in 0..5 {
            assert_eq!(m.lookup(&memo), Some(Digest([1; 32])));
        }
        assert_eq!(
            memo.files_hashed(),
            2,
            "lookups of unchanged files must only stat them"
        );

        write_old(&a, "int A;");
        assert_eq!(m.lookup(&memo), None);
        assert_eq!(memo.files_hashed(), 3, "a changed stamp means one re-read");
        write_old(&b, "long b;");
        assert_eq!(m.lookup(&memo), None);
        assert_eq!(
            memo.files_hashed(),
            3,
            "a size change rejects without reading"
        );
    }

    #[test]
    fn accepted_records_match_records_and_a_refusal_records_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let (a, b) = (tmp.path().join("a.h"), tmp.path().join("b.h"));
        write_old(&a, "int a;");
        write_old(&b, "const char *d = __DATE__;");
        let plain = FileMemo::with_racy_window(Duration::ZERO)
            .records([&a])
            .unwrap();
        let memo = FileMemo::with_racy_window(Duration::ZERO);
        let got = memo.records_accepted([&a], |_| true).unwrap().unwrap();
        assert_eq!(got[0].digest, plain[0].digest);
        assert_eq!(got[0].size, plain[0].size);
        assert_eq!(memo.files_hashed(), 1);
        // What the memo learnt serves a later lookup without reading.
        assert_eq!(memo.records([&a]).unwrap()[0].digest, plain[0].digest);
        assert_eq!(memo.files_hashed(), 1);
        let no_date = |bytes: &[u8]| !bytes.windows(8).any(|w| w == b"__DATE__");
        assert!(memo.records_accepted([&a, &b], no_date).unwrap().is_none());
    }

    #[test]
    fn record_dedupes_and_caps() {
        let rec = |n: u8| FileRecord {
            path: format!("/h{n}").into(),
            digest: Digest([n; 32]),
            size: 1,
            mtime_ns: 0,
        };
        let mut m = Manifest::default();
        m.record(vec![rec(1)], Digest([10; 32]));
        m.record(vec![rec(2)], Digest([20; 32]));
        m.record(vec![rec(1)], Digest([11; 32]));
        assert_eq!(m.entries.len(), 2);
        assert_eq!(m.entries[0].result, Digest([11; 32]));
        for n in 0..40 {
            m.record(vec![rec(n), rec(n + 1)], Digest([n; 32]));
        }
        assert_eq!(m.entries.len(), MAX_ENTRIES);
        assert_eq!(m.entries[0].result, Digest([39; 32]));
    }

    #[test]
    fn encode_decode_round_trip_and_damage() {
        let mut m = Manifest::default();
        m.record(
            vec![
                FileRecord {
                    path: "/usr/include/stdio.h".into(),
                    digest: Digest([3; 32]),
                    size: 30_000,
                    mtime_ns: -5,
                },
                FileRecord {
                    path: "rel/ü.h".into(),
                    digest: Digest([4; 32]),
                    size: 0,
                    mtime_ns: i64::MAX,
                },
            ],
            Digest([9; 32]),
        );
        m.record(vec![], Digest([8; 32]));
        let bytes = m.encode();
        assert_eq!(Manifest::decode(&bytes).unwrap(), m);
        assert_eq!(
            Manifest::decode(&Manifest::default().encode()).unwrap(),
            Manifest::default()
        );

        for cut in [0, 3, 10, bytes.len() - 1] {
            assert!(
                matches!(
                    Manifest::decode(&bytes[..cut]),
                    Err(ManifestError::Decode { .. })
                ),
                "cut at {cut}"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            Manifest::decode(&long),
            Err(ManifestError::Decode {
                reason: "trailing bytes",
                ..
            })
        ));
        let mut bad = bytes;
        bad[0] = b'X';
        assert!(matches!(
            Manifest::decode(&bad),
            Err(ManifestError::Decode {
                offset: 4,
                reason: "bad magic"
            })
        ));
    }
}
