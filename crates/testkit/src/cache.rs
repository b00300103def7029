//! Conformance suite for [`Cache`] backends.
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use hybridgrid_core::Cache;
//! # async fn demo(make_backend: impl Fn() -> Arc<dyn Cache>) {
//! hybridgrid_testkit::cache::run_cache_suite(|| async { make_backend() }).await;
//! # }
//! ```
//!
//! Each check gets a fresh instance from `make`, which must hold at least 64 MB, and clears it when it
//! ends (so backends with shared storage leave nothing behind when the checks pass).

use crate::check;
use bytes::Bytes;
use hybridgrid_core::{Cache, Digest};
use std::future::Future;
use std::sync::Arc;

/// Runs every cache check against fresh instances from `make`; panics listing each failure.
pub async fn run_cache_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Cache>>,
{
    let mut failed = Vec::new();
    check(
        &mut failed,
        "miss_then_put_then_hit",
        cleared(make().await, miss_put_hit),
    )
    .await;
    check(
        &mut failed,
        "overwrite_replaces_value",
        cleared(make().await, overwrite),
    )
    .await;
    check(
        &mut failed,
        "large_blob_8mb",
        cleared(make().await, large_blob),
    )
    .await;
    check(&mut failed, "empty_blob", cleared(make().await, empty_blob)).await;
    check(&mut failed, "many_keys", cleared(make().await, many_keys)).await;
    check(
        &mut failed,
        "clear_removes_everything",
        cleared(make().await, clear_all),
    )
    .await;
    check(
        &mut failed,
        "stats_count_hits_misses_writes",
        cleared(make().await, stats_count),
    )
    .await;
    check(
        &mut failed,
        "concurrent_same_key_never_torn",
        cleared(make().await, concurrent_same_key),
    )
    .await;
    assert!(
        failed.is_empty(),
        "Cache conformance failures:\n{}",
        failed.join("\n")
    );
}

/// A fresh random key, tagged with a label and a number to read it in failures.
fn key(label: &str, n: u64) -> Digest {
    let mut k = [0u8; 32];
    let id = uuid::Uuid::new_v4();
    k[..16].copy_from_slice(id.as_bytes());
    let tag = label
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31).wrapping_add(u64::from(b)));
    k[16..24].copy_from_slice(&tag.to_le_bytes());
    k[24..].copy_from_slice(&n.to_le_bytes());
    Digest(k)
}

/// `len` bytes of a pattern seeded by `seed` (so different seeds differ almost everywhere).
fn blob(seed: u64, len: usize) -> Bytes {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    Bytes::from(out)
}

async fn cleared<C, Fut>(cache: Arc<dyn Cache>, body: C) -> Result<(), String>
where
    C: FnOnce(Arc<dyn Cache>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let result = body(cache.clone()).await;
    let cleanup = cache
        .clear()
        .await
        .map_err(|e| format!("clear after the check failed: {e}"));
    result.and(cleanup)
}

fn same(what: &str, got: &Option<Bytes>, want: &Bytes) -> Result<(), String> {
    match got {
        Some(v) if v == want => Ok(()),
        Some(v) => Err(format!(
            "{what}: expected {} bytes as put, got {} different bytes",
            want.len(),
            v.len()
        )),
        None => Err(format!("{what}: expected {} bytes, got a miss", want.len())),
    }
}

async fn get(cache: &Arc<dyn Cache>, k: &Digest) -> Result<Option<Bytes>, String> {
    cache.get(k).await.map_err(|e| format!("get {k}: {e}"))
}

async fn put(cache: &Arc<dyn Cache>, k: &Digest, v: Bytes) -> Result<(), String> {
    cache.put(k, v).await.map_err(|e| format!("put {k}: {e}"))
}

async fn miss_put_hit(cache: Arc<dyn Cache>) -> Result<(), String> {
    let k = key("miss_put_hit", 0);
    let v = blob(1, 4096);
    if let Some(got) = get(&cache, &k).await? {
        return Err(format!(
            "expected a miss before put, got {} bytes",
            got.len()
        ));
    }
    put(&cache, &k, v.clone()).await?;
    same("get after put", &get(&cache, &k).await?, &v)?;
    same("second get after put", &get(&cache, &k).await?, &v)
}

async fn overwrite(cache: Arc<dyn Cache>) -> Result<(), String> {
    let k = key("overwrite", 0);
    put(&cache, &k, blob(1, 1000)).await?;
    let second = blob(2, 3000);
    put(&cache, &k, second.clone()).await?;
    same("get after overwrite", &get(&cache, &k).await?, &second)?;
    let third = blob(3, 10);
    put(&cache, &k, third.clone()).await?;
    same(
        "get after shrinking overwrite",
        &get(&cache, &k).await?,
        &third,
    )
}

