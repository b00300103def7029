//! [`RedisQueue`]: priority lists, a lease ZSET and dead letters, every step one Lua script.

use super::{MAX_MS, ms};
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::spec::redact;
use hybridgrid_core::{
    Claim, DeadLetter, Depths, Enqueued, LeaseToken, NewWork, Priority, Queue, QueueError, WorkId,
    WorkerId,
};
use parking_lot::Mutex;
use redis::aio::{ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::{AsyncConnectionConfig, Client, RedisError, Script, Value};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// How long a reply may take on the shared connection. Every queue script is short, so this only
/// bounds how long a caller waits on a dead server; blocking waits use their own connections.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long (re)connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest single block on the notification list before the claim script runs again; a safety net,
/// since every path that makes an item claimable also pushes a notification.
const MAX_BLOCK: Duration = Duration::from_secs(1);
/// Blocking connections kept for reuse (one per concurrently waiting claimer).
const MAX_IDLE_BLOCKERS: usize = 16;

macro_rules! queue_script {
    ($file:literal) => {
        Script::new(concat!(
            include_str!("common.lua"),
            "\n",
            include_str!($file)
        ))
    };
}

/// A failure talking to Redis, naming the operation and the queue's key prefix.
#[derive(Debug, thiserror::Error)]
enum RedisQueueFailure {
    #[error("{op} on queue prefix {prefix:?}: {source}")]
    Command {
        op: &'static str,
        prefix: String,
        #[source]
        source: RedisError,
    },
    #[error("{op} on queue prefix {prefix:?}: no reply within {after:?}")]
    Timeout {
        op: &'static str,
        prefix: String,
        after: Duration,
    },
    #[error("{op} on queue prefix {prefix:?}: unexpected reply {reply}")]
    Reply {
        op: &'static str,
        prefix: String,
        reply: String,
    },
}

struct Scripts {
    enqueue: Script,
    claim: Script,
    ack: Script,
    nack: Script,
    extend: Script,
    depths: Script,
    dead_letters: Script,
}

impl Scripts {
    fn new() -> Self {
        Self {
            enqueue: queue_script!("enqueue.lua"),
            claim: queue_script!("claim.lua"),
            ack: queue_script!("ack.lua"),
            nack: queue_script!("nack.lua"),
            extend: queue_script!("extend.lua"),
            depths: queue_script!("depths.lua"),
            dead_letters: queue_script!("dead_letters.lua"),
        }
    }
}

struct Inner {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    scripts: Scripts,
    /// Idle connections with no response timeout, used only for `BLPOP` on the notification list.
    blockers: Mutex<Vec<MultiplexedConnection>>,
}

/// A [`Queue`] on Redis or Valkey: at-least-once, priorities, leases, delays, dead letters.
///
/// Keys (all under `prefix`, which may be empty; use a hash tag such as `{hg}:` to keep them in one
/// Redis Cluster slot):
///
/// | key | type | holds |
/// |---|---|---|
/// | `work:queue:high`, `:normal`, `:low` | list | ids ready to claim, oldest first |
/// | `work:inflight` | zset | leased ids, scored by lease deadline (ms since the epoch) |
/// | `work:delayed` | zset | ids waiting for a delay, scored by due time |
/// | `work:item:<id>` | hash | `payload`, `attempts`, `max_attempts`, `priority`, `idem`, `token`, `worker`, `reason` |
/// | `work:dead` | list | dead-lettered ids, oldest first |
/// | `work:idempotency` | hash | idempotency key → id, while the item is queued, leased or dead |
/// | `work:notify` | list | wake-ups for blocked claimers (bounded) |
/// | `work:backoff` | hash | per-key backoff deadline, ms since the epoch ([`RedisQueue::set_backoff`]) |
///
/// Every operation is one `EVALSHA` of a Lua script, so it is atomic and one round trip. Time comes
/// from the Redis server's clock. `claim`, `depths` and `dead_letters` first return due delayed
/// items and expired leases to their lanes (dead-lettering those out of attempts), so no separate
/// reaper is needed; `ack`, `nack` and `extend` treat a lease past its deadline as lost.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

impl RedisQueue {
    /// Connects to `url` (`redis://host:6379/0`, `rediss://...`) and uses keys under `prefix`
    /// (empty for the guide's plain `work:queue:high` names).
    ///
    /// A malformed URL is [`QueueError::Invalid`]; an unreachable server is a retryable
    /// [`QueueError::Backend`].
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, QueueError> {
        let prefix = prefix.into();
        let client = Client::open(url)
            .map_err(|e| QueueError::Invalid(format!("redis url {:?}: {e}", redact(url))))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_max_delay(Duration::from_millis(500))
            // Fail a call fast when the server is down; callers retry per `retry()`.
            .set_number_of_retries(2);
        let conn = ConnectionManager::new_with_config(client.clone(), config)
            .await
            .map_err(|source| {
                backend(RedisQueueFailure::Command {
                    op: "connect",
                    prefix: format!("{prefix} at {}", redact(url)),
                    source,
                })
            })?;
        Ok(Self {
            inner: Arc::new(Inner {
                client,
                conn,
                prefix,
                scripts: Scripts::new(),
                blockers: Mutex::new(Vec::new()),
            }),
        })
    }

    /// The key prefix this queue uses.
    pub fn prefix(&self) -> &str {
        &self.inner.prefix
    }

    /// When the backoff recorded for `key` (an agent, a target) ends, if it is still in the future.
    pub async fn backoff_until(&self, key: &str) -> Result<Option<SystemTime>, QueueError> {
        let mut conn = self.inner.conn.clone();
        let until: Option<u64> = redis::cmd("HGET")
            .arg(self.backoff_key())
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failure("backoff_until", e))?;
        Ok(until
            .map(|ms| UNIX_EPOCH + Duration::from_millis(ms))
            .filter(|t| *t > SystemTime::now()))
    }

    /// Records that `key` is backed off until `until` (stored as ms since the epoch in
    /// `{prefix}work:backoff`, so `HGETALL work:backoff` shows it).
    pub async fn set_backoff(&self, key: &str, until: SystemTime) -> Result<(), QueueError> {
        let since_epoch = until.duration_since(UNIX_EPOCH).unwrap_or_default();
        let mut conn = self.inner.conn.clone();
        redis::cmd("HSET")
            .arg(self.backoff_key())
            .arg(key)
            .arg(since_epoch.as_millis() as u64)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.failure("set_backoff", e))
    }

    /// Clears the backoff of `key`.
    pub async fn clear_backoff(&self, key: &str) -> Result<(), QueueError> {
        let mut conn = self.inner.conn.clone();
        redis::cmd("HDEL")
            .arg(self.backoff_key())
            .arg(key)
            .query_async::<()>(&mut conn)
            .await
            .map_err(|e| self.failure("clear_backoff", e))
    }

    fn backoff_key(&self) -> String {
        format!("{}work:backoff", self.inner.prefix)
    }

    fn notify_key(&self) -> String {
        format!("{}work:notify", self.inner.prefix)
    }

    fn failure(&self, op: &'static str, source: RedisError) -> QueueError {
        backend(RedisQueueFailure::Command {
            op,
            prefix: self.inner.prefix.clone(),
            source,
        })
    }

    fn bad_reply(&self, op: &'static str, reply: &Value) -> QueueError {
        backend(RedisQueueFailure::Reply {
            op,
            prefix: self.inner.prefix.clone(),
            reply: format!("{reply:?}"),
        })
    }

    /// Runs a lease script (`ack`, `nack`, `extend`) and returns its integer reply.
    async fn lease_op(
        &self,
        op: &'static str,
        script: &Script,
        token: &LeaseToken,
        extra: Option<u64>,
    ) -> Result<i64, QueueError> {
        let lost = || QueueError::LeaseLost {
            token: token.clone(),
        };
        // Tokens are `<work id>.<nonce>`; anything else was never issued by this queue.
        let (id, _) = token.as_str().rsplit_once('.').ok_or_else(lost)?;
        let mut inv = script.prepare_invoke();
        inv.arg(&self.inner.prefix).arg(id).arg(token.as_str());
        if let Some(x) = extra {
            inv.arg(x);
        }
        let mut conn = self.inner.conn.clone();
        let n: i64 = inv
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure(op, e))?;
        if n == 0 { Err(lost()) } else { Ok(n) }
    }

    /// One run of the claim script: a claim, or how long until something comes due.
    async fn try_claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
    ) -> Result<Result<Claim, Option<Duration>>, QueueError> {
        let mut conn = self.inner.conn.clone();
        let reply: Value = self
            .inner
            .scripts
            .claim
            .arg(&self.inner.prefix)
            .arg(uuid::Uuid::new_v4().simple().to_string())
            .arg(worker.as_str())
            .arg(ms(lease).max(1))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("claim", e))?;
        match &reply {
            Value::Int(n) if *n < 0 => Ok(Err(None)),
            Value::Int(n) => Ok(Err(Some(Duration::from_millis(*n as u64)))),
            Value::Array(f) if f.len() == 6 => {
                let claim = (|| {
                    Some(Claim {
                        id: WorkId::new(text(&f[0])?),
                        token: LeaseToken::new(text(&f[1])?),
                        attempt: u32::try_from(int(&f[2])?).ok()?,
                        max_attempts: u32::try_from(int(&f[3])?).ok()?,
                        priority: text(&f[4])?.parse::<Priority>().ok()?,
                        payload: blob(&f[5])?,
                    })
                })();
                claim.map(Ok).ok_or_else(|| self.bad_reply("claim", &reply))
            }
            _ => Err(self.bad_reply("claim", &reply)),
        }
    }

    /// A connection for `BLPOP`, and whether it came from the idle pool (and so may be stale).
    async fn blocker(&self) -> Result<(MultiplexedConnection, bool), QueueError> {
        if let Some(conn) = self.inner.blockers.lock().pop() {
            return Ok((conn, true));
        }
        let config = AsyncConnectionConfig::new()
            .set_response_timeout(None)
            .set_connection_timeout(Some(CONNECT_TIMEOUT));
        let conn = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.failure("connect for blocking claim", e))?;
        Ok((conn, false))
    }

    fn return_blocker(&self, conn: MultiplexedConnection) {
        let mut idle = self.inner.blockers.lock();
        if idle.len() < MAX_IDLE_BLOCKERS {
            idle.push(conn);
        }
    }

    /// Blocks on the notification list for up to `timeout`. The connection is returned to the pool
    /// only when the `BLPOP` completed; a cancelled or failed wait drops it (a reply may still be
    /// pending). A pooled connection that turns out dead (the server restarted, or killed it
    /// while idle) is replaced once; the reply itself is bounded by `timeout` plus
    /// [`RESPONSE_TIMEOUT`], since these connections have no response timeout of their own.
    async fn wait_notified(&self, timeout: Duration) -> Result<(), QueueError> {
        let block = timeout.max(Duration::from_millis(1));
        let (mut conn, mut pooled) = self.blocker().await?;
        loop {
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(self.notify_key()).arg(block.as_secs_f64());
            let blpop = cmd.query_async::<Option<(String, String)>>(&mut conn);
            let limit = block + RESPONSE_TIMEOUT;
            match tokio::time::timeout(limit, blpop).await {
                Ok(Ok(woke)) => {
                    debug!(prefix = %self.inner.prefix, notified = woke.is_some(), "claim_wait_done");
                    self.return_blocker(conn);
                    return Ok(());
                }
                Ok(Err(e)) if pooled && (e.is_io_error() || e.is_connection_dropped()) => {
                    debug!(prefix = %self.inner.prefix, error = %e, "stale_blocking_connection");
                    (conn, pooled) = self.blocker().await?;
                }
                Ok(Err(e)) => return Err(self.failure("claim (BLPOP)", e)),
                Err(_) => {
                    return Err(backend(RedisQueueFailure::Timeout {
                        op: "claim (BLPOP)",
                        prefix: self.inner.prefix.clone(),
                        after: limit,
                    }));
                }
            }
        }
    }
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError> {
        if work.max_attempts == 0 {
            return Err(QueueError::Invalid(format!(
                "max_attempts must be at least 1 (idempotency key {:?})",
                work.idempotency_key
            )));
        }
        let id = WorkId::random();
        let mut conn = self.inner.conn.clone();
        let reply: (i64, String) = self
            .inner
            .scripts
            .enqueue
            .arg(&self.inner.prefix)
            .arg(id.as_str())
            .arg(work.payload.as_ref())
            .arg(work.priority.as_str())
            .arg(work.idempotency_key.as_deref().unwrap_or(""))
            .arg(work.max_attempts)
            .arg(ms(work.delay))
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("enqueue", e))?;
        Ok(match reply {
            (1, id) => Enqueued::Created(WorkId::new(id)),
            (_, existing) => Enqueued::Duplicate(WorkId::new(existing)),
        })
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>, QueueError> {
        let deadline = Instant::now() + wait.min(Duration::from_millis(MAX_MS));
        loop {
            let next_due = match self.try_claim(worker, lease).await? {
                Ok(claim) => return Ok(Some(claim)),
                Err(next_due) => next_due,
            };
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            let mut block = (deadline - now).min(MAX_BLOCK);
            if let Some(due) = next_due {
                // The server rounds to ms; wake just after the item comes due.
                block = block.min(due + Duration::from_millis(1));
            }
            self.wait_notified(block).await?;
        }
    }

    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError> {
        let scripts = &self.inner.scripts;
        self.lease_op("ack", &scripts.ack, token, None).await?;
        Ok(())
    }

    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError> {
        let scripts = &self.inner.scripts;
        let n = self
            .lease_op("nack", &scripts.nack, token, Some(ms(retry_after)))
            .await?;
        if n == 2 {
            debug!(prefix = %self.inner.prefix, %token, "dead_lettered");
        }
        Ok(())
    }

    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        let scripts = &self.inner.scripts;
        self.lease_op("extend", &scripts.extend, token, Some(ms(by).max(1)))
            .await?;
        Ok(())
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        let mut conn = self.inner.conn.clone();
        let d: [u64; 6] = self
            .inner
            .scripts
            .depths
            .arg(&self.inner.prefix)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("depths", e))?;
        Ok(Depths {
            ready: [d[0], d[1], d[2]],
            delayed: d[3],
            in_flight: d[4],
            dead: d[5],
        })
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut conn = self.inner.conn.clone();
        let reply: Vec<Value> = self
            .inner
            .scripts
            .dead_letters
            .arg(&self.inner.prefix)
            .arg(limit)
            .invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure("dead_letters", e))?;
        reply
            .chunks(4)
            .map(|f| {
                let dead = (|| {
                    Some(DeadLetter {
                        id: WorkId::new(text(f.first()?)?),
                        payload: blob(f.get(1)?)?,
                        attempts: u32::try_from(int(f.get(2)?)?).ok()?,
                        reason: text(f.get(3)?)?,
                    })
                })();
                dead.ok_or_else(|| self.bad_reply("dead_letters", &Value::Array(f.to_vec())))
            })
            .collect()
    }
}

fn backend(failure: RedisQueueFailure) -> QueueError {
    QueueError::Backend {
        backend: "redis",
        source: Box::new(failure),
    }
}

fn blob(v: &Value) -> Option<Bytes> {
    match v {
        Value::BulkString(b) => Some(Bytes::copy_from_slice(b)),
        Value::SimpleString(s) => Some(Bytes::copy_from_slice(s.as_bytes())),
        _ => None,
    }
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}

fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        _ => text(v)?.parse().ok(),
    }
}
