//! The [`Cache`] seam: content-addressed blobs keyed by a 32-byte digest.

use crate::error::{BoxError, Retry};
use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// A 32-byte content digest (BLAKE3 in hybridgrid's caches), shown as lowercase hex.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        use std::fmt::Write;
        self.0.iter().fold(String::with_capacity(64), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl fmt::Display for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Digest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Digest({})", self.to_hex())
    }
}

impl FromStr for Digest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.len() != 64 || !s.is_ascii() {
            return Err(format!("digest {s:?} is not 64 hex characters"));
        }
        let mut out = [0u8; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16)
                .map_err(|_| format!("digest {s:?} is not hex"))?;
        }
        Ok(Digest(out))
    }
}

/// Counters of a cache tier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CacheStats {
    /// Lookups that found an entry.
    pub hits: u64,
    /// Lookups that found none.
    pub misses: u64,
    /// Entries written.
    pub writes: u64,
    /// Entries evicted to stay under the size bound.
    pub evictions: u64,
    /// Entries found corrupt and dropped.
    pub corrupt: u64,
    /// Entries refused because their keyed MAC did not verify (forged, altered, written with
    /// another secret, or unsigned where a signature is required): never served, each a miss.
    #[serde(default)]
    pub forged: u64,
    /// Bytes stored now.
    pub bytes_stored: u64,
    /// Entries stored now.
    pub entries: u64,
}

impl CacheStats {
    /// hits / (hits + misses), or 0 with no lookups.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// Errors of a [`Cache`].
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// The cache directory or file cannot be used.
    #[error("cache path {path}: {source}")]
    Io {
        /// The path concerned.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The entry is larger than the cache may hold.
    #[error("entry of {size} bytes exceeds the cache bound of {max} bytes")]
    TooLarge {
        /// Entry size.
        size: u64,
        /// The bound.
        max: u64,
    },
    /// This client is configured read-only for the tier (`read_only`), so it never writes.
    #[error("the {backend} cache tier is read-only for this client")]
    ReadOnly {
        /// Backend name.
        backend: &'static str,
    },
    /// The backend failed.
    #[error("{backend} cache backend failed: {source}")]
    Backend {
        /// Backend name.
        backend: &'static str,
        /// The client's error.
        #[source]
        source: BoxError,
    },
}

impl CacheError {
    /// Whether the operation is worth repeating.
    pub fn retry(&self) -> Retry {
        match self {
            CacheError::Io { .. } | CacheError::TooLarge { .. } | CacheError::ReadOnly { .. } => {
                Retry::Never
            }
            CacheError::Backend { .. } => Retry::After(Duration::from_millis(250)),
        }
    }
}

/// Content-addressed blob storage. `get` never returns bytes other than those `put` under the key:
/// an entry that fails its integrity check is dropped and reported as a miss.
#[async_trait]
pub trait Cache: Send + Sync + 'static {
    /// The blob under `key`, if present and intact.
    async fn get(&self, key: &Digest) -> Result<Option<Bytes>, CacheError>;
    /// Stores `value` under `key` atomically (readers see the whole blob or none).
    async fn put(&self, key: &Digest, value: Bytes) -> Result<(), CacheError>;
    /// Removes every entry.
    async fn clear(&self) -> Result<(), CacheError>;
    /// Counters since start, with current size.
    fn stats(&self) -> CacheStats;
}
