//! A Redis key prefix owned by one test or bench, deleted when it ends (feature `redis`).
//!
//! ```no_run
//! # async fn demo() {
//! use hybridgrid_testkit::redis::RedisPrefix;
//! let url = hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379");
//! let prefix = RedisPrefix::new(&url, "queue"); // "hgtest_queue_<random>:"
//! // ... RedisQueue::connect(&url, prefix.prefix()) ...
//! assert!(prefix.keys().await.is_empty());
//! prefix.cleanup().await; // or let it drop
//! # }
//! ```

use redis::AsyncCommands;

/// A unique key prefix on one Redis server. Every key under it is deleted by
/// [`RedisPrefix::cleanup`], and (best effort) when the value is dropped.
#[derive(Debug)]
pub struct RedisPrefix {
    url: String,
    prefix: String,
}

impl RedisPrefix {
    /// A fresh prefix `hgtest_<tag>_<random>:` on the server at `url`.
    pub fn new(url: &str, tag: &str) -> Self {
        Self::with_prefix(url, format!("{}:", crate::unique_prefix(tag)))
    }

    /// Takes ownership of an existing `prefix` (its keys are deleted at the end).
    pub fn with_prefix(url: &str, prefix: impl Into<String>) -> Self {
        Self {
            url: url.to_owned(),
            prefix: prefix.into(),
        }
    }

    /// The prefix, ending in `:`.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// A distinct prefix under this one (`<prefix><name>:`), for several instances in one test.
    pub fn sub(&self, name: &str) -> String {
        format!("{}{name}:", self.prefix)
    }

    /// Every key under the prefix (found with `SCAN`, so a shared server is not blocked).
    pub async fn keys(&self) -> Vec<String> {
        keys_under(&self.url, &self.prefix).await
    }

    /// How many keys are under the prefix.
    pub async fn key_count(&self) -> usize {
        self.keys().await.len()
    }

    /// Deletes every key under the prefix; panics naming the server if it cannot.
    pub async fn cleanup(&self) {
        delete_prefix(&self.url, &self.prefix).await;
    }
}

impl Drop for RedisPrefix {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        // A thread of its own, so this works inside and outside a tokio runtime; errors are
        // ignored (the test already reported what matters).
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                let _ = try_delete(&url, &prefix).await;
            });
        })
        .join();
    }
}

async fn connection(url: &str) -> redis::aio::MultiplexedConnection {
    redis::Client::open(url)
        .unwrap_or_else(|e| panic!("redis url {url:?}: {e}"))
        .get_multiplexed_async_connection()
        .await
        .unwrap_or_else(|e| {
            panic!("Redis at {url} must be running ({e}): scripts/services.sh redis")
        })
}

/// `prefix` as a `SCAN MATCH` glob covering its keys (glob characters escaped).
fn pattern(prefix: &str) -> String {
    let mut p = String::with_capacity(prefix.len() + 2);
    for c in prefix.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            p.push('\\');
        }
        p.push(c);
    }
    p.push('*');
    p
}

async fn scan(
    conn: &mut redis::aio::MultiplexedConnection,
    prefix: &str,
) -> redis::RedisResult<Vec<String>> {
    let mut keys = Vec::new();
    let mut iter: redis::AsyncIter<'_, String> = conn.scan_match(pattern(prefix)).await?;
    while let Some(key) = iter.next_item().await {
        keys.push(key?);
    }
    Ok(keys)
}

/// Every key under `prefix` on the server at `url`; panics if the server does not answer.
pub async fn keys_under(url: &str, prefix: &str) -> Vec<String> {
    let mut conn = connection(url).await;
    scan(&mut conn, prefix)
        .await
        .unwrap_or_else(|e| panic!("SCAN {prefix}* on {url}: {e}"))
}

async fn try_delete(url: &str, prefix: &str) -> redis::RedisResult<()> {
    let mut conn = redis::Client::open(url)?
        .get_multiplexed_async_connection()
        .await?;
    let keys = scan(&mut conn, prefix).await?;
    for chunk in keys.chunks(500) {
        let _: () = conn.del(chunk).await?;
    }
    Ok(())
}

/// Deletes every key under `prefix` on the server at `url`; panics if the server does not answer.
pub async fn delete_prefix(url: &str, prefix: &str) {
    connection(url).await; // a clear panic when the server is down
    try_delete(url, prefix)
        .await
        .unwrap_or_else(|e| panic!("deleting {prefix}* on {url}: {e}"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_are_escaped() {
        assert_eq!(pattern("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:*");
    }
}
