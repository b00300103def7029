//! # hybridgrid-cache
//!
//! Content-addressed blob caches behind [`hybridgrid_core::Cache`]: [`DiskCache`], a local
//! directory bounded in size with LRU eviction and a checksum on every entry; [`TieredCache`], a
//! local tier in front of a shared one; and, with feature `redis`, [`RedisCache`], a shared tier so
//! that a file compiled on one machine is a hit on another. Every backend passes
//! `hybridgrid_testkit::cache::run_cache_suite`.
//!
//! ```
//! use bytes::Bytes;
//! use hybridgrid_cache::{DiskCache, DiskCacheConfig};
//! use hybridgrid_core::{Cache, Digest};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let tmp = tempfile::tempdir()?;
//! let cache = DiskCache::open(DiskCacheConfig::new(tmp.path().join("cache"), 1 << 30)).await?;
//! let object = Bytes::from_static(b"\x7fELF...");
//! let key = Digest(*blake3::hash(b"cc -O2 -c main.c + preprocessed source").as_bytes());
//!
//! assert_eq!(cache.get(&key).await?, None);
//! cache.put(&key, object.clone()).await?;
//! assert_eq!(cache.get(&key).await?, Some(object));
//! assert_eq!((cache.stats().hits, cache.stats().misses), (1, 1));
//! # Ok(())
//! # }
//! ```
//!
//! ## Features
//! - default: [`DiskCache`] and [`TieredCache`] (no network dependencies).
//! - `redis`: [`RedisCache`], a shared tier in Redis/Valkey.
//!
//! [`open_cache`] opens what a [`hybridgrid_core::CacheSpec`] from config names (`tiered` nests a
//! local and a shared spec); a backend whose feature is off is an error naming the feature.
//!
//! Module [`compile`] holds the direct-mode manifest of a compile cache (ccache-style: find a
//! result from the files a previous compile read, without preprocessing).
//!
//! See `docs/backends/cache.md` for the on-disk layout, the entry format and operations.

#[cfg(unix)]
pub mod compile;
mod disk;
pub mod entry;
mod open;
#[cfg(feature = "redis")]
mod redis;
mod tiered;

pub use disk::{DiskCache, DiskCacheConfig};
pub use open::open_cache;
#[cfg(feature = "redis")]
pub use redis::{RedisCache, RedisCacheConfig};
pub use tiered::{TierStats, TieredCache};