async fn large_blob(cache: Arc<dyn Cache>) -> Result<(), String> {
    let k = key("large", 0);
    let v = blob(7, 8 << 20);
    put(&cache, &k, v.clone()).await?;
    same("get of 8 MB blob", &get(&cache, &k).await?, &v)
}

async fn empty_blob(cache: Arc<dyn Cache>) -> Result<(), String> {
    let k = key("empty", 0);
    put(&cache, &k, Bytes::new()).await?;
    match get(&cache, &k).await? {
        Some(v) if v.is_empty() => Ok(()),
        Some(v) => Err(format!("expected an empty blob, got {} bytes", v.len())),
        None => Err("expected an empty blob (a hit), got a miss".into()),
    }
}

async fn many_keys(cache: Arc<dyn Cache>) -> Result<(), String> {
    const N: u64 = 300;
    let keys: Vec<Digest> = (0..N).map(|n| key("many", n)).collect();
    for (n, k) in keys.iter().enumerate() {
        put(&cache, k, blob(n as u64, 100 + n)).await?;
    }
    for (n, k) in keys.iter().enumerate() {
        same(
            &format!("key #{n} of {N}"),
            &get(&cache, k).await?,
            &blob(n as u64, 100 + n),
        )?;
    }
    match get(&cache, &key("many", N + 1)).await? {
        None => Ok(()),
        Some(v) => Err(format!(
            "expected a miss for a key never put, got {} bytes",
            v.len()
        )),
    }
}

async fn clear_all(cache: Arc<dyn Cache>) -> Result<(), String> {
    let keys: Vec<Digest> = (0..20).map(|n| key("clear", n)).collect();
    for (n, k) in keys.iter().enumerate() {
        put(&cache, k, blob(n as u64, 500)).await?;
    }
    cache.clear().await.map_err(|e| format!("clear: {e}"))?;
    for (n, k) in keys.iter().enumerate() {
        if let Some(v) = get(&cache, k).await? {
            return Err(format!(
                "key #{n} still present after clear ({} bytes)",
                v.len()
            ));
        }
    }
    // The cache is usable after a clear.
    let v = blob(99, 64);
    put(&cache, &keys[0], v.clone()).await?;
    same("put after clear", &get(&cache, &keys[0]).await?, &v)
}

async fn stats_count(cache: Arc<dyn Cache>) -> Result<(), String> {
    let before = cache.stats();
    let k = key("stats", 0);
    get(&cache, &k).await?;
    put(&cache, &k, blob(5, 200)).await?;
    get(&cache, &k).await?;
    get(&cache, &k).await?;
    let after = cache.stats();
    let got = (
        after.hits - before.hits,
        after.misses - before.misses,
        after.writes - before.writes,
    );
    if got != (2, 1, 1) {
        return Err(format!(
            "expected +2 hits, +1 miss, +1 write; got (hits, misses, writes) = {got:?}"
        ));
    }
    Ok(())
}

async fn concurrent_same_key(cache: Arc<dyn Cache>) -> Result<(), String> {
    const TASKS: u64 = 16;
    const ROUNDS: usize = 8;
    const LEN: usize = 256 << 10;
    let k = key("concurrent", 0);
    let values: Arc<Vec<Bytes>> = Arc::new((0..TASKS).map(|t| blob(1000 + t, LEN)).collect());
    let mut tasks = tokio::task::JoinSet::new();
    for t in 0..TASKS {
        let cache = cache.clone();
        let values = values.clone();
        tasks.spawn(async move {
            let mut seen = 0usize;
            for _ in 0..ROUNDS {
                put(&cache, &k, values[t as usize].clone()).await?;
                if let Some(got) = get(&cache, &k).await? {
                    if !values.contains(&got) {
                        return Err(format!(
                            "task {t}: got {} bytes that no task put (torn value)",
                            got.len()
                        ));
                    }
                    seen += 1;
                }
            }
            Ok::<usize, String>(seen)
        });
    }
    let mut seen = 0;
    while let Some(joined) = tasks.join_next().await {
        seen += joined.map_err(|e| format!("task panicked: {e}"))??;
    }
    if seen == 0 {
        return Err("no get returned a value while 16 tasks were putting it".into());
    }
    match get(&cache, &k).await? {
        Some(got) if values.contains(&got) => Ok(()),
        Some(got) => Err(format!(
            "final value of {} bytes is none of the values put (torn)",
            got.len()
        )),
        None => Err("final get: expected one of the values put, got a miss".into()),
    }
}
