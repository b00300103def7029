//! DiskCache behaviour beyond the conformance suite: corruption, eviction, reopen, errors, sharing.

#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_cache::entry::HEADER_LEN;
use hybridgrid_cache::{DiskCache, DiskCacheConfig};
use hybridgrid_core::{Cache, CacheError, Digest};
use std::fs::{self, FileTimes, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, SystemTime};

fn key(n: u8) -> Digest {
    Digest(*blake3::hash(&[n]).as_bytes())
}

fn value(n: u8, len: usize) -> Bytes {
    Bytes::from(
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(n))
            .collect::<Vec<u8>>(),
    )
}

async fn open(dir: &Path, max_bytes: u64) -> DiskCache {
    DiskCache::open(DiskCacheConfig::new(dir, max_bytes))
        .await
        .unwrap()
}

/// Entry files and temporary files under `dir`, as (name, size).
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for shard in fs::read_dir(dir).unwrap() {
        let shard = shard.unwrap();
        if shard.file_type().unwrap().is_dir() {
            for f in fs::read_dir(shard.path()).unwrap() {
                let f = f.unwrap();
                out.push((
                    f.file_name().to_string_lossy().into_owned(),
                    f.metadata().unwrap().len(),
                ));
            }
        }
    }
    out
}

#[tokio::test]
async fn flipped_byte_is_detected_dropped_counted_and_put_works_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path(), 1 << 20).await;
    let (k, v) = (key(1), value(1, 5000));
    cache.put(&k, v.clone()).await.unwrap();
    let path = cache.entry_path(&k);
    assert_eq!(
        fs::metadata(&path).unwrap().len(),
        (HEADER_LEN + 5000) as u64
    );

    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    f.seek(SeekFrom::Start((HEADER_LEN + 1234) as u64)).unwrap();
    f.write_all(&[v[1234] ^ 0x01]).unwrap();
    drop(f);

    assert_eq!(
        cache.get(&k).await.unwrap(),
        None,
        "a corrupted entry must never be served"
    );
    assert!(!path.exists(), "the corrupted file is deleted");
    let s = cache.stats();
    assert_eq!(
        (s.corrupt, s.misses, s.hits, s.entries, s.bytes_stored),
        (1, 1, 0, 0, 0)
    );

    cache.put(&k, v.clone()).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap(), Some(v));
    assert_eq!(cache.stats().corrupt, 1);
}

#[tokio::test]
async fn truncated_entry_is_detected_dropped_counted_and_put_works_again() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path(), 1 << 20).await;
    let (k, v) = (key(2), value(2, 5000));
    for cut in [(HEADER_LEN + 4999) as u64, 40, 0] {
        cache.put(&k, v.clone()).await.unwrap();
        let path = cache.entry_path(&k);
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(cut)
            .unwrap();
        assert_eq!(
            cache.get(&k).await.unwrap(),
            None,
            "entry truncated to {cut} bytes was served"
        );
        assert!(!path.exists());
    }
    assert_eq!(cache.stats().corrupt, 3);
    cache.put(&k, v.clone()).await.unwrap();
    assert_eq!(cache.get(&k).await.unwrap(), Some(v));
}

#[tokio::test]
async fn entry_copied_under_another_key_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path(), 1 << 20).await;
    cache.put(&key(3), value(3, 100)).await.unwrap();
    let wrong = cache.entry_path(&key(4));
    fs::create_dir_all(wrong.parent().unwrap()).unwrap();
    fs::copy(cache.entry_path(&key(3)), &wrong).unwrap();
    assert_eq!(cache.get(&key(4)).await.unwrap(), None);
    assert_eq!(cache.stats().corrupt, 1);
    assert!(!wrong.exists());
}

