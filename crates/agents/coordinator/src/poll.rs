//! The leader's poll loop.

use crate::CoordinatorConfig;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::{HubClient, HubError, NotificationKind, Poller as HubPoller, now_secs};
use hybridgrid_agents_protocol::admin::{Metrics, QueueLabels};
use hybridgrid_agents_protocol::{Backends, TaskType, WorkItem};
use hybridgrid_core::{
    CancellationToken, Enqueued, FencingToken, Leadership, Priority, QueueError,
};
use hybridgrid_queue::Elector;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info, warn};

/// Enqueues `item` only if `token` is the newest fencing token issued: the check and the
/// enqueue are one atomic step on the backend ([`Backends::enqueue_fenced`]).
pub async fn fenced_enqueue(
    backends: &Backends,
    token: FencingToken,
    item: &WorkItem,
) -> Result<Enqueued, QueueError> {
    backends.enqueue_fenced(item, token).await
}

pub(crate) struct Poller {
    pub(crate) cfg: CoordinatorConfig,
    pub(crate) backends: Backends,
    pub(crate) hub: HubClient,
    pub(crate) defs: Option<Definitions>,
    pub(crate) elector: Arc<Elector>,
    pub(crate) metrics: Metrics,
    pub(crate) stop: CancellationToken,
}

