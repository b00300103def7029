//! Work items and the per-task-type queues.

use crate::settings::RunnerMode;
use hybridgrid_core::{
    Claim, Depths, Enqueued, FencingToken, NewWork, Priority, Queue, QueueError, WorkerId,
};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// What an activation is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum TaskType {
    /// Answer notifications (mentions, replies): notification and hybrid runners.
    Inbox,
    /// Explore on its own (agent stale for `MIN_STALENESS_SECONDS`): exploration and hybrid runners.
    Discovery,
}

impl TaskType {
    /// `INBOX` or `DISCOVERY`.
    pub fn as_str(self) -> &'static str {
        match self {
            TaskType::Inbox => "INBOX",
            TaskType::Discovery => "DISCOVERY",
        }
    }
}

/// A notification a work item answers (copied from the Hub at poll time).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRef {
    /// The Hub's notification id.
    pub id: String,
    /// The post that mentioned or replied to the agent (the reply goes under it).
    pub post_id: String,
    /// `mention` or `reply`.
    pub kind: String,
    /// The post's text.
    pub content: String,
}

/// One activation's work, as queued.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkItem {
    /// The agent to activate.
    pub agent: String,
    /// INBOX or DISCOVERY.
    pub task_type: TaskType,
    /// Its priority lane.
    pub priority: Priority,
    /// The notifications it answers (empty for DISCOVERY).
    #[serde(default)]
    pub notifications: Vec<NotificationRef>,
    /// When the coordinator enqueued it, ms since the epoch (for latency metrics).
    #[serde(default)]
    pub enqueued_at_ms: u64,
    /// For DISCOVERY: the agent's `last_activated_at` seen at poll time (part of the idempotency key).
    #[serde(default)]
    pub stale_since: Option<String>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl WorkItem {
    /// An INBOX item answering one notification.
    pub fn inbox(
        agent: &str,
        priority: Priority,
        notification_id: &str,
        post_id: &str,
        kind: &str,
        content: &str,
    ) -> Self {
        Self {
            agent: agent.to_owned(),
            task_type: TaskType::Inbox,
            priority,
            notifications: vec![NotificationRef {
                id: notification_id.to_owned(),
                post_id: post_id.to_owned(),
                kind: kind.to_owned(),
                content: content.to_owned(),
            }],
            enqueued_at_ms: now_ms(),
            stale_since: None,
        }
    }

    /// A DISCOVERY item for an agent last active at `stale_since` (`None`: never).
    pub fn discovery(agent: &str, stale_since: Option<String>) -> Self {
        Self {
            agent: agent.to_owned(),
            task_type: TaskType::Discovery,
            priority: Priority::Low,
            notifications: Vec::new(),
            enqueued_at_ms: now_ms(),
            stale_since,
        }
    }

    /// The idempotency key: the same agent and notification (or staleness window) is queued once.
    pub fn idempotency_key(&self) -> String {
        match self.task_type {
            TaskType::Inbox => {
                let ids: Vec<&str> = self.notifications.iter().map(|n| n.id.as_str()).collect();
                format!("inbox:{}:{}", self.agent, ids.join(","))
            }
            TaskType::Discovery => format!(
                "discovery:{}:{}",
                self.agent,
                self.stale_since.as_deref().unwrap_or("never")
            ),
        }
    }
}

/// A claimed work item with its lease.
#[derive(Clone, Debug)]
pub struct QueueClaim {
    /// The decoded item.
    pub item: WorkItem,
    /// The queue's claim (id = activation id, lease token, attempt).
    pub claim: Claim,
}

/// One SDK queue per task type; priorities are the queue's own lanes.
#[derive(Clone)]
pub struct Queues {
    /// INBOX work (`work:queue:*` under the deployment prefix).
    pub inbox: Arc<dyn Queue>,
    /// DISCOVERY work (`discovery:work:queue:*` under the deployment prefix).
    pub discovery: Arc<dyn Queue>,
}

impl std::fmt::Debug for Queues {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Queues").finish_non_exhaustive()
    }
}

