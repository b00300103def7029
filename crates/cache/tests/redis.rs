//! RedisCache against the real server on 127.0.0.1:6379 (a missing server fails these tests).

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_cache::{DiskCache, DiskCacheConfig, RedisCache, RedisCacheConfig, TieredCache};
use hybridgrid_core::{Cache, CacheError, Digest};
use std::sync::Arc;
use std::time::Duration;

fn url() -> String {
    hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

fn key(n: u8) -> Digest {
    Digest(*blake3::hash(&[n]).as_bytes())
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn redis_cache(prefix: &str, ttl: Option<Duration>) -> RedisCache {
    let config = RedisCacheConfig {
        prefix: prefix.to_owned(),
        ttl,
        ..RedisCacheConfig::default()
    };
    RedisCache::connect(&url(), config).await.unwrap()
}

async fn leftover_keys(prefix: &str) -> Vec<String> {
    hybridgrid_testkit::redis::keys_under(&url(), prefix).await
}

#[tokio::test]
async fn entry_put_on_one_machine_is_a_hit_on_another() {
    let prefix = format!("{}:", hybridgrid_testkit::unique_prefix("cache"));
    let tmp = tempfile::tempdir().unwrap();
    let machine = |name: &'static str| {
        let (tmp, prefix) = (tmp.path().join(name), prefix.clone());
        async move {
            let local = DiskCache::open(DiskCacheConfig::new(tmp, 64 << 20))
                .await
                .unwrap();
            let local = Arc::new(local);
            (
                local.clone(),
                TieredCache::new(local, Arc::new(redis_cache(&prefix, None).await)),
            )
        }
    };
    let (_, a) = machine("a").await;
    let (b_local, b) = machine("b").await;
    let object = Bytes::from(vec![0xAB; 100_000]);

    a.put(&key(1), object.clone()).await.unwrap();
    a.flush().await;
    assert_eq!(b.get(&key(1)).await.unwrap(), Some(object.clone()));
    let t = b.tier_stats();
    assert_eq!((t.local.misses, t.shared.hits, t.backfills), (1, 1, 1));
    assert_eq!(
        b_local.get(&key(1)).await.unwrap(),
        Some(object),
        "shared hit not backfilled on b"
    );

    b.clear().await.unwrap();
    assert_eq!(leftover_keys(&prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn layout_ttl_and_corruption() {
    let prefix = format!("{}:", hybridgrid_testkit::unique_prefix("cache"));
    let cache = redis_cache(&prefix, Some(Duration::from_secs(600))).await;
    let mut conn = raw().await;
    cache
        .put(&key(2), Bytes::from_static(b"payload"))
        .await
        .unwrap();

    let rkey = format!("{prefix}cache:{}", key(2).to_hex());
    assert_eq!(cache.redis_key(&key(2)), rkey);
    let stored: Vec<u8> = redis::cmd("GET")
        .arg(&rkey)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        stored,
        hybridgrid_cache::entry::encode(&key(2), b"payload"),
        "value is the framed entry"
    );
    let pttl: i64 = redis::cmd("PTTL")
        .arg(&rkey)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 600_000, "PTTL {pttl}");

    // Flip one payload byte behind the cache's back.
    let mut bad = stored.clone();
    *bad.last_mut().unwrap() ^= 0x20;
    let () = redis::cmd("SET")
        .arg(&rkey)
        .arg(bad)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key(2)).await.unwrap(),
        None,
        "a corrupt value must never be served"
    );
    let s = cache.stats();
    assert_eq!((s.corrupt, s.misses, s.hits), (1, 1, 0));
    let exists: i64 = redis::cmd("EXISTS")
        .arg(&rkey)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(exists, 0, "the corrupt value is deleted");

    cache
        .put(&key(2), Bytes::from_static(b"payload"))
        .await
        .unwrap();
    assert_eq!(
        cache.get(&key(2)).await.unwrap().as_deref(),
        Some(&b"payload"[..])
    );
    cache.clear().await.unwrap();
    assert_eq!(leftover_keys(&prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn oversized_entry_is_refused_before_sending() {
    let prefix = format!("{}:", hybridgrid_testkit::unique_prefix("cache"));
    let config = RedisCacheConfig {
        prefix: prefix.clone(),
        max_entry_bytes: 1000,
        ..RedisCacheConfig::default()
    };
    let cache = RedisCache::connect(&url(), config).await.unwrap();
    let err = cache
        .put(&key(3), Bytes::from(vec![0; 1001]))
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            CacheError::TooLarge {
                size: 1001,
                max: 1000
            }
        ),
        "{err:?}"
    );
    assert_eq!(leftover_keys(&prefix).await, Vec::<String>::new());
}

#[tokio::test]
async fn clear_leaves_other_prefixes_alone() {
    let base = hybridgrid_testkit::unique_prefix("cache");
    // A prefix with glob characters must not match its neighbours.
    let (mine, other) = (format!("{base}:a*:"), format!("{base}:ab:"));
    let (a, b) = (
        redis_cache(&mine, None).await,
        redis_cache(&other, None).await,
    );
    a.put(&key(4), Bytes::from_static(b"a")).await.unwrap();
    b.put(&key(4), Bytes::from_static(b"b")).await.unwrap();
    a.clear().await.unwrap();
    assert_eq!(a.get(&key(4)).await.unwrap(), None);
    assert_eq!(b.get(&key(4)).await.unwrap().as_deref(), Some(&b"b"[..]));
    b.clear().await.unwrap();
    assert_eq!(leftover_keys(&base).await, Vec::<String>::new());
}

#[tokio::test]
async fn unreachable_server_is_a_named_error() {
    let config = RedisCacheConfig::default();
    let Err(err) = RedisCache::connect("redis://127.0.0.1:1", config).await else {
        panic!("connecting to a closed port should fail");
    };
    assert!(
        matches!(
            err,
            CacheError::Backend {
                backend: "redis",
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.retry().is_retryable());
}
