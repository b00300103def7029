//! [`TieredCache`]: a fast local tier in front of a shared one.

use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::{Cache, CacheError, CacheStats, Digest};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::sync::Semaphore;
use tokio_util::task::TaskTracker;

/// How many shared-tier puts may run in the background at once; a `put` waits for a slot beyond.
const MAX_BACKGROUND_PUTS: usize = 64;

/// Counters of a [`TieredCache`], per tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierStats {
    /// The local tier's own [`Cache::stats`] (hits/misses there are this cache's first lookups).
    pub local: CacheStats,
    /// The shared tier's own [`Cache::stats`] (looked up only after a local miss).
    pub shared: CacheStats,
    /// Local-tier operations that failed (logged, then skipped).
    pub local_errors: u64,
    /// Shared-tier operations that failed (logged, then skipped), background puts included.
    pub shared_errors: u64,
    /// Shared hits copied into the local tier.
    pub backfills: u64,
}

/// Two caches used as one: `get` asks `local`, then `shared` (copying a shared hit into `local`);
/// `put` writes both.
///
/// - The shared put runs in the background by default, so a compile does not wait on the network;
///   [`TieredCache::flush`] waits for the pending ones, and [`TieredCache::with_background_puts`]
///   turns this off. At most 64 background puts are in flight; beyond, `put` waits for one to end.
/// - A tier that fails is logged, counted in [`TierStats`] and skipped (a cache outage slows a build,
///   it does not break it); `get` and `put` return `Err` only when both tiers failed, `clear` when either did.
/// - [`Cache::stats`] counts lookups through this cache: `hits` = answered by either tier, `misses` =
///   by neither, `writes` = puts; `evictions`, `bytes_stored` and `entries` are the local tier's,
///   `corrupt` the sum of both. Per-tier figures come from [`TieredCache::tier_stats`].
pub struct TieredCache {
    local: Arc<dyn Cache>,
    shared: Arc<dyn Cache>,
    background: bool,
    tracker: TaskTracker,
    slots: Arc<Semaphore>,
    flushing: tokio::sync::Mutex<()>,
    counters: Arc<Counters>,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    writes: AtomicU64,
    local_errors: AtomicU64,
    shared_errors: AtomicU64,
    backfills: AtomicU64,
}

impl TieredCache {
    /// `local` in front of `shared`, with background shared puts.
    pub fn new(local: Arc<dyn Cache>, shared: Arc<dyn Cache>) -> Self {
        TieredCache {
            local,
            shared,
            background: true,
            tracker: TaskTracker::new(),
            slots: Arc::new(Semaphore::new(MAX_BACKGROUND_PUTS)),
            flushing: tokio::sync::Mutex::new(()),
            counters: Arc::default(),
        }
    }

    /// Whether `put` returns before the shared tier has stored the entry (default `true`).
    pub fn with_background_puts(mut self, background: bool) -> Self {
        self.background = background;
        self
    }

    /// Waits until every background shared put started so far has finished.
    pub async fn flush(&self) {
        let _one_at_a_time = self.flushing.lock().await;
        self.tracker.close();
        self.tracker.wait().await;
        self.tracker.reopen();
    }

    /// Per-tier counters, for metrics.
    pub fn tier_stats(&self) -> TierStats {
        TierStats {
            local: self.local.stats(),
            shared: self.shared.stats(),
            local_errors: self.counters.local_errors.load(Relaxed),
            shared_errors: self.counters.shared_errors.load(Relaxed),
            backfills: self.counters.backfills.load(Relaxed),
        }
    }
}

