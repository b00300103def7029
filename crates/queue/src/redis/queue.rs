//! [`RedisQueue`]: priority lists, a lease ZSET and dead letters, every step one Lua script.

use super::conn::{self, Blocker, Conn, MAX_BLOCK, RESPONSE_TIMEOUT, Server};
use super::reply::{self, RedisQueueFailure, backend};
use super::{MAX_MS, ms};
use async_trait::async_trait;
use hybridgrid_core::spec::redact;
use hybridgrid_core::{
    AckedAndClaimed, Claim, Consumer, DEFAULT_DEAD_LETTER_LIMIT, DeadLetter, Depths, Enqueued,
    FencingToken, LeaseToken, NewWork, Queue, QueueError, WorkId, WorkerId,
};
use parking_lot::Mutex;
use redis::{Client, RedisError, Script, ScriptInvocation, Value};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::debug;

/// Blocking connections kept for reuse (one per concurrently waiting claimer).
const MAX_IDLE_BLOCKERS: usize = 16;
/// Most items one script claims or enqueues (bounds the script's run time and its stack).
pub(crate) const MAX_BATCH: usize = 1000;
/// Consumers not seen for this long are dropped from the consumers hash by `consumers()`.
const FORGET_CONSUMER: Duration = Duration::from_secs(24 * 3600);

/// A queue script: the dead-letter limit, `common.lua`, then the script itself. (The limit is part
/// of the code rather than an argument, so every script that may dead-letter enforces it.)
macro_rules! queue_script {
    ($dead_limit:expr, $file:literal) => {
        Script::new(&format!(
            "local DEAD_LIMIT = {}\n{}\n{}",
            $dead_limit,
            include_str!("common.lua"),
            include_str!($file)
        ))
    };
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
    fn new(dead_limit: usize) -> Self {
        let n = dead_limit.max(1);
        Self {
            enqueue: queue_script!(n, "enqueue.lua"),
            claim: queue_script!(n, "claim.lua"),
            ack: queue_script!(n, "ack.lua"),
            nack: queue_script!(n, "nack.lua"),
            extend: queue_script!(n, "extend.lua"),
            depths: queue_script!(n, "depths.lua"),
            dead_letters: queue_script!(n, "dead_letters.lua"),
        }
    }
}

/// The keys of one queue, in the order every script declares them (see `common.lua`).
const KEY_SUFFIXES: [&str; 10] = [
    "work:queue:high",
    "work:queue:normal",
    "work:queue:low",
    "work:inflight",
    "work:delayed",
    "work:dead",
    "work:idempotency",
    "work:notify",
    "work:items",
    "work:consumers",
];
const NOTIFY: usize = 7;
const CONSUMERS: usize = 9;

struct Inner {
    server: Server,
    conn: Conn,
    prefix: String,
    keys: [String; 10],
    /// Idle connections used only for `BLPOP` on the notification list.
    blockers: Mutex<Vec<Blocker>>,
    /// Lease tokens are `<id>.<nonce>`; nonces are this process's random base plus a counter.
    nonce_base: u64,
    nonce: AtomicU64,
}

/// A [`Queue`] on Redis, Valkey or a Redis Cluster: at-least-once, priorities (optionally aging),
/// leases, delays, dead letters, batch claims and per-consumer liveness.
///
/// Keys (all under `prefix`, which may be empty; on a Cluster it must contain a hash tag such as
/// `{hg}:` so that every key of one queue is in one slot):
///
/// | key | type | holds |
/// |---|---|---|
/// | `work:queue:high`, `:normal`, `:low` | list | ids ready to claim, oldest first |
/// | `work:inflight` | zset | leased ids, scored by lease deadline (ms since the epoch) |
/// | `work:delayed` | zset | ids waiting for a delay, scored by due time |
/// | `work:items` | hash | `<id>` → payload, `<id>:m` → `max_attempts\|priority\|idempotency key`, `<id>:s` → `attempts\|ready ms\|token\|worker`, `<id>:x` → dead-letter reason |
/// | `work:dead` | list | dead-lettered ids, oldest first, at most the dead-letter limit |
/// | `work:idempotency` | hash | idempotency key → id, while the item is queued, leased or dead |
/// | `work:notify` | list | wake-ups for blocked claimers (bounded) |
/// | `work:consumers` | hash | worker → when it last ran a claim (ms since the epoch) |
/// | `work:backoff` | hash | per-key backoff deadline, ms since the epoch ([`RedisQueue::set_backoff`]) |
///
/// Every operation is one `EVALSHA` of a Lua script that declares every key it touches, so it is
/// atomic, one round trip and Cluster-safe. Time comes from the Redis server's clock. Claims first
/// return due delayed items and expired leases to their lanes (dead-lettering those out of
/// attempts), so no separate reaper is needed; `ack`, `nack` and `extend` treat a lease past its
/// deadline as lost. Concurrent calls share one multiplexed connection, so they are pipelined.
///
/// Cloning is cheap and shares the connection.
#[derive(Clone)]
pub struct RedisQueue {
    inner: Arc<Inner>,
    /// Priority aging step in ms (0: strict priorities).
    aging_ms: u64,
    /// The scripts, built for this handle's dead-letter limit.
    scripts: Arc<Scripts>,
}

