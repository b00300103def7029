//! [`RedisCache`]: a shared tier in Redis/Valkey (feature `redis`).

use crate::entry;
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::{Cache, CacheError, CacheStats, Digest};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// How a [`RedisCache`] stores its entries.
///
/// ```
/// use hybridgrid_cache::RedisCacheConfig;
/// let config = RedisCacheConfig { prefix: "ci:".into(), ..RedisCacheConfig::default() };
/// assert_eq!(config.max_entry_bytes, 64 << 20);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisCacheConfig {
    /// Put in front of every key: an entry lives at `{prefix}cache:{hex}` (default `hg:`).
    pub prefix: String,
    /// Expiry of each entry, refreshed when it is written again (default: none, so size the server
    /// with `maxmemory` and `maxmemory-policy allkeys-lru`).
    pub ttl: Option<Duration>,
    /// Largest payload accepted by `put` (default 64 MiB); larger ones fail with
    /// [`CacheError::TooLarge`]. Reads fetch at most this much (plus the header) with `GETRANGE`,
    /// so a huge value planted in the server cannot make a reader allocate it: a longer value is
    /// a miss, counted in [`CacheStats::corrupt`].
    pub max_entry_bytes: u64,
    /// How entries are protected: [`entry::Integrity::Mac`] (from `cache.shared_secret`) makes
    /// every entry carry a keyed MAC and refuses, counts ([`CacheStats::forged`]) and logs any
    /// entry without a valid one. Default: a plain checksum.
    pub integrity: entry::Integrity,
    /// Never write: `put` fails with [`CacheError::ReadOnly`] without contacting the server (for
    /// clients whose Redis user may only read).
    pub read_only: bool,
    /// How long one command may take before it fails (default 5 s; an 8 MB value over a slow
    /// link needs more than the redis crate's 500 ms default).
    pub response_timeout: Duration,
}

impl Default for RedisCacheConfig {
    fn default() -> Self {
        RedisCacheConfig {
            prefix: "hg:".into(),
            ttl: None,
            max_entry_bytes: 64 << 20,
            response_timeout: Duration::from_secs(5),
            integrity: entry::Integrity::Checksum,
            read_only: false,
        }
    }
}

/// A cache whose entries live in Redis, so that a file compiled on one machine is a hit on another.
///
/// Values are the same framed entries as [`crate::DiskCache`] files (header with the key and a
/// BLAKE3 of the payload, see [`crate::entry`]), or with [`RedisCacheConfig::integrity`] set, a
/// keyed MAC instead of the BLAKE3: a damaged value is deleted, counted in
/// [`CacheStats::corrupt`], and reported as a miss; a value whose MAC does not verify is kept,
/// counted in [`CacheStats::forged`], logged, and reported as a miss. Each `put` is one `SET` (with `PX` when a TTL is
/// set), so readers see a whole value or none. [`Cache::stats`] counts this instance's hits, misses,
/// writes and corrupt entries; `evictions`, `bytes_stored` and `entries` stay 0 because Redis does
/// the bounding (`INFO memory`, `INFO stats` show them).
pub struct RedisCache {
    conn: ConnectionManager,
    config: RedisCacheConfig,
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    corrupt: AtomicU64,
    forged: AtomicU64,
}

/// A failed Redis command, naming the key or pattern it was about.
#[derive(Debug, thiserror::Error)]
#[error("{op} {target}: {source}")]
struct CommandError {
    op: &'static str,
    target: String,
    #[source]
    source: redis::RedisError,
}

fn backend(op: &'static str, target: String, source: redis::RedisError) -> CacheError {
    CacheError::Backend {
        backend: "redis",
        source: Box::new(CommandError { op, target, source }),
    }
}

impl RedisCache {
    /// Connects to `url` (e.g. `redis://127.0.0.1:6379`). Fails if the server does not answer.
    pub async fn connect(url: &str, config: RedisCacheConfig) -> Result<RedisCache, CacheError> {
        let target = hybridgrid_core::spec::redact(url);
        let client = redis::Client::open(url).map_err(|e| backend("connect", target.clone(), e))?;
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(5)))
            .set_response_timeout(Some(config.response_timeout))
            // A compile must not wait long on a cache that is down: few, short reconnect attempts
            // (the next command tries again).
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_with_config(client, manager_config)
            .await
            .map_err(|e| backend("connect", target.clone(), e))?;
        tracing::debug!(url = %target, prefix = %config.prefix, authenticated = matches!(config.integrity, entry::Integrity::Mac(_)),
            read_only = config.read_only, "redis cache connected");
        Ok(RedisCache {
            conn,
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
            forged: AtomicU64::new(0),
        })
    }

    /// The Redis key of `key`'s entry: `{prefix}cache:{hex}`.
    pub fn redis_key(&self, key: &Digest) -> String {
        format!("{}cache:{}", self.config.prefix, key.to_hex())
    }

    /// The `SCAN MATCH` pattern covering every entry of this prefix (glob characters escaped).
    fn pattern(&self) -> String {
        let mut p = String::with_capacity(self.config.prefix.len() + 8);
        for ch in self.config.prefix.chars() {
            if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
                p.push('\\');
            }
            p.push(ch);
        }
        p.push_str("cache:*");
        p
    }
}