impl Poller {
    pub(crate) async fn run(self) {
        let mut watch = self.elector.watch();
        let mut last_sweep: Option<Instant> = None;
        let mut cursor: Option<String> = None;
        let mut led: Option<FencingToken> = None;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            let Some(lease) = self.elector.leadership() else {
                self.metrics.is_leader.set(0);
                led = None;
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = watch.changed() => {}
                    _ = tokio::time::sleep(self.cfg.leader_lease / 3) => {}
                }
                continue;
            };
            self.metrics.is_leader.set(1);
            if led != Some(lease.token) {
                // A new term: start with a full sweep.
                led = Some(lease.token);
                last_sweep = None;
            }
            let sweep = last_sweep.is_none_or(|t| t.elapsed() >= self.cfg.poll_interval);
            let ok = tokio::select! {
                _ = self.stop.cancelled() => return,
                ok = async {
                    if sweep {
                        last_sweep = Some(Instant::now());
                        if let Err(e) = self.discover(&lease).await {
                            warn!(error = %e, "discovery_poll_failed");
                        }
                        self.poll_inbox(&lease, Duration::ZERO, None, &mut cursor).await
                    } else if self.cfg.long_poll.is_zero() {
                        true
                    } else {
                        let c = cursor.clone();
                        self.poll_inbox(&lease, self.cfg.long_poll, c.as_deref(), &mut cursor).await
                    }
                } => ok,
            };
            self.refresh_gauges().await;
            let pause = if !ok {
                self.cfg.poll_interval
            } else if self.cfg.long_poll.is_zero() {
                last_sweep
                    .map(|t| self.cfg.poll_interval.saturating_sub(t.elapsed()))
                    .unwrap_or_default()
            } else {
                Duration::ZERO
            };
            if !pause.is_zero() {
                tokio::select! {
                    _ = self.stop.cancelled() => return,
                    _ = tokio::time::sleep(pause) => {}
                }
            }
        }
    }

    async fn in_backoff(&self, agent: &str) -> bool {
        match self.backends.state.backoff(agent).await {
            Ok(Some(e)) if e.active() => {
                debug!(
                    agent,
                    failures = e.failures,
                    until_ms = e.until_ms,
                    "agent_in_backoff"
                );
                true
            }
            Ok(_) => false,
            Err(e) => {
                warn!(agent, error = %e, "backoff_check_failed");
                true
            }
        }
    }

    /// Enqueues with the lease's token; `false` when fenced (stop acting as leader).
    async fn enqueue(&self, lease: &Leadership, item: &WorkItem) -> bool {
        match fenced_enqueue(&self.backends, lease.token, item).await {
            Ok(Enqueued::Created(id)) => {
                self.metrics.enqueued.inc();
                info!(agent = %item.agent, task_type = item.task_type.as_str(), priority = item.priority.as_str(), work_id = %id, "work_enqueued");
                true
            }
            Ok(Enqueued::Duplicate(id)) => {
                debug!(agent = %item.agent, work_id = %id, "work_already_queued");
                true
            }
            Err(e @ QueueError::Fenced { .. }) => {
                warn!(token = lease.token.0, error = %e, "fenced_enqueue_refused");
                false
            }
            Err(e) => {
                warn!(agent = %item.agent, error = %e, "enqueue_failed");
                true
            }
        }
    }

    /// One poll; `false` on an error (pause before the next).
    async fn poll_inbox(
        &self,
        lease: &Leadership,
        wait: Duration,
        since: Option<&str>,
        cursor: &mut Option<String>,
    ) -> bool {
        self.metrics.polls.inc();
        let poller = HubPoller {
            id: self.cfg.id.clone(),
            fencing_token: lease.token.0,
        };
        let page = match self.hub.notifications(wait, since, Some(&poller)).await {
            Ok(p) => p,
            Err(HubError::Fenced { .. }) => {
                warn!(token = lease.token.0, "hub_refused_stale_poller");
                return false;
            }
            Err(e) => {
                warn!(error = %e, "hub_poll_failed");
                return false;
            }
        };
        if page.cursor.is_some() {
            *cursor = page.cursor;
        }
        if page.notifications.is_empty() {
            if !wait.is_zero() {
                debug!(wait_s = wait.as_secs(), "poll_timeout");
            }
            return true;
        }
        let mut backed_off = HashSet::new();
        for n in &page.notifications {
            if backed_off.contains(&n.agent) {
                continue;
            }
            if self.in_backoff(&n.agent).await {
                backed_off.insert(n.agent.clone());
                continue;
            }
            let priority = match n.kind {
                NotificationKind::Mention => Priority::High,
                NotificationKind::Reply => Priority::Normal,
            };
            let item = WorkItem::inbox(
                &n.agent,
                priority,
                &n.id,
                &n.post_id,
                n.kind.as_str(),
                &n.content,
            );
            if !self.enqueue(lease, &item).await {
                return false;
            }
        }
        true
    }

    async fn discover(&self, lease: &Leadership) -> Result<(), HubError> {
        let agents = self.hub.agents().await?;
        let defined: Option<HashSet<String>> = match &self.defs {
            None => None,
            Some(d) => match d.names().await {
                Ok(n) => Some(n.into_iter().collect()),
                Err(e) => {
                    warn!(error = %e, "agent_definitions_unlistable");
                    return Ok(());
                }
            },
        };
        let now = now_secs();
        let staleness = self.cfg.min_staleness.as_secs();
        for a in agents {
            if defined.as_ref().is_some_and(|d| !d.contains(&a.name)) {
                continue;
            }
            let stale = a
                .last_activated_at
                .is_none_or(|t| now.saturating_sub(t) >= staleness);
            if !stale || self.in_backoff(&a.name).await {
                continue;
            }
            let item = WorkItem::discovery(&a.name, a.last_activated_at.map(|t| t.to_string()));
            if !self.enqueue(lease, &item).await {
                return Ok(());
            }
        }
        Ok(())
    }

    async fn refresh_gauges(&self) {
        if let Ok((inbox, discovery)) = self.backends.queues.depths().await {
            for (tt, d) in [(TaskType::Inbox, inbox), (TaskType::Discovery, discovery)] {
                for p in [Priority::High, Priority::Normal, Priority::Low] {
                    self.metrics
                        .queue_depth
                        .get_or_create(&QueueLabels {
                            task_type: tt.as_str().to_owned(),
                            priority: p.as_str().to_owned(),
                        })
                        .set(i64::try_from(d.ready_at(p)).unwrap_or(i64::MAX));
                }
            }
        }
        if let Ok(b) = self.backends.state.backoffs().await {
            let n = b.iter().filter(|(_, e)| e.active()).count();
            self.metrics
                .backoffs
                .set(i64::try_from(n).unwrap_or(i64::MAX));
        }
    }
}