impl std::fmt::Debug for RedisQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisQueue")
            .field("prefix", &self.inner.prefix)
            .field("aging_ms", &self.aging_ms)
            .finish_non_exhaustive()
    }
}

/// The hash tag of a key (what Redis Cluster hashes), if it has one.
pub(crate) fn hash_tag(key: &str) -> Option<&str> {
    let open = key.find('{')?;
    let rest = &key[open + 1..];
    let close = rest.find('}')?;
    (close > 0).then(|| &rest[..close])
}

impl RedisQueue {
    /// Connects to `url` (`redis://host:6379/0`, `rediss://...`) and uses keys under `prefix`
    /// (empty for the guide's plain `work:queue:high` names).
    ///
    /// A malformed URL is [`QueueError::Invalid`]; an unreachable server is a retryable
    /// [`QueueError::Backend`].
    pub async fn connect(url: &str, prefix: impl Into<String>) -> Result<Self, QueueError> {
        let client = Client::open(url)
            .map_err(|e| QueueError::Invalid(format!("redis url {:?}: {e}", redact(url))))?;
        Self::open(Server::Single(client), prefix.into(), &redact(url)).await
    }

    /// Connects to a Redis Cluster through any of `nodes` (`redis://127.0.0.1:7101`, ...). The
    /// `prefix` must contain a hash tag (`{jobs}:`), so the queue's keys share one slot; without
    /// one this is [`QueueError::Invalid`].
    pub async fn connect_cluster(
        nodes: &[&str],
        prefix: impl Into<String>,
    ) -> Result<Self, QueueError> {
        let prefix = prefix.into();
        let shown = nodes
            .iter()
            .map(|n| redact(n))
            .collect::<Vec<_>>()
            .join(",");
        if hash_tag(&prefix).is_none() {
            return Err(QueueError::Invalid(format!(
                "queue prefix {prefix:?} on Redis Cluster {shown}: needs a hash tag such as \
                 \"{{jobs}}:\" so every key of the queue is in one slot"
            )));
        }
        let server = conn::cluster(nodes)
            .map_err(|e| QueueError::Invalid(format!("redis cluster nodes {shown}: {e}")))?;
        Self::open(server, prefix, &shown).await
    }

    async fn open(server: Server, prefix: String, shown: &str) -> Result<Self, QueueError> {
        let conn = server.connect().await.map_err(|source| {
            backend(RedisQueueFailure::Command {
                op: "connect",
                prefix: format!("{prefix} at {shown}"),
                source,
            })
        })?;
        let keys = KEY_SUFFIXES.map(|s| format!("{prefix}{s}"));
        let seed = uuid::Uuid::new_v4().as_u64_pair().0;
        Ok(Self {
            inner: Arc::new(Inner {
                server,
                conn,
                keys,
                prefix,
                blockers: Mutex::new(Vec::new()),
                nonce_base: seed,
                nonce: AtomicU64::new(0),
            }),
            aging_ms: 0,
            scripts: Arc::new(Scripts::new(DEFAULT_DEAD_LETTER_LIMIT)),
        })
    }

    /// Keeps at most `limit` dead letters (at least 1; default [`DEFAULT_DEAD_LETTER_LIMIT`]):
    /// when an item is dead-lettered past it, the oldest dead letter is dropped with its payload
    /// and idempotency key. Every handle on one queue should use the same limit.
    pub fn with_dead_letter_limit(mut self, limit: usize) -> Self {
        self.scripts = Arc::new(Scripts::new(limit));
        self
    }

    /// Turns on priority aging for this handle's claims: an item is claimed in the order of its
    /// ready time plus `aging` per lane below high (normal `+aging`, low `+2×aging`), ties to the
    /// higher lane. So a low item is never claimed after a high item that became ready more than
    /// `2 × aging` after it, however sustained the high load. Costs a few reads per claimed item.
    pub fn with_aging(mut self, aging: Duration) -> Self {
        self.aging_ms = ms(aging);
        self
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
            .arg(u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX))
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

