//! Shared agent state: backoff (`work:backoff`), running activations (`activation:{id}`) with
//! their cancel flags, and daily post/comment counters.

use async_trait::async_trait;
use hybridgrid_core::BoxError;
use hybridgrid_scheduler::Backoff;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Consecutive failures before an agent is backed off.
pub const BACKOFF_AFTER_FAILURES: u32 = 5;

/// When and how long an agent is backed off: after `after_failures` consecutive failures,
/// `base` × 2^(n − after_failures), at most `max`. The guide's values (5, 60 s, 1 h) are the
/// default; `AGENT_BACKOFF_BASE` shortens `base` (tests, staging).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// Consecutive failures before the first backoff.
    pub after_failures: u32,
    /// The first backoff.
    pub base: Duration,
    /// The longest backoff.
    pub max: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        Self {
            after_failures: BACKOFF_AFTER_FAILURES,
            base: Duration::from_secs(60),
            max: Duration::from_secs(3600),
        }
    }
}

impl BackoffPolicy {
    /// The guide's policy with another first backoff (`max` stays 1 h, and at least `base`).
    pub fn with_base(base: Duration) -> Self {
        let d = Self::default();
        Self {
            base,
            max: d.max.max(base),
            ..d
        }
    }

    /// The backoff after `failures` consecutive failures (`None`: not backed off yet).
    ///
    /// ```
    /// use hybridgrid_agents_protocol::BackoffPolicy;
    /// use std::time::Duration;
    /// let p = BackoffPolicy::with_base(Duration::from_secs(2));
    /// assert_eq!(p.delay(4), None);
    /// assert_eq!(p.delay(5), Some(Duration::from_secs(2)));
    /// assert_eq!(p.delay(6), Some(Duration::from_secs(4)));
    /// ```
    pub fn delay(&self, failures: u32) -> Option<Duration> {
        let n = failures.checked_sub(self.after_failures)?;
        let policy = Backoff {
            base: self.base,
            max: self.max,
            factor: 2.0,
        };
        Some(policy.cap(n))
    }
}

/// The backoff after `failures` consecutive failures under the guide's policy: none below 5,
/// then 60 s × 2^(n−5), at most 1 h.
///
/// ```
/// use hybridgrid_agents_protocol::backoff_delay;
/// use std::time::Duration;
/// assert_eq!(backoff_delay(4), None);
/// assert_eq!(backoff_delay(5), Some(Duration::from_secs(60)));
/// assert_eq!(backoff_delay(7), Some(Duration::from_secs(240)));
/// assert_eq!(backoff_delay(40), Some(Duration::from_secs(3600)));
/// ```
pub fn backoff_delay(failures: u32) -> Option<Duration> {
    BackoffPolicy::default().delay(failures)
}

pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// An agent's failure record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackoffEntry {
    /// Consecutive failures.
    pub failures: u32,
    /// Backed off until (ms since the epoch), when in backoff.
    pub until_ms: Option<u64>,
}

impl BackoffEntry {
    /// Whether the agent may not be activated now.
    pub fn active(&self) -> bool {
        self.until_ms.is_some_and(|u| u > now_ms())
    }
}

/// A running activation (`activation:{id}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActivationInfo {
    /// The activation id (the work item's id).
    pub id: String,
    /// The agent.
    pub agent: String,
    /// `INBOX` or `DISCOVERY`.
    pub task_type: String,
    /// The runner running it.
    pub runner: String,
    /// When it started, ms since the epoch.
    pub started_at_ms: u64,
    /// Whether a cancel was requested.
    #[serde(default)]
    pub cancel_requested: bool,
}

/// A failure of the state backend.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// The backend failed (connection lost, server restarting).
    #[error("{backend} agent state failed in {op}: {source}")]
    Backend {
        /// `redis`.
        backend: &'static str,
        /// The operation.
        op: &'static str,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Shared per-agent state. Every method is one atomic step on the backend.
#[async_trait]
pub trait AgentState: Send + Sync + 'static {
    /// Counts a failed activation of `agent`; from the 5th consecutive one the agent is backed off.
    async fn record_failure(&self, agent: &str) -> Result<BackoffEntry, StateError>;
    /// A successful activation: clears failures and backoff.
    async fn record_success(&self, agent: &str) -> Result<(), StateError>;
    /// The agent's failure record, if any.
    async fn backoff(&self, agent: &str) -> Result<Option<BackoffEntry>, StateError>;
    /// Every agent with a failure record.
    async fn backoffs(&self) -> Result<Vec<(String, BackoffEntry)>, StateError>;
    /// Clears an agent's failures and backoff; `false` if it had none.
    async fn clear_backoff(&self, agent: &str) -> Result<bool, StateError>;
    /// Marks an activation running, expiring after `ttl` unless refreshed.
    async fn activation_started(
        &self,
        info: &ActivationInfo,
        ttl: Duration,
    ) -> Result<(), StateError>;
    /// Refreshes a running activation's marker; returns whether a cancel was requested.
    async fn activation_heartbeat(&self, id: &str, ttl: Duration) -> Result<bool, StateError>;
    /// Removes a finished activation's marker.
    async fn activation_finished(&self, id: &str) -> Result<(), StateError>;
    /// Running activations (markers not expired).
    async fn activations(&self) -> Result<Vec<ActivationInfo>, StateError>;
    /// Asks the runner of `id` to cancel it; `false` if no such activation is running.
    async fn request_cancel(&self, id: &str) -> Result<bool, StateError>;
    /// Today's (UTC) count of `kind` (`posts`, `comments`) for `agent`.
    async fn daily_count(&self, agent: &str, kind: &str) -> Result<u64, StateError>;
    /// Adds one to today's count of `kind` for `agent`; returns the new count.
    async fn daily_incr(&self, agent: &str, kind: &str) -> Result<u64, StateError>;
}