#[tokio::test]
async fn eviction_keeps_size_under_bound_and_evicts_least_recently_used() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = (HEADER_LEN + 1000) as u64;
    let cache = open(tmp.path(), 3 * entry).await;
    for n in [10, 11, 12] {
        cache.put(&key(n), value(n, 1000)).await.unwrap();
    }
    assert_eq!(cache.stats().evictions, 0);
    // 10 is the oldest by insertion; using it makes 11 the least recently used.
    assert!(cache.get(&key(10)).await.unwrap().is_some());
    cache.put(&key(13), value(13, 1000)).await.unwrap();

    let s = cache.stats();
    assert_eq!((s.evictions, s.entries, s.bytes_stored), (1, 3, 3 * entry));
    assert_eq!(
        cache.get(&key(11)).await.unwrap(),
        None,
        "the least recently used entry goes first"
    );
    for n in [10, 12, 13] {
        assert_eq!(
            cache.get(&key(n)).await.unwrap(),
            Some(value(n, 1000)),
            "key {n} should have stayed"
        );
    }
    let on_disk: u64 = files_under(tmp.path()).iter().map(|(_, size)| size).sum();
    assert!(
        on_disk <= 3 * entry,
        "{on_disk} bytes on disk over the {} bound",
        3 * entry
    );

    // A big entry pushes out several small ones, never itself.
    cache.put(&key(14), value(14, 2500)).await.unwrap();
    assert!(cache.stats().bytes_stored <= 3 * entry);
    assert_eq!(cache.get(&key(14)).await.unwrap(), Some(value(14, 2500)));
    assert_eq!(cache.stats().evictions, 4, "10, 12 and 13 make room for 14");

    let too_big = cache.put(&key(15), value(15, 4000)).await.unwrap_err();
    assert!(
        matches!(too_big, CacheError::TooLarge { max, .. } if max == 3 * entry),
        "{too_big:?}"
    );
}

#[tokio::test]
async fn reopen_rebuilds_index_with_file_times_as_recency() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = (HEADER_LEN + 1000) as u64;
    {
        let cache = open(tmp.path(), 10 * entry).await;
        for n in [20, 21, 22] {
            cache.put(&key(n), value(n, 1000)).await.unwrap();
        }
        // Make 21 the oldest by file times, 20 the newest, whatever the write order was.
        let now = SystemTime::now();
        for (n, age) in [(21, 3000), (22, 2000), (20, 1000)] {
            let t = now - Duration::from_secs(age);
            let f = OpenOptions::new()
                .write(true)
                .open(cache.entry_path(&key(n)))
                .unwrap();
            f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                .unwrap();
        }
    }
    // Stray files the scan must ignore or tidy.
    fs::write(tmp.path().join("README"), b"not an entry").unwrap();
    let shard = tmp.path().join("ab");
    fs::create_dir_all(&shard).unwrap();
    fs::write(shard.join("short"), b"x").unwrap();
    let stale = shard.join(".tmp-stale");
    let fresh = shard.join(".tmp-fresh");
    fs::write(&stale, b"partial").unwrap();
    fs::write(&fresh, b"partial").unwrap();
    let old = SystemTime::now() - Duration::from_secs(2 * 3600);
    OpenOptions::new()
        .write(true)
        .open(&stale)
        .unwrap()
        .set_modified(old)
        .unwrap();

    let cache = open(tmp.path(), 10 * entry).await;
    let s = cache.stats();
    assert_eq!((s.entries, s.bytes_stored, s.hits), (3, 3 * entry, 0));
    assert!(
        !stale.exists(),
        "a temporary file older than an hour is removed at open"
    );
    assert!(
        fresh.exists(),
        "a fresh temporary file may belong to a live writer"
    );
    drop(cache);

    // Reopening with a lower bound evicts the oldest by file time: 21, then 22.
    let cache = open(tmp.path(), entry).await;
    let s = cache.stats();
    assert_eq!((s.entries, s.bytes_stored, s.evictions), (1, entry, 2));
    assert_eq!(cache.get(&key(20)).await.unwrap(), Some(value(20, 1000)));
    assert_eq!(cache.get(&key(21)).await.unwrap(), None);
    assert_eq!(cache.get(&key(22)).await.unwrap(), None);
}