    /// An invocation of `script` with every queue key declared.
    fn invocation<'a>(&self, script: &'a Script) -> ScriptInvocation<'a> {
        let mut inv = script.prepare_invoke();
        for key in &self.inner.keys {
            inv.key(key);
        }
        inv
    }

    async fn run<T: redis::FromRedisValue>(
        &self,
        op: &'static str,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let mut conn = self.inner.conn.clone();
        inv.invoke_async(&mut conn)
            .await
            .map_err(|e| self.failure(op, e))
    }

    fn nonce(&self) -> String {
        let n = self.inner.nonce.fetch_add(1, Ordering::Relaxed);
        format!("{:x}{n:x}", self.inner.nonce_base)
    }

    /// Runs a lease script (`nack`, `extend`) and returns its integer reply.
    async fn lease_op(
        &self,
        op: &'static str,
        script: &Script,
        token: &LeaseToken,
        extra: u64,
    ) -> Result<i64, QueueError> {
        let lost = || QueueError::LeaseLost {
            token: token.clone(),
        };
        let id = token_id(token).ok_or_else(lost)?;
        let mut inv = self.invocation(script);
        inv.arg(id).arg(token.as_str()).arg(extra);
        let n: i64 = self.run(op, &inv).await?;
        if n == 0 { Err(lost()) } else { Ok(n) }
    }

    /// Enqueues `work` (checked first), fenced by `fence` (key, token) when given.
    async fn enqueue_batch(
        &self,
        work: Vec<NewWork>,
        fence: Option<(&str, FencingToken)>,
    ) -> Result<Vec<Enqueued>, QueueError> {
        if let Some(bad) = work.iter().find(|w| w.max_attempts == 0) {
            return Err(QueueError::Invalid(format!(
                "max_attempts must be at least 1 (idempotency key {:?})",
                bad.idempotency_key
            )));
        }
        let mut out = Vec::with_capacity(work.len());
        for chunk in work.chunks(MAX_BATCH) {
            let mut inv = self.invocation(&self.scripts.enqueue);
            match fence {
                Some((key, token)) => {
                    inv.key(key).arg(token.0);
                }
                None => {
                    inv.arg("");
                }
            }
            inv.arg(chunk.len());
            for w in chunk {
                inv.arg(WorkId::random().as_str())
                    .arg(w.payload.as_ref())
                    .arg(w.priority.as_str())
                    .arg(w.idempotency_key.as_deref().unwrap_or(""))
                    .arg(w.max_attempts)
                    .arg(ms(w.delay));
            }
            let reply: Vec<Value> = self.run("enqueue", &inv).await?;
            if let (Some((fence, presented)), [Value::Int(-1), current]) = (fence, &reply[..]) {
                let current = reply::int(current)
                    .and_then(|c| u64::try_from(c).ok())
                    .ok_or_else(|| self.bad_reply("enqueue", &Value::Array(reply.clone())))?;
                return Err(QueueError::Fenced {
                    fence: fence.to_owned(),
                    presented,
                    current: FencingToken(current),
                });
            }
            if reply.len() != chunk.len() * 2 {
                return Err(self.bad_reply("enqueue", &Value::Array(reply)));
            }
            for pair in reply.chunks(2) {
                let id = reply::text(&pair[1])
                    .ok_or_else(|| self.bad_reply("enqueue", &Value::Array(pair.to_vec())))?;
                out.push(match reply::int(&pair[0]) {
                    Some(1) => Enqueued::Created(WorkId::new(id)),
                    _ => Enqueued::Duplicate(WorkId::new(id)),
                });
            }
        }
        Ok(out)
    }

    /// Acks `done` (when any) and claims up to `max`, waiting up to `wait` for the first item.
    async fn ack_claim(
        &self,
        done: &[LeaseToken],
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<AckedAndClaimed, QueueError> {
        let deadline = Instant::now()
            .checked_add(wait.min(Duration::from_millis(MAX_MS)))
            .unwrap_or_else(Instant::now);
        let max = max.min(MAX_BATCH);
        let mut out = AckedAndClaimed::default();
        let mut next_due = if done.is_empty() {
            if max == 0 {
                return Ok(out);
            }
            self.try_claim(worker, max, lease, &mut out.claims).await?
        } else {
            self.try_ack_claim(done, worker, max, lease, &mut out)
                .await?
        };
        if max == 0 {
            return Ok(out);
        }
        loop {
            if !out.claims.is_empty() {
                return Ok(out);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(out);
            }
            let mut block = (deadline - now).min(MAX_BLOCK);
            if let Some(due) = next_due {
                // The server rounds to ms; wake just after the item comes due.
                block = block.min(due + Duration::from_millis(1));
            }
            self.wait_notified(block).await?;
            next_due = self.try_claim(worker, max, lease, &mut out.claims).await?;
        }
    }

    /// One run of the claim script: claims appended to `claims`, or how long until something
    /// comes due.
    async fn try_claim(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        claims: &mut Vec<Claim>,
    ) -> Result<Option<Duration>, QueueError> {
        let mut inv = self.invocation(&self.scripts.claim);
        inv.arg(self.nonce())
            .arg(worker.as_str())
            .arg(max)
            .arg(ms(lease).max(1))
            .arg(self.aging_ms);
        let reply: Value = self.run("claim", &inv).await?;
        reply::claims(&reply, claims).ok_or_else(|| self.bad_reply("claim", &reply))
    }

    /// One run of the ack script, with `max` claims after the acks (0: none).
    async fn try_ack_claim(
        &self,
        done: &[LeaseToken],
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        out: &mut AckedAndClaimed,
    ) -> Result<Option<Duration>, QueueError> {
        let mut sent = Vec::with_capacity(done.len());
        let mut inv = self.invocation(&self.scripts.ack);
        let valid: Vec<(&str, &LeaseToken)> = done
            .iter()
            .filter_map(|t| match token_id(t) {
                Some(id) => Some((id, t)),
                None => {
                    out.lost.push(t.clone());
                    None
                }
            })
            .collect();
        inv.arg(valid.len());
        for (id, token) in &valid {
            inv.arg(*id).arg(token.as_str());
            sent.push(*token);
        }
        inv.arg(self.nonce())
            .arg(worker.as_str())
            .arg(max)
            .arg(ms(lease).max(1))
            .arg(self.aging_ms);
        let reply: Value = self.run("ack", &inv).await?;
        let parsed = (|| {
            let Value::Array(parts) = &reply else {
                return None;
            };
            let [Value::Array(lost), claims] = &parts[..] else {
                return None;
            };
            for pos in lost {
                let i = usize::try_from(reply::int(pos)?).ok()?;
                out.lost.push((*sent.get(i.checked_sub(1)?)?).clone());
            }
            reply::claims(claims, &mut out.claims)
        })();
        parsed.ok_or_else(|| self.bad_reply("ack", &reply))
    }

    /// A connection for `BLPOP`, and whether it came from the idle pool (and so may be stale).
    async fn blocker(&self) -> Result<(Blocker, bool), QueueError> {
        if let Some(conn) = self.inner.blockers.lock().pop() {
            return Ok((conn, true));
        }
        let conn = self
            .inner
            .server
            .blocker()
            .await
            .map_err(|e| self.failure("connect for blocking claim", e))?;
        Ok((conn, false))
    }

    fn return_blocker(&self, conn: Blocker) {
        let mut idle = self.inner.blockers.lock();
        if idle.len() < MAX_IDLE_BLOCKERS {
            idle.push(conn);
        }
    }

    /// Blocks on the notification list for up to `timeout`. The connection is returned to the pool
    /// only when the `BLPOP` completed; a cancelled or failed wait drops it (a reply may still be
    /// pending). A pooled connection that turns out dead (the server restarted, or killed it
    /// while idle) is replaced once; the reply itself is bounded by `timeout` plus
    /// [`RESPONSE_TIMEOUT`].
    async fn wait_notified(&self, timeout: Duration) -> Result<(), QueueError> {
        let block = timeout.max(Duration::from_millis(1));
        let (mut conn, mut pooled) = self.blocker().await?;
        loop {
            let mut cmd = redis::cmd("BLPOP");
            cmd.arg(&self.inner.keys[NOTIFY]).arg(block.as_secs_f64());
            let limit = block + RESPONSE_TIMEOUT;
            match tokio::time::timeout(limit, conn.query(&cmd)).await {
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

/// The work id in a token (`<id>.<nonce>`); `None` for anything this queue never issued.
fn token_id(token: &LeaseToken) -> Option<&str> {
    token.as_str().rsplit_once('.').map(|(id, _)| id)
}

#[async_trait]
impl Queue for RedisQueue {
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError> {
        let mut out = self.enqueue_batch(vec![work], None).await?;
        out.pop()
            .ok_or_else(|| self.bad_reply("enqueue", &Value::Array(Vec::new())))
    }

    async fn enqueue_many(&self, work: Vec<NewWork>) -> Result<Vec<Enqueued>, QueueError> {
        self.enqueue_batch(work, None).await
    }

    /// One script checks that `token` equals the counter at key `fence` (for a
    /// [`crate::RedisLeaderElection`], its `fence_key()`) and enqueues. On a Cluster `fence` must
    /// have the queue prefix's hash tag.
    async fn enqueue_fenced(
        &self,
        work: NewWork,
        fence: &str,
        token: FencingToken,
    ) -> Result<Enqueued, QueueError> {
        if matches!(self.inner.server, Server::Cluster { .. })
            && hash_tag(fence) != hash_tag(&self.inner.prefix)
        {
            return Err(QueueError::Invalid(format!(
                "fence key {fence:?} must have the hash tag of queue prefix {:?} on a Redis Cluster",
                self.inner.prefix
            )));
        }
        let mut out = self.enqueue_batch(vec![work], Some((fence, token))).await?;
        out.pop()
            .ok_or_else(|| self.bad_reply("enqueue", &Value::Array(Vec::new())))
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>, QueueError> {
        let mut out = self.ack_claim(&[], worker, 1, lease, wait).await?;
        Ok(out.claims.pop())
    }

    async fn claim_many(
        &self,
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<Vec<Claim>, QueueError> {
        Ok(self.ack_claim(&[], worker, max, lease, wait).await?.claims)
    }

    async fn ack_and_claim(
        &self,
        done: &[LeaseToken],
        worker: &WorkerId,
        max: usize,
        lease: Duration,
        wait: Duration,
    ) -> Result<AckedAndClaimed, QueueError> {
        self.ack_claim(done, worker, max, lease, wait).await
    }

    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError> {
        let worker = WorkerId::new("");
        let mut out = AckedAndClaimed::default();
        self.try_ack_claim(
            std::slice::from_ref(token),
            &worker,
            0,
            Duration::ZERO,
            &mut out,
        )
        .await?;
        match out.lost.pop() {
            Some(token) => Err(QueueError::LeaseLost { token }),
            None => Ok(()),
        }
    }

    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError> {
        let scripts = &self.scripts;
        let n = self
            .lease_op("nack", &scripts.nack, token, ms(retry_after))
            .await?;
        if n == 2 {
            debug!(prefix = %self.inner.prefix, %token, "dead_lettered");
        }
        Ok(())
    }

    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        let scripts = &self.scripts;
        self.lease_op("extend", &scripts.extend, token, ms(by).max(1))
            .await?;
        Ok(())
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        let inv = self.invocation(&self.scripts.depths);
        let d: [u64; 6] = self.run("depths", &inv).await?;
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
        let mut inv = self.invocation(&self.scripts.dead_letters);
        inv.arg(limit);
        let reply: Vec<Value> = self.run("dead_letters", &inv).await?;
        reply
            .chunks(4)
            .map(|f| {
                reply::dead_letter(f)
                    .ok_or_else(|| self.bad_reply("dead_letters", &Value::Array(f.to_vec())))
            })
            .collect()
    }

    async fn consumers(&self) -> Result<Vec<Consumer>, QueueError> {
        let mut conn = self.inner.conn.clone();
        let key = &self.inner.keys[CONSUMERS];
        let seen: Vec<(String, u64)> = redis::cmd("HGETALL")
            .arg(key)
            .query_async(&mut conn)
            .await
            .map_err(|e| self.failure("consumers", e))?;
        let now = SystemTime::now();
        let mut out = Vec::with_capacity(seen.len());
        let mut gone = Vec::new();
        for (worker, at) in seen {
            let consumer = Consumer {
                worker: WorkerId::new(worker),
                last_fetch: UNIX_EPOCH + Duration::from_millis(at),
            };
            if consumer.idle_for(now) > FORGET_CONSUMER {
                gone.push(consumer.worker);
            } else {
                out.push(consumer);
            }
        }
        if !gone.is_empty() {
            let mut cmd = redis::cmd("HDEL");
            cmd.arg(key);
            for w in &gone {
                cmd.arg(w.as_str());
            }
            cmd.query_async::<()>(&mut conn)
                .await
                .map_err(|e| self.failure("consumers (forget)", e))?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::hash_tag;

    #[test]
    fn hash_tags_follow_redis_rules() {
        assert_eq!(hash_tag("{jobs}:work:queue:high"), Some("jobs"));
        assert_eq!(hash_tag("a{b}c{d}"), Some("b"));
        assert_eq!(hash_tag("{}x"), None);
        assert_eq!(hash_tag("plain:"), None);
        assert_eq!(hash_tag("{open"), None);
    }
}
