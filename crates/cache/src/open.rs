//! [`open_cache`]: the cache a [`CacheSpec`] from config names (recursively, for `tiered`).

use crate::{DiskCache, DiskCacheConfig, TieredCache};
use hybridgrid_core::Cache;
use hybridgrid_core::spec::{CacheSpec, SpecError};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

type Opened = Pin<Box<dyn Future<Output = Result<Arc<dyn Cache>, SpecError>> + Send + 'static>>;

/// Opens the cache `spec` names: a disk directory, a Redis shared tier, or a local tier in front of
/// a shared one. Errors name the key (`cache.max_size`, `cache.shared.url`) and never show a
/// password.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = tempfile::tempdir()?;
/// let yaml = format!("{{ backend: disk, dir: {:?}, max_size: 1GiB }}", tmp.path());
/// let spec: hybridgrid_core::CacheSpec = yaml_serde::from_str(&yaml)?;
/// let cache = hybridgrid_cache::open_cache(&spec).await?;
/// assert_eq!(cache.stats().entries, 0);
/// # Ok(())
/// # }
/// ```
pub async fn open_cache(spec: &CacheSpec) -> Result<Arc<dyn Cache>, SpecError> {
    open_at(spec.clone(), "cache".to_owned()).await
}

fn open_at(spec: CacheSpec, key: String) -> Opened {
    Box::pin(async move {
        match spec {
            CacheSpec::Disk {
                dir,
                max_size,
                fsync,
            } => {
                if max_size.0 == 0 {
                    return Err(SpecError::invalid(
                        format!("{key}.max_size"),
                        "must be greater than 0",
                    ));
                }
                let mut config = DiskCacheConfig::new(dir, max_size.0);
                config.fsync = fsync;
                let cache = DiskCache::open(config)
                    .await
                    .map_err(|e| SpecError::open(key, None, e))?;
                Ok(Arc::new(cache) as Arc<dyn Cache>)
            }
            #[cfg(feature = "redis")]
            CacheSpec::Redis {
                url,
                prefix,
                ttl,
                response_timeout,
                max_entry_size,
                secret,
                read_only,
            } => {
                if !matches!(url.scheme(), "redis" | "rediss" | "redis+unix" | "unix") {
                    return Err(SpecError::invalid(
                        format!("{key}.url"),
                        format!("expected a redis:// or rediss:// URL, got {url}"),
                    ));
                }
                redis::Client::open(url.expose()).map_err(|e| {
                    SpecError::invalid(format!("{key}.url"), url.scrub(&e.to_string()))
                })?;
                let mut config = crate::RedisCacheConfig {
                    prefix,
                    ttl: ttl.map(Into::into),
                    read_only,
                    ..crate::RedisCacheConfig::default()
                };
                if let Some(secret) = &secret {
                    config.integrity = crate::entry::Integrity::from_secret(secret.expose());
                }
                if let Some(t) = response_timeout {
                    config.response_timeout = t.into();
                }
                if let Some(m) = max_entry_size {
                    config.max_entry_bytes = m.0;
                }
                let cache = crate::RedisCache::connect(url.expose(), config)
                    .await
                    .map_err(|e| SpecError::open(key, Some(&url), e))?;
                Ok(Arc::new(cache) as Arc<dyn Cache>)
            }
            #[cfg(not(feature = "redis"))]
            CacheSpec::Redis { .. } => Err(SpecError::FeatureOff {
                seam: "cache",
                backend: "redis",
                krate: "hybridgrid-cache",
                feature: "redis",
            }),
            CacheSpec::Tiered {
                local,
                shared,
                background_puts,
            } => {
                let local = open_at(*local, format!("{key}.local")).await?;
                let shared = open_at(*shared, format!("{key}.shared")).await?;
                Ok(
                    Arc::new(TieredCache::new(local, shared).with_background_puts(background_puts))
                        as Arc<dyn Cache>,
                )
            }
        }
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use hybridgrid_core::spec::{ByteSize, SecretUrl};

    #[tokio::test]
    async fn a_zero_size_names_the_nested_key() {
        let tmp = tempfile::tempdir().unwrap();
        let spec = CacheSpec::Tiered {
            local: Box::new(CacheSpec::Disk {
                dir: tmp.path().join("a"),
                max_size: ByteSize(1 << 20),
                fsync: false,
            }),
            shared: Box::new(CacheSpec::Disk {
                dir: tmp.path().join("b"),
                max_size: ByteSize(0),
                fsync: false,
            }),
            background_puts: false,
        };
        let err = open_cache(&spec).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "invalid cache.shared.max_size: must be greater than 0"
        );
    }

    /// Built without feature `redis` (`cargo test -p hybridgrid-cache --lib`), a Redis spec is
    /// refused naming the feature.
    #[tokio::test]
    async fn redis_without_its_feature_is_named() {
        if cfg!(feature = "redis") {
            return;
        }
        let spec = CacheSpec::Redis {
            url: SecretUrl::new("redis://127.0.0.1:6379").unwrap(),
            prefix: "x".into(),
            ttl: None,
            response_timeout: None,
            max_entry_size: None,
            secret: None,
            read_only: false,
        };
        let err = open_cache(&spec).await.err().unwrap();
        assert_eq!(
            err.to_string(),
            "cache backend \"redis\" needs hybridgrid-cache's feature \"redis\""
        );
    }
}
