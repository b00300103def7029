//! [`DiskCache`]: entries as files under a directory, bounded in size with LRU eviction.

use crate::entry::{self, HEADER_LEN};
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::{Cache, CacheError, CacheStats, Digest};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, SystemTime};

/// A hit refreshes the file's mtime when it is older than this, so that recency survives a restart
/// (the index is rebuilt from mtime/atime) without a syscall on every hit.
const TOUCH_AFTER: Duration = Duration::from_secs(60);
/// Temporary files older than this are leftovers of a crashed writer and are removed at open.
const STALE_TMP: Duration = Duration::from_secs(3600);
/// Prefix of in-flight temporary files (never an entry name: entries are hex).
const TMP_PREFIX: &str = ".tmp-";
/// Entries up to this size (header included) are read on the calling task; larger ones on tokio's
/// blocking pool. Reading and hashing 128 KiB from the page cache takes some tens of microseconds.
const INLINE_READ_MAX: u64 = 128 << 10;

/// Where and how big a [`DiskCache`] is.
///
/// ```
/// use hybridgrid_cache::DiskCacheConfig;
/// let config = DiskCacheConfig { max_bytes: 5 << 30, ..DiskCacheConfig::default() };
/// assert!(config.dir.ends_with(".hybridgrid/cache"));
/// assert!(!config.fsync);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DiskCacheConfig {
    /// The cache directory (default `~/.hybridgrid/cache`). Created if missing.
    pub dir: PathBuf,
    /// Bound on the bytes of all entry files (headers included); the least recently used go first.
    pub max_bytes: u64,
    /// `fsync` each entry file before it is renamed into place, and its directory after (default
    /// `false`). Without it a power loss can leave a truncated entry; the checksum then catches it
    /// and the entry is dropped as a miss, so this only trades write latency for fewer lost entries.
    pub fsync: bool,
    /// For short-lived processes sharing the directory (a compiler wrapper runs once per
    /// compile): keep the directory's total in a counter file (`dir/.size`, updated under a
    /// lock by every put) instead of an in-memory index, so [`DiskCache::open`] does not scan.
    /// A put that takes the total over `max_bytes` scans once and evicts the least recently
    /// used entries down to 90% of it (the scan also corrects the counter). Default `false`:
    /// every open scans, for one long-lived process.
    pub shared_size: bool,
}

impl DiskCacheConfig {
    /// A config for `dir` bounded to `max_bytes`, without fsync or a shared size counter.
    pub fn new(dir: impl Into<PathBuf>, max_bytes: u64) -> Self {
        DiskCacheConfig {
            dir: dir.into(),
            max_bytes,
            fsync: false,
            shared_size: false,
        }
    }

    /// `$HOME/.hybridgrid/cache`, or `<tmp>/hybridgrid/cache` when `HOME` is not set.
    pub fn default_dir() -> PathBuf {
        match std::env::var_os("HOME") {
            Some(home) if !home.is_empty() => PathBuf::from(home).join(".hybridgrid").join("cache"),
            _ => std::env::temp_dir().join("hybridgrid").join("cache"),
        }
    }
}

impl Default for DiskCacheConfig {
    /// `~/.hybridgrid/cache`, 10 GiB, no fsync.
    fn default() -> Self {
        DiskCacheConfig::new(DiskCacheConfig::default_dir(), 10 << 30)
    }
}

/// A local, size-bounded, content-addressed cache in a directory.
///
/// Each entry is one file `dir/ab/cdef…` (the key's hex, split after two characters) holding a
/// small header (magic, version, length, key, BLAKE3 of the payload; see [`crate::entry`]) and the
/// payload. Writes go to a temporary file in the same directory and are renamed into place, so a
/// reader sees a whole entry or none, and concurrent writers of one key (tasks, or processes
/// sharing the directory) both complete: the last rename wins. Every read is verified; a damaged
/// entry is deleted, counted in [`CacheStats::corrupt`] and reported as a miss.
///
/// An in-memory index (size and recency per entry) is rebuilt at [`DiskCache::open`] from the files'
/// mtime/atime and kept up to date by `get`/`put`; a `put` that takes the total over `max_bytes`
/// evicts the least recently used entries. Each process bounds the entries it knows of (those present
/// at open, those it wrote, those it read): processes sharing a directory can together exceed the
/// bound by what the others wrote since they opened it. With [`DiskCacheConfig::shared_size`]
/// there is no index: every process's puts keep one counter file, and the bound holds for all.
///
/// A hit on an entry of up to 128 KiB is read and verified on the calling task (from the page
/// cache that takes microseconds, less than a hop to another thread); larger entries, puts, `clear`
/// and `open` run on tokio's blocking pool.
#[derive(Clone)]
pub struct DiskCache {
    inner: Arc<Inner>,
}

