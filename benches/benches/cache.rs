//! DiskCache latency, through the `Cache` trait on a multi-thread tokio runtime:
//! - `get_hit/{1KB,100KB,1MB}`: a hit served from the page cache (open, fstat, read, BLAKE3 check,
//!   LRU touch; entries up to 128 KiB on the calling task, larger ones on the blocking pool);
//! - `get_miss`: a key with no entry file;
//! - `fs_read/100KB`: the floor, `std::fs::read` of the same 100 KB entry file with no check;
//! - `put/{1KB,100KB,1MB}`: a new entry into a full cache (temp file, write, rename, index update,
//!   eviction of the least recently used entry);
//! - `redis_cache/get_hit/{1KB,100KB,1MB}`: the shared tier's hit over loopback, for comparison
//!   (needs Redis on 127.0.0.1:6379 or `HG_TEST_REDIS_URL`; its keys are removed at the end).
//!
//! Run: `cargo bench -p hybridgrid-benches --bench cache`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use hybridgrid_cache::{DiskCache, DiskCacheConfig, RedisCache, RedisCacheConfig};
use hybridgrid_core::{Cache, Digest};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

const SIZES: [(&str, usize); 3] = [("1KB", 1 << 10), ("100KB", 100 << 10), ("1MB", 1 << 20)];

fn key(group: u8, n: u64) -> Digest {
    let mut k = [group; 32];
    k[..8].copy_from_slice(&n.to_le_bytes());
    Digest(k)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(151).wrapping_add(7))
        .collect()
}

/// A fresh cache directory under the system temp dir, removed when dropped.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("tokio runtime");
    let tmp = TempDir(std::env::temp_dir().join(format!("hg-cache-bench-{}", std::process::id())));
    let config = DiskCacheConfig::new(tmp.0.join("cache"), 256 << 20);
    let cache: Arc<DiskCache> = Arc::new(rt.block_on(DiskCache::open(config)).expect("open cache"));

    let mut g = c.benchmark_group("disk_cache/get_hit");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for (i, (name, len)) in SIZES.into_iter().enumerate() {
        let k = key(1, i as u64);
        rt.block_on(cache.put(&k, payload(len).into()))
            .expect("put");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| async {
                let v = cache.get(black_box(&k)).await.expect("get").expect("hit");
                assert_eq!(v.len(), len);
                v
            })
        });
    }
    g.finish();

    let mut g = c.benchmark_group("disk_cache");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    g.bench_function("get_miss", |b| {
        b.to_async(&rt).iter(|| async {
            assert!(
                cache
                    .get(black_box(&key(9, 9)))
                    .await
                    .expect("get")
                    .is_none()
            )
        })
    });
    let file = cache.entry_path(&key(1, 1));
    g.throughput(Throughput::Bytes(100 << 10));
    g.bench_function("fs_read/100KB", |b| {
        b.iter(|| std::fs::read(black_box(&file)).expect("read"))
    });
    g.finish();

    // Puts write a new key each time into their own cache bounded at 64 MB: once it is full (soon
    // for 1 MB entries), each put also evicts the least recently used entry, as a full cache does.
    let put_config = DiskCacheConfig::new(tmp.0.join("put"), 64 << 20);
    let put_cache = rt
        .block_on(DiskCache::open(put_config))
        .expect("open cache");
    let mut g = c.benchmark_group("disk_cache/put");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for (i, (name, len)) in SIZES.into_iter().enumerate() {
        // The payload as `Bytes`, read back from the entry written above.
        let value = rt
            .block_on(cache.get(&key(1, i as u64)))
            .expect("get")
            .expect("hit");
        let n = AtomicU64::new(0);
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| async {
                let k = key(2 + i as u8, n.fetch_add(1, Ordering::Relaxed));
                put_cache.put(&k, value.clone()).await.expect("put")
            })
        });
    }
    g.finish();

    // The shared tier: a RedisCache hit over loopback (GET, BLAKE3 check), for comparison with the
    // local tier. Needs the Redis server on 127.0.0.1:6379 (or HG_TEST_REDIS_URL).
    let url =
        std::env::var("HG_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    let prefix = format!("hgbench_cache_{}:", std::process::id());
    let redis_config = RedisCacheConfig {
        prefix,
        ..RedisCacheConfig::default()
    };
    let redis = rt
        .block_on(RedisCache::connect(&url, redis_config))
        .expect("redis on 127.0.0.1:6379");
    let mut g = c.benchmark_group("redis_cache/get_hit");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));
    for (i, (name, len)) in SIZES.into_iter().enumerate() {
        let k = key(1, i as u64);
        let value = rt.block_on(cache.get(&k)).expect("get").expect("hit");
        rt.block_on(redis.put(&k, value)).expect("redis put");
        g.throughput(Throughput::Bytes(len as u64));
        g.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.to_async(&rt).iter(|| async {
                let v = redis.get(black_box(&k)).await.expect("get").expect("hit");
                assert_eq!(v.len(), len);
                v
            })
        });
    }
    g.finish();
    rt.block_on(redis.clear()).expect("redis clear");

    for (name, c) in [("hit/miss cache", &*cache), ("put cache", &put_cache)] {
        let s = c.stats();
        println!(
            "disk_cache {name}: hits {} misses {} writes {} evictions {} corrupt {} entries {} bytes {}",
            s.hits, s.misses, s.writes, s.evictions, s.corrupt, s.entries, s.bytes_stored
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
