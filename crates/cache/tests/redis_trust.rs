//! The shared tier's trust model against the real Redis on 127.0.0.1:6379: entries written
//! straight into Redis without the farm's secret are never served, a read-only client uses a
//! real Redis ACL user that cannot write, and reads are bounded by the entry size limit.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_cache::entry::{self, Integrity};
use hybridgrid_cache::{RedisCache, RedisCacheConfig};
use hybridgrid_core::{Cache, CacheError, Digest};

fn url() -> String {
    hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

fn key(n: u8) -> Digest {
    Digest(*blake3::hash(&[n, 0x77]).as_bytes())
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn set_raw(rkey: &str, value: &[u8]) {
    let mut c = raw().await;
    let () = redis::cmd("SET")
        .arg(rkey)
        .arg(value)
        .query_async(&mut c)
        .await
        .unwrap();
}

fn config(prefix: &str, secret: Option<&str>) -> RedisCacheConfig {
    RedisCacheConfig {
        prefix: prefix.to_owned(),
        integrity: secret.map_or(Integrity::Checksum, Integrity::from_secret),
        ..RedisCacheConfig::default()
    }
}

const SECRET: &str = "farm secret for the trust tests";

#[tokio::test]
async fn entries_forged_in_redis_are_never_served_and_are_counted() {
    let cleanup = hybridgrid_testkit::redis::RedisPrefix::new(&url(), "trust");
    let prefix = cleanup.prefix().to_owned();
    let farm = RedisCache::connect(&url(), config(&prefix, Some(SECRET)))
        .await
        .unwrap();
    let good = Bytes::from_static(b"\x7fELF the real object");
    farm.put(&key(1), good.clone()).await.unwrap();
    assert_eq!(farm.get(&key(1)).await.unwrap(), Some(good.clone()));

    // What an attacker with write access to Redis (but not the secret) can write: a well-formed
    // checksummed entry, a MAC under a guessed secret, the real entry with its payload swapped.
    let evil = b"\x7fELF evil object";
    let real = {
        let mut c = raw().await;
        let v: Vec<u8> = redis::cmd("GET")
            .arg(farm.redis_key(&key(1)))
            .query_async(&mut c)
            .await
            .unwrap();
        v
    };
    let mut swapped = real[..entry::HEADER_LEN].to_vec();
    swapped.extend_from_slice(&good.iter().map(|b| b ^ 1).collect::<Vec<_>>());
    let forgeries: [(u8, Vec<u8>); 3] = [
        (2, entry::encode(&key(2), evil)),
        (
            3,
            entry::encode_with(&Integrity::from_secret("guessed secret!!"), &key(3), evil),
        ),
        (1, swapped),
    ];
    for (n, bytes) in &forgeries {
        set_raw(&farm.redis_key(&key(*n)), bytes).await;
    }
    let before = farm.stats();
    for (n, _) in &forgeries {
        assert_eq!(
            farm.get(&key(*n)).await.unwrap(),
            None,
            "forgery {n} served"
        );
    }
    let after = farm.stats();
    assert_eq!(after.forged - before.forged, 3);
    assert_eq!(after.hits, before.hits);
    assert_eq!(after.misses - before.misses, 3);
    // Not deleted: the next honest write of the key replaces it.
    let left = cleanup.key_count().await;
    assert_eq!(left, 3, "forged entries are left for the next write");
    farm.put(&key(2), good.clone()).await.unwrap();
    assert_eq!(farm.get(&key(2)).await.unwrap(), Some(good));

    // A reader without the secret refuses authenticated entries it cannot check.
    let keyless = RedisCache::connect(&url(), config(&prefix, None))
        .await
        .unwrap();
    assert_eq!(keyless.get(&key(2)).await.unwrap(), None);
    assert_eq!(keyless.stats().forged, 1);
    cleanup.cleanup().await;
}

#[tokio::test]
async fn a_value_larger_than_the_entry_bound_is_never_fetched_whole() {
    let cleanup = hybridgrid_testkit::redis::RedisPrefix::new(&url(), "trust");
    let prefix = cleanup.prefix().to_owned();
    let mut cfg = config(&prefix, None);
    cfg.max_entry_bytes = 1024;
    let cache = RedisCache::connect(&url(), cfg).await.unwrap();
    // A valid frame, just over the bound; GETRANGE returns bound + 1 bytes, never 4 MiB.
    let big = entry::encode(&key(9), &vec![7u8; 4 << 20]);
    set_raw(&cache.redis_key(&key(9)), &big).await;
    assert_eq!(cache.get(&key(9)).await.unwrap(), None);
    assert_eq!(cache.stats().corrupt, 1);
    // At the bound exactly it is still served.
    let fits = Bytes::from(vec![5u8; 1024]);
    cache.put(&key(8), fits.clone()).await.unwrap();
    assert_eq!(cache.get(&key(8)).await.unwrap(), Some(fits));
    assert!(matches!(
        cache.put(&key(7), Bytes::from(vec![0u8; 1025])).await,
        Err(CacheError::TooLarge { .. })
    ));
    cleanup.cleanup().await;
}

/// Deletes the ACL user when dropped (also when the test fails).
struct AclUser(String);

impl Drop for AclUser {
    fn drop(&mut self) {
        if let Ok(client) = redis::Client::open(url())
            && let Ok(mut c) = client.get_connection()
        {
            let _: Result<i64, _> = redis::cmd("ACL").arg("DELUSER").arg(&self.0).query(&mut c);
        }
    }
}

#[tokio::test]
async fn a_read_only_client_uses_a_redis_acl_user_that_cannot_write() {
    let cleanup = hybridgrid_testkit::redis::RedisPrefix::new(&url(), "trust");
    let prefix = cleanup.prefix().to_owned();
    let user = AclUser(format!("hg-ro-{}", uuid::Uuid::new_v4().simple()));
    let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
    // The ACL lines of docs/SECURITY.md ("Shared cache"), for this prefix.
    let mut c = raw().await;
    let () = redis::cmd("ACL")
        .arg("SETUSER")
        .arg(&user.0)
        .arg("reset")
        .arg("on")
        .arg(format!(">{password}"))
        .arg(format!("~{prefix}cache:*"))
        .arg("+getrange")
        .arg("+ping")
        .query_async(&mut c)
        .await
        .unwrap();
    let writer = RedisCache::connect(&url(), config(&prefix, Some(SECRET)))
        .await
        .unwrap();
    let object = Bytes::from_static(b"object for read-only readers");
    writer.put(&key(4), object.clone()).await.unwrap();

    let ro_url = url().replacen("redis://", &format!("redis://{}:{password}@", user.0), 1);
    let mut ro = config(&prefix, Some(SECRET));
    ro.read_only = true;
    let reader = RedisCache::connect(&ro_url, ro.clone()).await.unwrap();
    assert_eq!(reader.get(&key(4)).await.unwrap(), Some(object));
    assert!(matches!(
        reader.put(&key(5), Bytes::from_static(b"x")).await,
        Err(CacheError::ReadOnly { .. })
    ));
    // The server enforces it too: the same user, configured as if it could write, is refused.
    ro.read_only = false;
    let pretender = RedisCache::connect(&ro_url, ro).await.unwrap();
    let err = pretender
        .put(&key(5), Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    let text = format!("{err} {:?}", std::error::Error::source(&err));
    assert!(
        text.contains("no permissions to run the 'set' command"),
        "{text}"
    );
    assert!(!text.contains(&password), "the password leaked: {text}");
    assert_eq!(writer.get(&key(5)).await.unwrap(), None);
    cleanup.cleanup().await;
}