struct Inner {
    dir: PathBuf,
    max_bytes: u64,
    fsync: bool,
    shared_size: bool,
    index: Mutex<Index>,
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    evictions: AtomicU64,
    corrupt: AtomicU64,
}

#[derive(Default)]
struct Index {
    entries: HashMap<Digest, Slot>,
    lru: BTreeMap<u64, Digest>,
    next_tick: u64,
    bytes: u64,
}

#[derive(Clone, Copy)]
struct Slot {
    size: u64,
    tick: u64,
}

impl Index {
    fn tick(&mut self) -> u64 {
        self.next_tick += 1;
        self.next_tick
    }

    /// Marks `key` used now; false if it is not indexed.
    fn touch(&mut self, key: &Digest) -> bool {
        let tick = self.tick();
        match self.entries.get_mut(key) {
            Some(slot) => {
                self.lru.remove(&slot.tick);
                slot.tick = tick;
                self.lru.insert(tick, *key);
                true
            }
            None => false,
        }
    }

    fn insert(&mut self, key: Digest, size: u64) {
        self.remove(&key);
        let tick = self.tick();
        self.entries.insert(key, Slot { size, tick });
        self.lru.insert(tick, key);
        self.bytes += size;
    }

    fn remove(&mut self, key: &Digest) -> Option<u64> {
        let slot = self.entries.remove(key)?;
        self.lru.remove(&slot.tick);
        self.bytes -= slot.size;
        Some(slot.size)
    }

    /// Removes least recently used entries other than `keep` until the total fits `max_bytes`.
    fn evict(&mut self, max_bytes: u64, keep: Option<&Digest>) -> Vec<Digest> {
        let mut victims = Vec::new();
        while self.bytes > max_bytes {
            let Some(victim) = self.lru.values().find(|k| Some(*k) != keep).copied() else {
                break;
            };
            self.remove(&victim);
            victims.push(victim);
        }
        victims
    }
}

impl DiskCache {
    /// Opens (creating if needed) the cache directory and rebuilds the index by scanning it.
    ///
    /// Fails with [`CacheError::Io`] naming the directory, and saying what to do, when it is not a
    /// writable directory. The scan runs on tokio's blocking pool.
    pub async fn open(config: DiskCacheConfig) -> Result<DiskCache, CacheError> {
        tokio::task::spawn_blocking(move || DiskCache::open_blocking(config))
            .await
            .map_err(join_error)?
    }

    fn open_blocking(config: DiskCacheConfig) -> Result<DiskCache, CacheError> {
        let dir = config.dir;
        fs::create_dir_all(&dir).map_err(|e| dir_error(&dir, e))?;
        let meta = fs::metadata(&dir).map_err(|e| dir_error(&dir, e))?;
        if !meta.is_dir() {
            return Err(dir_error(
                &dir,
                io::Error::from(io::ErrorKind::NotADirectory),
            ));
        }
        // Fail now, naming the directory, rather than on the first put.
        let probe = dir.join(format!(
            "{TMP_PREFIX}probe-{}",
            uuid::Uuid::new_v4().simple()
        ));
        File::create(&probe).map_err(|e| dir_error(&dir, e))?;
        let _ = fs::remove_file(&probe);

        let mut index = Index::default();
        if !config.shared_size {
            let mut found = scan(&dir)?;
            found.sort_by_key(|f| f.recency);
            for f in found {
                index.insert(f.key, f.size);
            }
        }
        let inner = Inner {
            dir,
            max_bytes: config.max_bytes,
            fsync: config.fsync,
            shared_size: config.shared_size,
            index: Mutex::new(Index::default()),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            evictions: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
        };
        // The bound may have been lowered since the last run.
        let victims = index.evict(inner.max_bytes, None);
        inner.remove_files(&victims);
        tracing::debug!(dir = %inner.dir.display(), entries = index.entries.len(), bytes = index.bytes,
            evicted = victims.len(), "disk cache opened");
        *inner.index.lock() = index;
        Ok(DiskCache {
            inner: Arc::new(inner),
        })
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The file that holds (or would hold) the entry for `key`: `dir/ab/cdef…`.
    pub fn entry_path(&self, key: &Digest) -> PathBuf {
        self.inner.entry_path(key)
    }
}

#[async_trait]
impl Cache for DiskCache {
    async fn get(&self, key: &Digest) -> Result<Option<Bytes>, CacheError> {
        // Opening and stating are single syscalls, and reading a small entry from the page cache
        // takes microseconds: both run on the calling task, which is faster than a hop to the
        // blocking pool. Larger entries are read and verified on the blocking pool.
        let Some((file, meta)) = self.inner.open_entry(key)? else {
            return Ok(None);
        };
        if meta.len() <= INLINE_READ_MAX {
            return self.inner.read_entry(key, file, &meta);
        }
        let inner = self.inner.clone();
        let key = *key;
        tokio::task::spawn_blocking(move || inner.read_entry(&key, file, &meta))
            .await
            .map_err(join_error)?
    }

