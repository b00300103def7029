//! TieredCache behaviour beyond the conformance suite: backfill, per-tier stats, failing tiers.

#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_cache::{DiskCache, DiskCacheConfig, TieredCache};
use hybridgrid_core::{Cache, CacheError, CacheStats, Digest};
use std::sync::Arc;

fn key(n: u8) -> Digest {
    Digest(*blake3::hash(&[n]).as_bytes())
}

async fn disk(dir: &std::path::Path) -> Arc<DiskCache> {
    Arc::new(
        DiskCache::open(DiskCacheConfig::new(dir, 1 << 20))
            .await
            .unwrap(),
    )
}

/// A tier whose every operation fails, as a Redis outage would.
struct Down;

fn down() -> CacheError {
    CacheError::Backend {
        backend: "down",
        source: "connection refused".into(),
    }
}

#[async_trait]
impl Cache for Down {
    async fn get(&self, _: &Digest) -> Result<Option<Bytes>, CacheError> {
        Err(down())
    }
    async fn put(&self, _: &Digest, _: Bytes) -> Result<(), CacheError> {
        Err(down())
    }
    async fn clear(&self) -> Result<(), CacheError> {
        Err(down())
    }
    fn stats(&self) -> CacheStats {
        CacheStats::default()
    }
}

#[tokio::test]
async fn shared_hit_is_backfilled_into_local_and_counted_per_tier() {
    let tmp = tempfile::tempdir().unwrap();
    let (local, shared) = (
        disk(&tmp.path().join("local")).await,
        disk(&tmp.path().join("shared")).await,
    );
    // Another machine put it into the shared tier.
    shared
        .put(&key(1), Bytes::from_static(b"object"))
        .await
        .unwrap();
    let tiered = TieredCache::new(local.clone(), shared.clone());

    assert_eq!(
        tiered.get(&key(1)).await.unwrap().as_deref(),
        Some(&b"object"[..])
    );
    assert_eq!(
        local.get(&key(1)).await.unwrap().as_deref(),
        Some(&b"object"[..]),
        "not backfilled"
    );
    assert_eq!(
        tiered.get(&key(1)).await.unwrap().as_deref(),
        Some(&b"object"[..])
    );
    assert_eq!(tiered.get(&key(2)).await.unwrap(), None);

    let t = tiered.tier_stats();
    // local: miss(1), hit(1 by the check above), hit(1), miss(2); shared: hit(1), miss(2).
    assert_eq!((t.local.hits, t.local.misses), (2, 2));
    assert_eq!((t.shared.hits, t.shared.misses), (1, 1));
    assert_eq!((t.backfills, t.local_errors, t.shared_errors), (1, 0, 0));
    let s = tiered.stats();
    assert_eq!((s.hits, s.misses, s.entries), (2, 1, 1));
}

#[tokio::test]
async fn put_reaches_shared_tier_after_flush() {
    let tmp = tempfile::tempdir().unwrap();
    let (local, shared) = (
        disk(&tmp.path().join("local")).await,
        disk(&tmp.path().join("shared")).await,
    );
    let tiered = TieredCache::new(local.clone(), shared.clone());
    for n in 0..20 {
        tiered
            .put(&key(n), Bytes::from(vec![n; 1000]))
            .await
            .unwrap();
    }
    tiered.flush().await;
    for n in 0..20 {
        assert_eq!(
            shared.get(&key(n)).await.unwrap(),
            Some(Bytes::from(vec![n; 1000]))
        );
        assert_eq!(
            local.get(&key(n)).await.unwrap(),
            Some(Bytes::from(vec![n; 1000]))
        );
    }
    assert_eq!(tiered.stats().writes, 20);
}

#[tokio::test]
async fn a_failing_shared_tier_degrades_to_local() {
    let tmp = tempfile::tempdir().unwrap();
    let local = disk(tmp.path()).await;
    for background in [true, false] {
        let tiered =
            TieredCache::new(local.clone(), Arc::new(Down)).with_background_puts(background);
        tiered.put(&key(3), Bytes::from_static(b"x")).await.unwrap();
        tiered.flush().await;
        assert_eq!(
            tiered.get(&key(3)).await.unwrap().as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(
            tiered.get(&key(4)).await.unwrap(),
            None,
            "a shared outage is a miss, not an error"
        );
        let t = tiered.tier_stats();
        assert_eq!(
            (t.shared_errors, t.local_errors),
            (2, 0),
            "background = {background}"
        );
        assert!(
            tiered.clear().await.is_err(),
            "clear must say entries may remain"
        );
    }
}

#[tokio::test]
async fn both_tiers_failing_is_an_error() {
    let tiered = TieredCache::new(Arc::new(Down), Arc::new(Down));
    assert!(matches!(
        tiered.get(&key(5)).await,
        Err(CacheError::Backend { .. })
    ));
    assert!(matches!(
        tiered.put(&key(5), Bytes::new()).await,
        Err(CacheError::Backend { .. })
    ));
    let t = tiered.tier_stats();
    assert_eq!((t.local_errors, t.shared_errors), (2, 2));
}
