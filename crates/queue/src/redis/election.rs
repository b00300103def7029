//! [`RedisLeaderElection`]: `SET key NX PX` plus an `INCR`ed fencing counter, in Lua.

use super::ms;
use async_trait::async_trait;
use hybridgrid_core::{ElectionError, FencingToken, LeaderElection, Leadership};
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, RedisError, Script};
use std::time::Duration;

/// Replies to lease scripts must come well within a lease's ttl to be useful; a slower reply is an
/// error, and the [`crate::Elector`] treats the lease as lost once its local deadline passes.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);

/// A failure talking to Redis, naming the operation and the lease key.
#[derive(Debug, thiserror::Error)]
#[error("{op} on leader lease {key:?}: {source}")]
struct RedisElectionFailure {
    op: &'static str,
    key: String,
    #[source]
    source: RedisError,
}

/// A [`LeaderElection`] on Redis or Valkey.
///
/// The lease is the string key `key`, holding `<token>:<holder>` with a `PX` expiry; the fencing
/// counter is `<key>:fence`, incremented on every successful acquire, so tokens only grow.
/// Renew and release compare the whole value, so a deposed holder can neither extend nor delete
/// its successor's lease. Connects lazily: the first call reaches the server.
#[derive(Clone)]
pub struct RedisLeaderElection {
    conn: ConnectionManager,
    key: String,
    fence_key: String,
    acquire: Script,
    renew: Script,
    release: Script,
}

impl std::fmt::Debug for RedisLeaderElection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisLeaderElection")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl RedisLeaderElection {
    /// An election for the lease `key` (e.g. `coordinator:leader`) on the server at `url`.
    /// Fails only on a malformed URL; the connection is made on first use.
    pub fn new(url: &str, key: impl Into<String>) -> Result<Self, ElectionError> {
        let key = key.into();
        let failure = |op, source| backend(op, &key, source);
        let client = Client::open(url).map_err(|e| failure("parse url", e))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_millis(500))
            // Fail a call fast when the server is down; callers retry per `retry()`.
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| failure("connect", e))?;
        Ok(Self {
            conn,
            fence_key: format!("{key}:fence"),
            key,
            acquire: Script::new(include_str!("acquire.lua")),
            renew: Script::new(include_str!("renew.lua")),
            release: Script::new(include_str!("release.lua")),
        })
    }

    /// The lease key.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// The fencing counter's key (`<lease key>:fence`): pass it to
    /// [`hybridgrid_core::Queue::enqueue_fenced`] on a `RedisQueue` of the same server, so the
    /// token check and the enqueue are one script.
    pub fn fence_key(&self) -> &str {
        &self.fence_key
    }

    fn failure(&self, op: &'static str, source: RedisError) -> ElectionError {
        backend(op, &self.key, source)
    }
}

fn backend(op: &'static str, key: &str, source: RedisError) -> ElectionError {
    ElectionError::Backend {
        backend: "redis",
        source: Box::new(RedisElectionFailure {
            op,
            key: key.to_owned(),
            source,
        }),
    }
}

fn value(lease: &Leadership) -> String {
    format!("{}:{}", lease.token, lease.holder)
}

#[async_trait]
impl LeaderElection for RedisLeaderElection {
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, ElectionError> {
        let mut conn = self.conn.clone();
        let token: Option<u64> = self
            .acquire
            .key(&self.key)
            .key(&self.fence_key)
            .arg(holder)
            .arg(ms(ttl).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("try_acquire", e))?;
        Ok(token.map(|t| Leadership {
            holder: holder.to_owned(),
            token: FencingToken(t),
            ttl,
        }))
    }

    async fn renew(&self, lease: &Leadership) -> Result<bool, ElectionError> {
        let mut conn = self.conn.clone();
        let held: i64 = self
            .renew
            .key(&self.key)
            .arg(value(lease))
            .arg(ms(lease.ttl).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("renew", e))?;
        Ok(held == 1)
    }

    async fn release(&self, lease: &Leadership) -> Result<(), ElectionError> {
        let mut conn = self.conn.clone();
        self.release
            .key(&self.key)
            .arg(value(lease))
            .invoke_async::<i64>(&mut conn)
            .await
            .map_err(|e| self.failure("release", e))?;
        Ok(())
    }

    async fn check_fence(&self, token: FencingToken) -> Result<(), ElectionError> {
        let mut conn = self.conn.clone();
        let current: Option<u64> = redis::cmd("GET")
            .arg(&self.fence_key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failure("check_fence", e))?;
        let current = FencingToken(current.unwrap_or(0));
        if token == current {
            Ok(())
        } else {
            Err(ElectionError::Fenced {
                presented: token,
                current,
            })
        }
    }
}