    async fn put(&self, key: &Digest, value: Bytes) -> Result<(), CacheError> {
        let inner = self.inner.clone();
        let key = *key;
        tokio::task::spawn_blocking(move || inner.put(&key, &value))
            .await
            .map_err(join_error)?
    }

    async fn clear(&self) -> Result<(), CacheError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.clear())
            .await
            .map_err(join_error)?
    }

    fn stats(&self) -> CacheStats {
        let i = &self.inner;
        let (bytes_stored, entries) = {
            let index = i.index.lock();
            (index.bytes, index.entries.len() as u64)
        };
        CacheStats {
            hits: i.hits.load(Relaxed),
            misses: i.misses.load(Relaxed),
            writes: i.writes.load(Relaxed),
            evictions: i.evictions.load(Relaxed),
            corrupt: i.corrupt.load(Relaxed),
            forged: 0,
            bytes_stored,
            entries,
        }
    }
}

impl Inner {
    fn entry_path(&self, key: &Digest) -> PathBuf {
        let hex = key.to_hex();
        self.dir.join(&hex[..2]).join(&hex[2..])
    }

    /// The entry's open file and metadata, or `None` (counted as a miss) if there is no file.
    fn open_entry(&self, key: &Digest) -> Result<Option<(File, fs::Metadata)>, CacheError> {
        let path = self.entry_path(key);
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Evicted or cleared by another process, if we had it indexed.
                self.index.lock().remove(key);
                self.misses.fetch_add(1, Relaxed);
                return Ok(None);
            }
            Err(e) => return Err(self.io_error(&path, e)),
        };
        let meta = file.metadata().map_err(|e| self.io_error(&path, e))?;
        Ok(Some((file, meta)))
    }

    /// Reads and verifies an entry opened by [`Inner::open_entry`]; a damaged one is deleted.
    fn read_entry(
        &self,
        key: &Digest,
        mut file: File,
        meta: &fs::Metadata,
    ) -> Result<Option<Bytes>, CacheError> {
        let path = self.entry_path(key);
        let mut buf =
            Vec::with_capacity(usize::try_from(meta.len()).unwrap_or(0).saturating_add(1));
        file.read_to_end(&mut buf)
            .map_err(|e| self.io_error(&path, e))?;
        let size = buf.len() as u64;
        match entry::decode(key, Bytes::from(buf)) {
            Ok(payload) => {
                if !self.shared_size {
                    let mut index = self.index.lock();
                    if !index.touch(key) {
                        // Written by another process since we opened the directory.
                        index.insert(*key, size);
                        let victims = index.evict(self.max_bytes, Some(key));
                        self.remove_files(&victims);
                    }
                }
                let stale = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_none_or(|age| age > TOUCH_AFTER);
                if stale && let Err(e) = file.set_modified(SystemTime::now()) {
                    tracing::debug!(path = %path.display(), error = %e, "cannot refresh entry mtime");
                }
                self.hits.fetch_add(1, Relaxed);
                Ok(Some(payload))
            }
            Err(defect) => {
                tracing::warn!(path = %path.display(), key = %key, %defect, "corrupt cache entry dropped");
                drop(file);
                {
                    let mut index = self.index.lock();
                    index.remove(key);
                    match fs::remove_file(&path) {
                        Ok(()) => {}
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(self.io_error(&path, e)),
                    }
                }
                self.corrupt.fetch_add(1, Relaxed);
                self.misses.fetch_add(1, Relaxed);
                Ok(None)
            }
        }
    }

    fn put(&self, key: &Digest, value: &[u8]) -> Result<(), CacheError> {
        let size = (HEADER_LEN + value.len()) as u64;
        if size > self.max_bytes {
            return Err(CacheError::TooLarge {
                size,
                max: self.max_bytes,
            });
        }
        let path = self.entry_path(key);
        let shard = path.parent().unwrap_or(&self.dir).to_path_buf();
        let tmp = shard.join(format!("{TMP_PREFIX}{}", uuid::Uuid::new_v4().simple()));
        let mut file = match File::create_new(&tmp) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::create_dir_all(&shard).map_err(|e| dir_error(&shard, e))?;
                File::create_new(&tmp).map_err(|e| dir_error(&shard, e))?
            }
            Err(e) => return Err(dir_error(&shard, e)),
        };
        let written = file
            .write_all(&entry::header(key, value))
            .and_then(|()| file.write_all(value))
            .and_then(|()| if self.fsync { file.sync_all() } else { Ok(()) });
        drop(file);
        if let Err(e) = written {
            let _ = fs::remove_file(&tmp);
            return Err(self.io_error(&tmp, e));
        }
        if self.shared_size {
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(self.io_error(&path, e));
            }
            if let Err(e) = self.account(key, size) {
                // The entry is in place; only the bound's bookkeeping failed (the next scan
                // corrects it).
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot update the cache size counter");
            }
        } else {
            let mut index = self.index.lock();
            if let Err(e) = fs::rename(&tmp, &path) {
                let _ = fs::remove_file(&tmp);
                return Err(self.io_error(&path, e));
            }
            index.insert(*key, size);
            let victims = index.evict(self.max_bytes, Some(key));
            self.remove_files(&victims);
        }
        if self.fsync {
            File::open(&shard)
                .and_then(|d| d.sync_all())
                .map_err(|e| self.io_error(&shard, e))?;
        }
        self.writes.fetch_add(1, Relaxed);
        Ok(())
    }

    fn clear(&self) -> Result<(), CacheError> {
        let mut index = self.index.lock();
        for found in scan(&self.dir)? {
            let path = self.entry_path(&found.key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(self.io_error(&path, e)),
            }
        }
        *index = Index {
            next_tick: index.next_tick,
            ..Index::default()
        };
        // The shared counter is recounted by the next put.
        match fs::remove_file(self.dir.join(SIZE_FILE)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(self.io_error(&self.dir.join(SIZE_FILE), e)),
        }
        Ok(())
    }

    /// Adds a new entry of `size` bytes to the shared counter (`.size`, under its lock); when that
    /// takes the total over the bound, or the counter is missing or unreadable, scans and evicts
    /// the least recently used entries other than `keep` down to [`TRIM_PERCENT`] of it.
    fn account(&self, keep: &Digest, size: u64) -> io::Result<()> {
        let path = self.dir.join(SIZE_FILE);
        let mut file = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.lock()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let counted = text
            .trim()
            .parse::<u64>()
            .ok()
            .map(|t| t.saturating_add(size));
        let total = match counted {
            Some(t) if t <= self.max_bytes => t,
            _ => self.trim(keep)?,
        };
        file.seek(io::SeekFrom::Start(0))?;
        file.set_len(0)?;
        file.write_all(format!("{total}\n").as_bytes())?;
        Ok(())
    }

    /// Scans the directory and evicts the least recently used entries other than `keep` until
    /// the total is at most [`TRIM_PERCENT`] of the bound; returns the total left.
    fn trim(&self, keep: &Digest) -> io::Result<u64> {
        let mut found = scan(&self.dir).map_err(io::Error::other)?;
        let mut total: u64 = found.iter().map(|f| f.size).sum();
        if total <= self.max_bytes {
            return Ok(total);
        }
        let target = self.max_bytes / 100 * TRIM_PERCENT;
        found.sort_by_key(|f| f.recency);
        let mut victims = Vec::new();
        for f in found {
            if total <= target {
                break;
            }
            if f.key != *keep {
                total = total.saturating_sub(f.size);
                victims.push(f.key);
            }
        }
        self.remove_files(&victims);
        Ok(total)
    }

    /// Deletes evicted entries' files (already out of the index).
    fn remove_files(&self, victims: &[Digest]) {
        for key in victims {
            let path = self.entry_path(key);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "cannot delete evicted cache entry")
                }
            }
            self.evictions.fetch_add(1, Relaxed);
            tracing::debug!(key = %key, "cache entry evicted");
        }
    }

    fn io_error(&self, path: &Path, e: io::Error) -> CacheError {
        if matches!(
            e.kind(),
            io::ErrorKind::PermissionDenied
                | io::ErrorKind::ReadOnlyFilesystem
                | io::ErrorKind::StorageFull
                | io::ErrorKind::QuotaExceeded
        ) {
            return dir_error(&self.dir, e);
        }
        CacheError::Io {
            path: path.display().to_string(),
            source: e,
        }
    }
}