/// Attempts before an item is dead-lettered (each runner death costs one).
const MAX_ATTEMPTS: u32 = 5;

impl Queues {
    /// The queue of `task_type`.
    pub fn of(&self, task_type: TaskType) -> &Arc<dyn Queue> {
        match task_type {
            TaskType::Inbox => &self.inbox,
            TaskType::Discovery => &self.discovery,
        }
    }

    fn work(item: &WorkItem) -> Result<NewWork, QueueError> {
        let payload = serde_json::to_vec(item)
            .map_err(|e| QueueError::Invalid(format!("work item for {}: {e}", item.agent)))?;
        Ok(NewWork::new(payload)
            .priority(item.priority)
            .idempotency_key(item.idempotency_key())
            .max_attempts(MAX_ATTEMPTS))
    }

    /// Enqueues `item` with its idempotency key.
    pub async fn enqueue(&self, item: &WorkItem) -> Result<Enqueued, QueueError> {
        self.of(item.task_type).enqueue(Self::work(item)?).await
    }

    /// Enqueues `item` only if `token` is the newest token of the fencing counter `fence`,
    /// atomically with the enqueue ([`hybridgrid_core::Queue::enqueue_fenced`]).
    pub async fn enqueue_fenced(
        &self,
        item: &WorkItem,
        fence: &str,
        token: FencingToken,
    ) -> Result<Enqueued, QueueError> {
        self.of(item.task_type)
            .enqueue_fenced(Self::work(item)?, fence, token)
            .await
    }

    /// Claims the next item `mode` takes, highest priority first. Hybrid runners block on the
    /// INBOX queue for `wait` and then look at DISCOVERY without blocking (DISCOVERY is always
    /// low priority, so INBOX first is priority order).
    pub async fn claim(
        &self,
        mode: RunnerMode,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<QueueClaim>, QueueError> {
        let claim = match mode {
            RunnerMode::Notification => self
                .inbox
                .claim(worker, lease, wait)
                .await?
                .map(|c| (TaskType::Inbox, c)),
            RunnerMode::Exploration => self
                .discovery
                .claim(worker, lease, wait)
                .await?
                .map(|c| (TaskType::Discovery, c)),
            RunnerMode::Hybrid => {
                if let Some(c) = self.inbox.claim(worker, lease, Duration::ZERO).await? {
                    Some((TaskType::Inbox, c))
                } else if let Some(c) = self.discovery.claim(worker, lease, Duration::ZERO).await? {
                    Some((TaskType::Discovery, c))
                } else {
                    self.inbox
                        .claim(worker, lease, wait)
                        .await?
                        .map(|c| (TaskType::Inbox, c))
                }
            }
        };
        let Some((from, claim)) = claim else {
            return Ok(None);
        };
        match serde_json::from_slice::<WorkItem>(&claim.payload) {
            Ok(mut item) => {
                item.task_type = from;
                Ok(Some(QueueClaim { item, claim }))
            }
            Err(e) => {
                // Undecodable work can never succeed: drop it (logged) rather than loop on it.
                tracing::error!(work_id = %claim.id, error = %e, "undecodable_work_item");
                let _ = self.of(from).ack(&claim.token).await;
                Err(QueueError::Invalid(format!("work item {}: {e}", claim.id)))
            }
        }
    }

    /// Depths of both queues: (INBOX, DISCOVERY).
    pub async fn depths(&self) -> Result<(Depths, Depths), QueueError> {
        Ok((self.inbox.depths().await?, self.discovery.depths().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_keys_name_agent_and_notification() {
        let a = WorkItem::inbox("a", Priority::High, "n1", "p1", "mention", "hi");
        assert_eq!(a.idempotency_key(), "inbox:a:n1");
        let d = WorkItem::discovery("a", Some("2026-01-01T00:00:00Z".into()));
        assert_eq!(d.idempotency_key(), "discovery:a:2026-01-01T00:00:00Z");
        assert_eq!(
            WorkItem::discovery("a", None).idempotency_key(),
            "discovery:a:never"
        );
    }
}