#[tokio::test]
async fn hit_refreshes_mtime_so_recency_survives_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let cache = open(tmp.path(), 1 << 20).await;
    cache.put(&key(30), value(30, 10)).await.unwrap();
    let path = cache.entry_path(&key(30));
    let old = SystemTime::now() - Duration::from_secs(3600);
    let f = OpenOptions::new().write(true).open(&path).unwrap();
    f.set_times(FileTimes::new().set_accessed(old).set_modified(old))
        .unwrap();
    drop(f);
    cache.get(&key(30)).await.unwrap().unwrap();
    let mtime = fs::metadata(&path).unwrap().modified().unwrap();
    assert!(
        mtime > old + Duration::from_secs(1800),
        "mtime not refreshed by a hit"
    );
}

#[tokio::test]
async fn dir_that_is_a_regular_file_fails_naming_it() {
    // Root bypasses permission bits, so use a path that fails for everyone: a regular file.
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cache");
    fs::write(&file, b"i am a file").unwrap();
    for dir in [file.clone(), file.join("below")] {
        let Err(err) = DiskCache::open(DiskCacheConfig::new(&dir, 1 << 20)).await else {
            panic!("opening {} should fail", dir.display());
        };
        match &err {
            CacheError::Io { path, source } => {
                assert_eq!(path, &dir.display().to_string());
                assert!(
                    matches!(
                        source.kind(),
                        std::io::ErrorKind::NotADirectory | std::io::ErrorKind::AlreadyExists
                    ),
                    "{source:?}"
                );
            }
            other => panic!("expected CacheError::Io, got {other:?}"),
        }
        assert!(
            err.to_string().contains(&dir.display().to_string()),
            "{err}"
        );
    }
}

#[tokio::test]
async fn entry_written_by_another_instance_is_found_and_indexed() {
    let tmp = tempfile::tempdir().unwrap();
    let a = open(tmp.path(), 1 << 20).await;
    let b = open(tmp.path(), 1 << 20).await;
    a.put(&key(40), value(40, 300)).await.unwrap();
    assert_eq!(b.stats().entries, 0);
    assert_eq!(b.get(&key(40)).await.unwrap(), Some(value(40, 300)));
    assert_eq!(b.stats().entries, 1);
    // Cleared by one instance, the other sees a miss and forgets it.
    a.clear().await.unwrap();
    assert_eq!(b.get(&key(40)).await.unwrap(), None);
    assert_eq!(b.stats().entries, 0);
}

#[test]
fn separate_instances_on_threads_write_one_key_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    let values: Vec<Bytes> = (0..4).map(|n| value(50 + n, 300_000)).collect();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (dir, values) = (dir.clone(), values.clone());
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async {
                    let cache = open(&dir, 64 << 20).await;
                    for _ in 0..25 {
                        cache.put(&key(50), values[t].clone()).await.unwrap();
                        let got = cache
                            .get(&key(50))
                            .await
                            .unwrap()
                            .expect("present after own put");
                        assert!(values.contains(&got), "torn value of {} bytes", got.len());
                    }
                    cache.stats().corrupt
                })
            })
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().unwrap(), 0, "no reader may see a corrupt entry");
    }
    let files = files_under(&dir);
    assert_eq!(
        files.len(),
        1,
        "one entry file and no temporary files left: {files:?}"
    );
}