/// The counter file of [`DiskCacheConfig::shared_size`]: the total bytes of the entries, as text.
/// A dot file at the top, never taken for an entry.
const SIZE_FILE: &str = ".size";
/// A put over the bound (shared counter) trims to this share of it, so the next scans are rare.
const TRIM_PERCENT: u64 = 90;

/// An entry file found by a scan.
struct Found {
    key: Digest,
    size: u64,
    recency: SystemTime,
}

/// Lists the entry files under `dir` (removing stale temporary files on the way).
fn scan(dir: &Path) -> Result<Vec<Found>, CacheError> {
    let mut found = Vec::new();
    for shard in fs::read_dir(dir).map_err(|e| dir_error(dir, e))? {
        let shard = shard.map_err(|e| dir_error(dir, e))?;
        let name = shard.file_name();
        let Some(prefix) = name.to_str().filter(|n| n.len() == 2 && is_hex(n)) else {
            continue;
        };
        let shard_path = shard.path();
        let files = match fs::read_dir(&shard_path) {
            Ok(files) => files,
            Err(e)
                if e.kind() == io::ErrorKind::NotADirectory
                    || e.kind() == io::ErrorKind::NotFound =>
            {
                continue;
            }
            Err(e) => return Err(dir_error(&shard_path, e)),
        };
        for file in files {
            let file = file.map_err(|e| dir_error(&shard_path, e))?;
            let name = file.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(meta) = file.metadata() else { continue }; // removed meanwhile
            if !meta.is_file() {
                continue;
            }
            let mtime = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            if name.starts_with(TMP_PREFIX) {
                if mtime.elapsed().is_ok_and(|age| age > STALE_TMP) {
                    let _ = fs::remove_file(file.path());
                }
                continue;
            }
            if name.len() != 62 || !is_hex(name) {
                continue;
            }
            let Ok(key) = format!("{prefix}{name}").parse::<Digest>() else {
                continue;
            };
            let atime = meta.accessed().unwrap_or(SystemTime::UNIX_EPOCH);
            found.push(Found {
                key,
                size: meta.len(),
                recency: mtime.max(atime),
            });
        }
    }
    Ok(found)
}

