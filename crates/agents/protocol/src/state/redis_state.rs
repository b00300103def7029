//! [`RedisAgentState`]: the guide's keys on Redis/Valkey.

use super::{ActivationInfo, AgentState, BackoffEntry, BackoffPolicy, StateError, day, ms, now_ms};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{AsyncCommands, Client, RedisError, Script};
use std::collections::HashMap;
use std::time::Duration;

/// KEYS: failures hash, backoff hash. ARGV: agent, after_failures, base_ms, max_ms, now_ms.
/// Counts the failure and, from `after_failures` on, sets the backoff deadline in the same step.
/// Returns {failures, until_ms or -1}.
const RECORD_FAILURE: &str = r"
local n = redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
local after = tonumber(ARGV[2])
if n < after then return {n, -1} end
local delay = tonumber(ARGV[3]) * (2 ^ (n - after))
local max = tonumber(ARGV[4])
if delay > max then delay = max end
local untilms = tonumber(ARGV[5]) + math.floor(delay)
redis.call('HSET', KEYS[2], ARGV[1], string.format('%.0f', untilms))
return {n, untilms}
";

const CANCEL: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'cancel_requested', '1')
  return 1
end
return 0
";

const HEARTBEAT: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
if redis.call('HGET', KEYS[1], 'cancel_requested') == '1' then return 1 end
return 0
";

/// [`AgentState`] on Redis/Valkey. Keys (under the deployment prefix):
///
/// | key | type | holds |
/// |---|---|---|
/// | `work:backoff` | hash | agent → backed off until (ms since the epoch), as `RedisQueue::backoff_until` reads it |
/// | `work:failures` | hash | agent → consecutive failures |
/// | `activation:{id}` | hash | `agent`, `task_type`, `runner`, `started_at_ms`, `cancel_requested`; expires unless the runner refreshes it |
/// | `activations` | set | ids of markers (pruned when a marker has expired) |
/// | `agents:daily:{agent}:{day}` | hash | `posts`, `comments` counts for one UTC day (expires after 2 days) |
#[derive(Clone)]
pub struct RedisAgentState {
    conn: ConnectionManager,
    prefix: String,
    policy: BackoffPolicy,
}

impl std::fmt::Debug for RedisAgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisAgentState")
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn fail(op: &'static str) -> impl FnOnce(RedisError) -> StateError {
    move |e| StateError::Backend {
        backend: "redis",
        op,
        source: Box::new(e),
    }
}

impl RedisAgentState {
    /// Connects lazily to `url`; keys under `prefix`.
    pub fn new(url: &str, prefix: impl Into<String>) -> Result<Self, StateError> {
        let client = Client::open(url).map_err(fail("parse url"))?;
        let config = ConnectionManagerConfig::new()
            .set_response_timeout(Some(Duration::from_secs(3)))
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_max_delay(Duration::from_millis(500))
            .set_number_of_retries(2);
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).map_err(fail("connect"))?;
        Ok(Self {
            conn,
            prefix: prefix.into(),
            policy: BackoffPolicy::default(),
        })
    }

    /// Backs agents off per `policy` instead of the guide's default.
    pub fn with_policy(mut self, policy: BackoffPolicy) -> Self {
        self.policy = policy;
        self
    }

    fn k(&self, key: &str) -> String {
        format!("{}{key}", self.prefix)
    }
    fn activation_key(&self, id: &str) -> String {
        self.k(&format!("activation:{id}"))
    }
    fn daily_key(&self, agent: &str) -> String {
        self.k(&format!("agents:daily:{agent}:{}", day()))
    }
}

#[async_trait]
impl AgentState for RedisAgentState {
    async fn record_failure(&self, agent: &str) -> Result<BackoffEntry, StateError> {
        let mut c = self.conn.clone();
        let (n, until): (u32, i64) = Script::new(RECORD_FAILURE)
            .key(self.k("work:failures"))
            .key(self.k("work:backoff"))
            .arg(agent)
            .arg(self.policy.after_failures)
            .arg(ms(self.policy.base))
            .arg(ms(self.policy.max))
            .arg(now_ms())
            .invoke_async(&mut c)
            .await
            .map_err(fail("record_failure"))?;
        Ok(BackoffEntry {
            failures: n,
            until_ms: u64::try_from(until).ok(),
        })
    }

    async fn record_success(&self, agent: &str) -> Result<(), StateError> {
        self.clear_backoff(agent).await.map(|_| ())
    }

