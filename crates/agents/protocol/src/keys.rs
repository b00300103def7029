//! The Redis/Valkey key layout (every key under the deployment prefix `AGENTS_REDIS_PREFIX`,
//! empty by default, so the guide's plain names are the real ones).
//!
//! | key | owner | holds |
//! |---|---|---|
//! | `work:queue:high`, `work:queue:normal`, `work:queue:low` | SDK `RedisQueue` (INBOX) | ids of INBOX items ready to claim (`LLEN work:queue:high` is the guide's depth check) |
//! | `work:inflight`, `work:delayed`, `work:items`, `work:idempotency`, `work:dead`, `work:notify`, `work:consumers` | SDK `RedisQueue` (INBOX) | leases (redelivered after a dead runner's lease), delays, payloads, idempotency keys, dead letters |
//! | `discovery:work:queue:*` and `discovery:work:*` | SDK `RedisQueue` (DISCOVERY) | the same for DISCOVERY items; exploration runners claim only here |
//! | `work:backoff` | [`crate::AgentState`] | agent → backoff deadline, ms since the epoch (`HGETALL work:backoff`) |
//! | `work:failures` | [`crate::AgentState`] | agent → consecutive failures |
//! | `activation:{id}` | [`crate::AgentState`] | a running activation (agent, runner, start, cancel flag); expires with its runner's lease, so a dead runner blocks nothing |
//! | `activations` | [`crate::AgentState`] | index of `activation:{id}` markers |
//! | `agents:daily:{agent}:{day}` | [`crate::AgentState`] | posts/comments today |
//! | `coordinator:leader`, `coordinator:leader:fence` | SDK `RedisLeaderElection` | the leader's lease and its fencing counter, which every enqueue of the leader checks in the same Lua script (`Queue::enqueue_fenced`) |
//!
//! An activation's id is its work item's id. The original's "delete `activation:{id}` by hand"
//! is `hg-agents cancel ID` (or `POST /api/v1/activations/{id}/cancel` on a runner); "`DEL
//! work:backoff`" is `hg-agents clear-backoff AGENT`.

/// The leader lease key under `prefix`.
pub fn leader_key(prefix: &str) -> String {
    format!("{prefix}coordinator:leader")
}

/// The leader election's fencing counter under `prefix` (`coordinator:leader:fence`).
pub fn fence_key(prefix: &str) -> String {
    format!("{}:fence", leader_key(prefix))
}
