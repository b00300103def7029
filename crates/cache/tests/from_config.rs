//! Caches chosen by YAML specs, each exercised for real (a temp directory, Redis on 127.0.0.1:6379
//! or `HG_TEST_REDIS_URL`); the farm's shape (local disk + shared Redis) is a `tiered` spec. Bad
//! specs are one-line errors naming the key and hiding passwords.

#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use bytes::Bytes;
use hybridgrid_cache::open_cache;
use hybridgrid_core::{Cache, CacheSpec, Digest, SpecError};
use hybridgrid_testkit::redis::RedisPrefix;
use hybridgrid_testkit::service_url;
use std::sync::Arc;

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

fn spec(yaml: &str) -> CacheSpec {
    yaml_serde::from_str(yaml).unwrap()
}

async fn put_get(cache: &Arc<dyn Cache>, n: u8) -> Digest {
    let key = Digest(*blake3::hash(&[n, 42]).as_bytes());
    cache.put(&key, Bytes::from(vec![n; 1000])).await.unwrap();
    assert_eq!(
        cache.get(&key).await.unwrap(),
        Some(Bytes::from(vec![n; 1000]))
    );
    key
}

#[tokio::test]
async fn yaml_picks_disk_redis_and_tiered() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = RedisPrefix::new(&redis_url(), "cfgcache");

    let disk = open_cache(&spec(&format!(
        "{{ backend: disk, dir: {:?}, max_size: 64MiB }}",
        tmp.path().join("disk")
    )))
    .await
    .unwrap();
    put_get(&disk, 1).await;
    assert!(tmp.path().join("disk").exists());

    let redis = open_cache(&spec(&format!(
        "{{ backend: redis, url: {:?}, prefix: {:?}, ttl: 1h, response_timeout: 2s }}",
        redis_url(),
        prefix.sub("solo")
    )))
    .await
    .unwrap();
    put_get(&redis, 2).await;
    assert_eq!(prefix.key_count().await, 1);

    // The farm's cache section: local disk in front of a shared Redis tier.
    let yaml = format!(
        "backend: tiered\nlocal: {{ backend: disk, dir: {:?}, max_size: 10GB }}\nshared: {{ backend: redis, url: {:?}, prefix: {:?} }}\n",
        tmp.path().join("local"),
        redis_url(),
        prefix.sub("shared")
    );
    let tiered = open_cache(&spec(&yaml)).await.unwrap();
    let key = put_get(&tiered, 3).await;
    // Synchronous shared puts by default: the entry is in Redis once put returned.
    let shared_only = open_cache(&spec(&format!(
        "{{ backend: redis, url: {:?}, prefix: {:?} }}",
        redis_url(),
        prefix.sub("shared")
    )))
    .await
    .unwrap();
    assert_eq!(
        shared_only.get(&key).await.unwrap(),
        Some(Bytes::from(vec![3; 1000]))
    );
    prefix.cleanup().await;
}

fn one_line(err: &SpecError, key: &str) {
    let text = err.to_string();
    eprintln!("{text}");
    assert!(!text.contains('\n'), "one line: {text}");
    assert!(text.contains(key), "{text} should name {key}");
    assert!(
        !text.contains("hunter2") && !format!("{err:?}").contains("hunter2"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_specs_name_the_key_and_hide_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let local = format!(
        "{{ backend: disk, dir: {:?}, max_size: 1MiB }}",
        tmp.path().join("l")
    );
    let cases = [
        (
            format!(
                "{{ backend: tiered, local: {local}, shared: {{ backend: redis, url: \"http://:hunter2@h\" }} }}"
            ),
            "cache.shared.url",
        ),
        (
            format!(
                "{{ backend: tiered, local: {local}, shared: {{ backend: redis, url: \"redis://:hunter2@127.0.0.1:1\" }} }}"
            ),
            "cache.shared",
        ),
        (
            "{ backend: disk, dir: /proc/no/such, max_size: 1MiB }".to_owned(),
            "cache",
        ),
    ];
    for (yaml, key) in cases {
        let err = open_cache(&spec(&yaml)).await.err().unwrap();
        one_line(&err, key);
    }
}