#[async_trait]
impl Cache for TieredCache {
    async fn get(&self, key: &Digest) -> Result<Option<Bytes>, CacheError> {
        let c = &self.counters;
        let local_failed = match self.local.get(key).await {
            Ok(Some(value)) => {
                c.hits.fetch_add(1, Relaxed);
                return Ok(Some(value));
            }
            Ok(None) => false,
            Err(e) => {
                c.local_errors.fetch_add(1, Relaxed);
                tracing::warn!(tier = "local", key = %key, error = %e, "cache tier get failed; trying the shared tier");
                true
            }
        };
        match self.shared.get(key).await {
            Ok(Some(value)) => {
                c.hits.fetch_add(1, Relaxed);
                if !local_failed {
                    match self.local.put(key, value.clone()).await {
                        Ok(()) => {
                            c.backfills.fetch_add(1, Relaxed);
                        }
                        Err(e) => {
                            c.local_errors.fetch_add(1, Relaxed);
                            tracing::warn!(tier = "local", key = %key, error = %e, "cache backfill failed");
                        }
                    }
                }
                Ok(Some(value))
            }
            Ok(None) => {
                c.misses.fetch_add(1, Relaxed);
                Ok(None)
            }
            Err(e) if local_failed => {
                c.shared_errors.fetch_add(1, Relaxed);
                Err(e)
            }
            Err(e) => {
                c.shared_errors.fetch_add(1, Relaxed);
                c.misses.fetch_add(1, Relaxed);
                tracing::warn!(tier = "shared", key = %key, error = %e, "cache tier get failed; counted as a miss");
                Ok(None)
            }
        }
    }

    async fn put(&self, key: &Digest, value: Bytes) -> Result<(), CacheError> {
        let c = &self.counters;
        let local = self.local.put(key, value.clone()).await;
        if self.background && local.is_ok() {
            let slot =
                self.slots
                    .clone()
                    .acquire_owned()
                    .await
                    .map_err(|e| CacheError::Backend {
                        backend: "tiered",
                        source: Box::new(e),
                    })?;
            let shared = self.shared.clone();
            let counters = self.counters.clone();
            let key = *key;
            self.tracker.spawn(async move {
                if let Err(e) = shared.put(&key, value).await {
                    counters.shared_errors.fetch_add(1, Relaxed);
                    tracing::warn!(tier = "shared", key = %key, error = %e, "background cache put failed");
                }
                drop(slot);
            });
            c.writes.fetch_add(1, Relaxed);
            return Ok(());
        }
        // Synchronous shared put (also when the local tier failed, so the entry lands somewhere).
        let shared = self.shared.put(key, value).await;
        match (local, shared) {
            (Err(l), Err(s)) => {
                c.local_errors.fetch_add(1, Relaxed);
                c.shared_errors.fetch_add(1, Relaxed);
                tracing::warn!(tier = "local", key = %key, error = %l, "cache tier put failed");
                Err(s)
            }
            (Err(e), Ok(())) => {
                c.local_errors.fetch_add(1, Relaxed);
                c.writes.fetch_add(1, Relaxed);
                tracing::warn!(tier = "local", key = %key, error = %e, "cache tier put failed");
                Ok(())
            }
            (Ok(()), Err(e)) => {
                c.shared_errors.fetch_add(1, Relaxed);
                c.writes.fetch_add(1, Relaxed);
                tracing::warn!(tier = "shared", key = %key, error = %e, "cache tier put failed");
                Ok(())
            }
            (Ok(()), Ok(())) => {
                c.writes.fetch_add(1, Relaxed);
                Ok(())
            }
        }
    }

    async fn clear(&self) -> Result<(), CacheError> {
        // Pending background puts would otherwise land after the clear.
        self.flush().await;
        // Both tiers are cleared even if one fails; the first failure is returned, since entries remain.
        let local = self.local.clear().await;
        let shared = self.shared.clear().await;
        if local.is_err() {
            self.counters.local_errors.fetch_add(1, Relaxed);
        }
        if shared.is_err() {
            self.counters.shared_errors.fetch_add(1, Relaxed);
        }
        local.and(shared)
    }

    fn stats(&self) -> CacheStats {
        let local = self.local.stats();
        let shared = self.shared.stats();
        CacheStats {
            hits: self.counters.hits.load(Relaxed),
            misses: self.counters.misses.load(Relaxed),
            writes: self.counters.writes.load(Relaxed),
            evictions: local.evictions,
            corrupt: local.corrupt.saturating_add(shared.corrupt),
            forged: local.forged.saturating_add(shared.forged),
            bytes_stored: local.bytes_stored,
            entries: local.entries,
        }
    }
}
