//! Every cache backend passes `hybridgrid_testkit::cache::run_cache_suite`.

#![allow(clippy::unwrap_used)]

use hybridgrid_cache::{DiskCache, DiskCacheConfig, TieredCache};
use hybridgrid_core::Cache;
use std::sync::Arc;

async fn disk(root: &std::path::Path) -> DiskCache {
    let dir = root.join(uuid_like());
    DiskCache::open(DiskCacheConfig::new(dir, 256 << 20))
        .await
        .unwrap()
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("c{}", N.fetch_add(1, Ordering::Relaxed))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disk_cache_conforms() {
    let root = tempfile::tempdir().unwrap();
    hybridgrid_testkit::cache::run_cache_suite(|| async {
        Arc::new(disk(root.path()).await) as Arc<dyn Cache>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_disk_disk_conforms() {
    let root = tempfile::tempdir().unwrap();
    hybridgrid_testkit::cache::run_cache_suite(|| async {
        let local = Arc::new(disk(root.path()).await);
        let shared = Arc::new(disk(root.path()).await);
        Arc::new(TieredCache::new(local, shared)) as Arc<dyn Cache>
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiered_with_synchronous_shared_puts_conforms() {
    let root = tempfile::tempdir().unwrap();
    hybridgrid_testkit::cache::run_cache_suite(|| async {
        let local = Arc::new(disk(root.path()).await);
        let shared = Arc::new(disk(root.path()).await);
        Arc::new(TieredCache::new(local, shared).with_background_puts(false)) as Arc<dyn Cache>
    })
    .await;
}

#[cfg(feature = "redis")]
mod redis {
    use super::*;
    use hybridgrid_cache::{RedisCache, RedisCacheConfig};

    use hybridgrid_testkit::redis::keys_under;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn redis_cache_conforms() {
        let url = hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        let base = hybridgrid_testkit::unique_prefix("cache");
        hybridgrid_testkit::cache::run_cache_suite(|| async {
            let config = RedisCacheConfig {
                prefix: format!("{base}:{}:", uuid_like()),
                ..RedisCacheConfig::default()
            };
            Arc::new(RedisCache::connect(&url, config).await.unwrap()) as Arc<dyn Cache>
        })
        .await;
        assert_eq!(
            keys_under(&url, &base).await,
            Vec::<String>::new(),
            "the suite left keys behind"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn tiered_disk_redis_conforms() {
        let url = hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379");
        let base = hybridgrid_testkit::unique_prefix("cache");
        let root = tempfile::tempdir().unwrap();
        hybridgrid_testkit::cache::run_cache_suite(|| async {
            let config = RedisCacheConfig {
                prefix: format!("{base}:{}:", uuid_like()),
                ..RedisCacheConfig::default()
            };
            let shared = Arc::new(RedisCache::connect(&url, config).await.unwrap());
            Arc::new(TieredCache::new(Arc::new(disk(root.path()).await), shared)) as Arc<dyn Cache>
        })
        .await;
        assert_eq!(
            keys_under(&url, &base).await,
            Vec::<String>::new(),
            "the suite left keys behind"
        );
    }
}