/// Child half of `two_processes_write_one_key_safely`: does nothing unless started by it.
#[tokio::test]
async fn child_writer() {
    let (Ok(dir), Ok(seed)) = (
        std::env::var("HG_CACHE_CHILD_DIR"),
        std::env::var("HG_CACHE_CHILD_SEED"),
    ) else {
        return;
    };
    let seed: u8 = seed.parse().unwrap();
    let cache = open(Path::new(&dir), 64 << 20).await;
    let mine = value(seed, 500_000);
    let theirs = value(seed ^ 1, 500_000);
    for _ in 0..40 {
        cache.put(&key(60), mine.clone()).await.unwrap();
        let got = cache
            .get(&key(60))
            .await
            .unwrap()
            .expect("present after own put");
        assert!(
            got == mine || got == theirs,
            "torn value of {} bytes",
            got.len()
        );
    }
    assert_eq!(cache.stats().corrupt, 0);
}

#[test]
fn two_processes_write_one_key_safely() {
    let tmp = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = [70u8, 71]
        .iter()
        .map(|seed| {
            std::process::Command::new(&exe)
                .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
                .env("HG_CACHE_CHILD_DIR", tmp.path())
                .env("HG_CACHE_CHILD_SEED", seed.to_string())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("1 passed"),
            "the child test did not run: {stdout}"
        );
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let cache = open(tmp.path(), 64 << 20).await;
        let got = cache
            .get(&key(60))
            .await
            .unwrap()
            .expect("the key was written");
        assert!(got == value(70, 500_000) || got == value(71, 500_000));
    });
    let files = files_under(tmp.path());
    assert_eq!(
        files.len(),
        1,
        "one entry file and no temporary files left: {files:?}"
    );
}

async fn open_shared(dir: &Path, max_bytes: u64) -> DiskCache {
    DiskCache::open(DiskCacheConfig {
        shared_size: true,
        ..DiskCacheConfig::new(dir, max_bytes)
    })
    .await
    .unwrap()
}

fn entry_bytes(dir: &Path) -> u64 {
    files_under(dir)
        .iter()
        .filter(|(n, _)| !n.starts_with('.'))
        .map(|(_, s)| s)
        .sum()
}

/// Short-lived processes (one per compile) share one bound without scanning at open: each put
/// counts itself in `.size`, and the put that goes over the bound trims the oldest to 90% of it.
#[tokio::test]
async fn shared_size_counter_bounds_many_instances_without_a_scan_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let entry = (HEADER_LEN + 1000) as u64;
    let bound = entry * 5;
    for n in 0..12u8 {
        // A new instance per put, as a new wrapper process per compile.
        let cache = open_shared(tmp.path(), bound).await;
        cache.put(&key(n), value(n, 1000)).await.unwrap();
        let on_disk = entry_bytes(tmp.path());
        assert!(on_disk <= bound, "after put {n}: {on_disk} > {bound}");
        let counted: u64 = fs::read_to_string(tmp.path().join(".size"))
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        assert_eq!(
            counted, on_disk,
            "the counter is the bytes on disk after put {n}"
        );
        // Older entries go first: the one just written is always there.
        assert!(cache.get(&key(n)).await.unwrap().is_some());
        // Backdate so the next put's entry is the most recent by mtime.
        let path = cache.entry_path(&key(n));
        let past = SystemTime::now() - Duration::from_secs(1000 - u64::from(n));
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_times(FileTimes::new().set_modified(past).set_accessed(past))
            .unwrap();
    }
    let cache = open_shared(tmp.path(), bound).await;
    assert!(cache.get(&key(11)).await.unwrap().is_some());
    assert!(
        cache.get(&key(0)).await.unwrap().is_none(),
        "the oldest was evicted"
    );
    // A missing or damaged counter is recounted by the next put.
    fs::write(tmp.path().join(".size"), "not a number").unwrap();
    cache.put(&key(100), value(100, 10)).await.unwrap();
    let counted: u64 = fs::read_to_string(tmp.path().join(".size"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(counted, entry_bytes(tmp.path()));
    cache.clear().await.unwrap();
    assert!(
        !tmp.path().join(".size").exists(),
        "clear drops the counter"
    );
    assert_eq!(entry_bytes(tmp.path()), 0);
}