fn is_hex(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// An error about the cache directory itself, saying what to do.
fn dir_error(dir: &Path, e: io::Error) -> CacheError {
    let shown = dir.display();
    let hint = match e.kind() {
        io::ErrorKind::NotADirectory | io::ErrorKind::AlreadyExists => {
            format!(
                "{shown} (or one of its parents) is a file, not a directory: move it away or set the cache dir elsewhere"
            )
        }
        io::ErrorKind::PermissionDenied => format!(
            "the cache directory must be writable by this user: `chown -R $USER {shown} && chmod 755 {shown}`, or set the cache dir elsewhere"
        ),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => format!(
            "no space left for {shown}: free disk space or lower the cache size bound (cache.max_size_gb)"
        ),
        io::ErrorKind::ReadOnlyFilesystem => {
            format!("{shown} is on a read-only file system: set the cache dir to a writable place")
        }
        _ => "check that the cache directory exists and is a writable directory".to_owned(),
    };
    CacheError::Io {
        path: dir.display().to_string(),
        source: io::Error::new(e.kind(), format!("{e}; {hint}")),
    }
}

fn join_error(e: tokio::task::JoinError) -> CacheError {
    CacheError::Backend {
        backend: "disk",
        source: Box::new(e),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key(b: u8) -> Digest {
        Digest([b; 32])
    }

    #[test]
    fn index_evicts_least_recent_first_and_spares_keep() {
        let mut index = Index::default();
        index.insert(key(1), 10);
        index.insert(key(2), 10);
        index.insert(key(3), 10);
        assert!(index.touch(&key(1)));
        assert_eq!(index.evict(20, None), vec![key(2)]);
        assert_eq!(index.bytes, 20);
        index.insert(key(4), 15);
        // 3 was inserted before 1 was touched, so 3 goes first.
        assert_eq!(index.evict(20, Some(&key(4))), vec![key(3), key(1)]);
        assert_eq!(index.bytes, 15);
        assert_eq!(index.evict(0, Some(&key(4))), Vec::<Digest>::new());
    }

    #[test]
    fn reinsert_replaces_size() {
        let mut index = Index::default();
        index.insert(key(1), 10);
        index.insert(key(1), 30);
        assert_eq!(index.bytes, 30);
        assert_eq!(index.entries.len(), 1);
        assert_eq!(index.lru.len(), 1);
        assert_eq!(index.remove(&key(1)), Some(30));
        assert_eq!(index.bytes, 0);
    }
}
