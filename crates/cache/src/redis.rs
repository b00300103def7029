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
    /// Largest payload accepted by `put` (default 64 MiB); larger ones fail with [`CacheError::TooLarge`].
    pub max_entry_bytes: u64,
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
        }
    }
}

/// A cache whose entries live in Redis, so that a file compiled on one machine is a hit on another.
///
/// Values are the same framed entries as [`crate::DiskCache`] files (header with the key and a
/// BLAKE3 of the payload, see [`crate::entry`]): a damaged value is deleted, counted in
/// [`CacheStats::corrupt`], and reported as a miss. Each `put` is one `SET` (with `PX` when a TTL is
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
        tracing::debug!(url = %target, prefix = %config.prefix, "redis cache connected");
        Ok(RedisCache {
            conn,
            config,
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            writes: AtomicU64::new(0),
            corrupt: AtomicU64::new(0),
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
        let value: Option<Vec<u8>> = redis::cmd("GET")
            .arg(&rkey)
            .query_async(&mut conn)
            .await
            .map_err(|e| backend("GET", rkey.clone(), e))?;
        let Some(value) = value else {
            self.misses.fetch_add(1, Relaxed);
            return Ok(None);
        };
        match entry::decode(key, Bytes::from(value)) {
            Ok(payload) => {
                self.hits.fetch_add(1, Relaxed);
                Ok(Some(payload))
            }
            Err(defect) => {
                tracing::warn!(key = %rkey, %defect, "corrupt cache entry dropped");
                let _: i64 = redis::cmd("DEL")
                    .arg(&rkey)
                    .query_async(&mut conn)
                    .await
                    .map_err(|e| backend("DEL", rkey.clone(), e))?;
                self.corrupt.fetch_add(1, Relaxed);
                self.misses.fetch_add(1, Relaxed);
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &Digest, value: Bytes) -> Result<(), CacheError> {
        let size = value.len() as u64;
        if size > self.config.max_entry_bytes {
            return Err(CacheError::TooLarge {
                size,
                max: self.config.max_entry_bytes,
            });
        }
        let rkey = self.redis_key(key);
        let mut cmd = redis::cmd("SET");
        cmd.arg(&rkey).arg(entry::encode(key, &value));
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