    async fn backoff(&self, agent: &str) -> Result<Option<BackoffEntry>, StateError> {
        let mut c = self.conn.clone();
        let (failures, until): (Option<u32>, Option<u64>) = redis::pipe()
            .hget(self.k("work:failures"), agent)
            .hget(self.k("work:backoff"), agent)
            .query_async(&mut c)
            .await
            .map_err(fail("backoff"))?;
        Ok(match (failures, until) {
            (None, None) => None,
            (f, u) => Some(BackoffEntry {
                failures: f.unwrap_or(0),
                until_ms: u,
            }),
        })
    }

    async fn backoffs(&self) -> Result<Vec<(String, BackoffEntry)>, StateError> {
        let mut c = self.conn.clone();
        let (failures, until): (HashMap<String, u32>, HashMap<String, u64>) = redis::pipe()
            .hgetall(self.k("work:failures"))
            .hgetall(self.k("work:backoff"))
            .query_async(&mut c)
            .await
            .map_err(fail("backoffs"))?;
        let mut names: Vec<String> = failures.keys().chain(until.keys()).cloned().collect();
        names.sort();
        names.dedup();
        Ok(names
            .into_iter()
            .map(|n| {
                let e = BackoffEntry {
                    failures: failures.get(&n).copied().unwrap_or(0),
                    until_ms: until.get(&n).copied(),
                };
                (n, e)
            })
            .collect())
    }

    async fn clear_backoff(&self, agent: &str) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let (a, b): (u32, u32) = redis::pipe()
            .hdel(self.k("work:failures"), agent)
            .hdel(self.k("work:backoff"), agent)
            .query_async(&mut c)
            .await
            .map_err(fail("clear_backoff"))?;
        Ok(a + b > 0)
    }

    async fn activation_started(
        &self,
        info: &ActivationInfo,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        let key = self.activation_key(&info.id);
        redis::pipe()
            .atomic()
            .hset_multiple(
                &key,
                &[
                    ("agent", info.agent.clone()),
                    ("task_type", info.task_type.clone()),
                    ("runner", info.runner.clone()),
                    ("started_at_ms", info.started_at_ms.to_string()),
                    ("cancel_requested", "0".to_owned()),
                ],
            )
            .ignore()
            .pexpire(&key, ms(ttl).max(1) as i64)
            .ignore()
            .sadd(self.k("activations"), &info.id)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(fail("activation_started"))
    }

    async fn activation_heartbeat(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let r: i64 = Script::new(HEARTBEAT)
            .key(self.activation_key(id))
            .arg(ms(ttl).max(1))
            .invoke_async(&mut c)
            .await
            .map_err(fail("activation_heartbeat"))?;
        Ok(r == 1)
    }

    async fn activation_finished(&self, id: &str) -> Result<(), StateError> {
        let mut c = self.conn.clone();
        redis::pipe()
            .del(self.activation_key(id))
            .ignore()
            .srem(self.k("activations"), id)
            .ignore()
            .query_async::<()>(&mut c)
            .await
            .map_err(fail("activation_finished"))
    }

    async fn activations(&self) -> Result<Vec<ActivationInfo>, StateError> {
        let mut c = self.conn.clone();
        let mut ids: Vec<String> = c
            .smembers(self.k("activations"))
            .await
            .map_err(fail("activations"))?;
        ids.sort();
        let mut out = Vec::new();
        for id in ids {
            let h: HashMap<String, String> = c
                .hgetall(self.activation_key(&id))
                .await
                .map_err(fail("activations"))?;
            if h.is_empty() {
                // The marker expired (its runner died): prune the index.
                let _: Result<(), _> = c.srem(self.k("activations"), &id).await;
                continue;
            }
            let get = |f: &str| h.get(f).cloned().unwrap_or_default();
            out.push(ActivationInfo {
                id,
                agent: get("agent"),
                task_type: get("task_type"),
                runner: get("runner"),
                started_at_ms: get("started_at_ms").parse().unwrap_or(0),
                cancel_requested: get("cancel_requested") == "1",
            });
        }
        Ok(out)
    }

    async fn request_cancel(&self, id: &str) -> Result<bool, StateError> {
        let mut c = self.conn.clone();
        let r: i64 = Script::new(CANCEL)
            .key(self.activation_key(id))
            .invoke_async(&mut c)
            .await
            .map_err(fail("request_cancel"))?;
        Ok(r == 1)
    }

    async fn daily_count(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        let mut c = self.conn.clone();
        let n: Option<u64> = c
            .hget(self.daily_key(agent), kind)
            .await
            .map_err(fail("daily_count"))?;
        Ok(n.unwrap_or(0))
    }

    async fn daily_incr(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        let mut c = self.conn.clone();
        let key = self.daily_key(agent);
        let (n,): (u64,) = redis::pipe()
            .hincr(&key, kind, 1)
            .expire(&key, 2 * 86_400)
            .ignore()
            .query_async(&mut c)
            .await
            .map_err(fail("daily_incr"))?;
        Ok(n)
    }
}