/// Today's date (UTC) as days since the epoch, the daily counters' bucket.
pub(crate) fn day() -> u64 {
    now_ms() / 86_400_000
}

#[derive(Default)]
struct Mem {
    failures: HashMap<String, BackoffEntry>,
    activations: HashMap<String, (ActivationInfo, u64)>,
    daily: HashMap<(String, String, u64), u64>,
}

/// In-process [`AgentState`] for the embedded mode and tests.
#[derive(Default)]
pub struct MemoryAgentState {
    inner: Mutex<Mem>,
    policy: BackoffPolicy,
}

impl std::fmt::Debug for MemoryAgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryAgentState").finish_non_exhaustive()
    }
}

impl MemoryAgentState {
    /// Empty state.
    pub fn new() -> Self {
        Self::default()
    }

    /// Empty state backing agents off per `policy`.
    pub fn with_policy(policy: BackoffPolicy) -> Self {
        Self {
            inner: Mutex::default(),
            policy,
        }
    }
}

#[async_trait]
impl AgentState for MemoryAgentState {
    async fn record_failure(&self, agent: &str) -> Result<BackoffEntry, StateError> {
        let mut m = self.inner.lock();
        let e = m.failures.entry(agent.to_owned()).or_insert(BackoffEntry {
            failures: 0,
            until_ms: None,
        });
        e.failures = e.failures.saturating_add(1);
        if let Some(d) = self.policy.delay(e.failures) {
            e.until_ms = Some(now_ms().saturating_add(ms(d)));
        }
        Ok(e.clone())
    }
    async fn record_success(&self, agent: &str) -> Result<(), StateError> {
        self.inner.lock().failures.remove(agent);
        Ok(())
    }
    async fn backoff(&self, agent: &str) -> Result<Option<BackoffEntry>, StateError> {
        Ok(self.inner.lock().failures.get(agent).cloned())
    }
    async fn backoffs(&self) -> Result<Vec<(String, BackoffEntry)>, StateError> {
        let mut v: Vec<_> = self
            .inner
            .lock()
            .failures
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(v)
    }
    async fn clear_backoff(&self, agent: &str) -> Result<bool, StateError> {
        Ok(self.inner.lock().failures.remove(agent).is_some())
    }
    async fn activation_started(
        &self,
        info: &ActivationInfo,
        ttl: Duration,
    ) -> Result<(), StateError> {
        let until = now_ms().saturating_add(ms(ttl));
        self.inner
            .lock()
            .activations
            .insert(info.id.clone(), (info.clone(), until));
        Ok(())
    }
    async fn activation_heartbeat(&self, id: &str, ttl: Duration) -> Result<bool, StateError> {
        let mut m = self.inner.lock();
        Ok(match m.activations.get_mut(id) {
            Some((info, until)) => {
                *until = now_ms().saturating_add(ms(ttl));
                info.cancel_requested
            }
            None => false,
        })
    }
    async fn activation_finished(&self, id: &str) -> Result<(), StateError> {
        self.inner.lock().activations.remove(id);
        Ok(())
    }
    async fn activations(&self) -> Result<Vec<ActivationInfo>, StateError> {
        let now = now_ms();
        let mut m = self.inner.lock();
        m.activations.retain(|_, (_, until)| *until > now);
        let mut v: Vec<_> = m.activations.values().map(|(i, _)| i.clone()).collect();
        v.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(v)
    }
    async fn request_cancel(&self, id: &str) -> Result<bool, StateError> {
        let now = now_ms();
        let mut m = self.inner.lock();
        Ok(match m.activations.get_mut(id) {
            Some((info, until)) if *until > now => {
                info.cancel_requested = true;
                true
            }
            _ => false,
        })
    }
    async fn daily_count(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        let key = (agent.to_owned(), kind.to_owned(), day());
        Ok(self.inner.lock().daily.get(&key).copied().unwrap_or(0))
    }
    async fn daily_incr(&self, agent: &str, kind: &str) -> Result<u64, StateError> {
        let key = (agent.to_owned(), kind.to_owned(), day());
        let mut m = self.inner.lock();
        let n = m.daily.entry(key).or_insert(0);
        *n = n.saturating_add(1);
        Ok(*n)
    }
}

#[cfg(feature = "redis")]
mod redis_state;
#[cfg(feature = "redis")]
pub use redis_state::RedisAgentState;

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fifth_failure_backs_off_and_success_clears() {
        let s = MemoryAgentState::new();
        for _ in 0..4 {
            assert!(!s.record_failure("a").await.ok().is_some_and(|e| e.active()));
        }
        let e = s.record_failure("a").await.ok();
        assert!(
            e.as_ref().is_some_and(|e| e.active() && e.failures == 5),
            "{e:?}"
        );
        s.record_success("a").await.ok();
        assert_eq!(s.backoff("a").await.ok().flatten(), None);
    }

    #[tokio::test]
    async fn cancel_needs_a_running_activation() {
        let s = MemoryAgentState::new();
        assert_eq!(s.request_cancel("x").await.ok(), Some(false));
        let info = ActivationInfo {
            id: "x".into(),
            agent: "a".into(),
            task_type: "INBOX".into(),
            runner: "r".into(),
            started_at_ms: 1,
            cancel_requested: false,
        };
        s.activation_started(&info, Duration::from_secs(5))
            .await
            .ok();
        assert_eq!(
            s.activation_heartbeat("x", Duration::from_secs(5))
                .await
                .ok(),
            Some(false)
        );
        assert_eq!(s.request_cancel("x").await.ok(), Some(true));
        assert_eq!(
            s.activation_heartbeat("x", Duration::from_secs(5))
                .await
                .ok(),
            Some(true)
        );
    }
}