#[async_trait]
impl Cache for RedisCache {
    async fn get(&self, key: &Digest) -> Result<Option<Bytes>, CacheError> {
        let rkey = self.redis_key(key);
        let mut conn = self.conn.clone();
        // At most one byte more than the largest valid entry: a longer value is never fetched
        // whole. A missing key reads as "" (no valid entry is empty).
        let limit = self
            .config
            .max_entry_bytes
            .saturating_add(entry::HEADER_LEN as u64);
        let value: Vec<u8> = redis::cmd("GETRANGE")
            .arg(&rkey)
            .arg(0)
            .arg(limit)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("GETRANGE", rkey.clone(), e))?;
        if value.is_empty() {
            self.misses.fetch_add(1, Relaxed);
            return Ok(None);
        }
        if value.len() as u64 > limit {
            tracing::warn!(key = %rkey, max_entry_bytes = self.config.max_entry_bytes,
                "cache entry larger than the configured bound ignored");
            self.corrupt.fetch_add(1, Relaxed);
            self.misses.fetch_add(1, Relaxed);
            return Ok(None);
        }
        match entry::decode_with(&self.config.integrity, key, Bytes::from(value)) {
            Ok(payload) => {
                self.hits.fetch_add(1, Relaxed);
                Ok(Some(payload))
            }
            Err(defect) if defect.is_authentication() => {
                // Not deleted: it may be valid for holders of another secret, and a read-only
                // client may not delete. The next clean compile of this key overwrites it.
                tracing::warn!(key = %rkey, %defect, "shared cache entry failed authentication; not served");
                self.forged.fetch_add(1, Relaxed);
                self.misses.fetch_add(1, Relaxed);
                Ok(None)
            }
            Err(defect) => {
                tracing::warn!(key = %rkey, %defect, "corrupt cache entry dropped");
                if !self.config.read_only {
                    let _: i64 = redis::cmd("DEL")
                        .arg(&rkey)
                        .query_async(&mut conn)
                        .await
                        .map_err(|e| backend("DEL", rkey.clone(), e))?;
                }
                self.corrupt.fetch_add(1, Relaxed);
                self.misses.fetch_add(1, Relaxed);
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &Digest, value: Bytes) -> Result<(), CacheError> {
        if self.config.read_only {
            return Err(CacheError::ReadOnly { backend: "redis" });
        }
        let size = value.len() as u64;
        if size > self.config.max_entry_bytes {
            return Err(CacheError::TooLarge {
                size,
                max: self.config.max_entry_bytes,
            });
        }
        let rkey = self.redis_key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&rkey)
            .arg(entry::encode_with(&self.config.integrity, key, &value));
        if let Some(ttl) = self.config.ttl {
            cmd.arg("PX").arg(ttl.as_millis().max(1) as u64);
        }
        let mut conn = self.conn.clone();
        let () = cmd
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("SET", rkey.clone(), e))?;
        self.writes.fetch_add(1, Relaxed);
        Ok(())
    }

    async fn clear(&self) -> Result<(), CacheError> {
        if self.config.read_only {
            return Err(CacheError::ReadOnly { backend: "redis" });
        }
        let pattern = self.pattern();
        let mut conn = self.conn.clone();
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .map_err(|e| backend("SCAN", pattern.clone(), e))?;
            if !keys.is_empty() {
                let _: i64 = redis::cmd("UNLINK")
                    .arg(&keys)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| backend("UNLINK", pattern.clone(), e))?;
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }

    fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Relaxed),
            misses: self.misses.load(Relaxed),
            writes: self.writes.load(Relaxed),
            corrupt: self.corrupt.load(Relaxed),
            forged: self.forged.load(Relaxed),
            ..CacheStats::default()
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    #[test]
    fn default_config_is_bounded() {
        let c = super::RedisCacheConfig::default();
        assert_eq!(c.prefix, "hg:");
        assert!(c.ttl.is_none());
        assert!(c.response_timeout > std::time::Duration::from_millis(500));
    }
}
