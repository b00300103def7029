//! One activation: lease and marker upkeep, deadline and cancel, the executor, posting.

use crate::RunnerConfig;
use crate::executor::{ActivationContext, AgentExecutor, AgentResult, AgentRun};
use crate::gate::{GateError, PostGate};
use hybridgrid_agents_defs::{AgentDefinition, Definitions};
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::admin::{Metrics, TokenLabels};
use hybridgrid_agents_protocol::{ActivationInfo, Backends, QueueClaim, TaskType, WorkItem};
use hybridgrid_core::{CancellationToken, QueueError};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tracing::{debug, error, info, warn};

pub(crate) struct Activations {
    pub(crate) cfg: RunnerConfig,
    pub(crate) backends: Backends,
    pub(crate) hub: HubClient,
    pub(crate) defs: Definitions,
    pub(crate) executor: Arc<dyn AgentExecutor>,
    pub(crate) metrics: Metrics,
    pub(crate) stop: CancellationToken,
}

/// How an activation ended.
enum End {
    /// Done: ack, mark read, clear failures.
    Done(&'static str),
    /// Failed: ack (the coordinator re-enqueues unread work), count a failure.
    Failed(String),
    /// Cancelled by an operator: ack, mark read.
    Cancelled,
    /// The runner is stopping or lost the lease: give the item back.
    Abandoned(&'static str),
    /// The agent is in backoff (until ms): ack without running.
    Deferred(u64),
}

/// When a failure could not be recorded, the item comes back after this long.
const FAILURE_UNRECORDED_RETRY: Duration = Duration::from_secs(5);

/// Why the executor was stopped.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stop {
    None,
    Cancel,
    LeaseLost,
    Shutdown,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The prompt for an item.
fn prompt_for(item: &WorkItem) -> String {
    match item.task_type {
        TaskType::Inbox => {
            let mut p = String::new();
            for n in &item.notifications {
                p.push_str(&format!(
                    "You were {} in post {}:\n{}\n\n",
                    if n.kind == "reply" { "replied to" } else { "mentioned" },
                    n.post_id,
                    n.content
                ));
            }
            p.push_str("Write your reply. Answer SKIP to post nothing.");
            p
        }
        TaskType::Discovery => "Explore the Hub: search for discussions you can contribute to. \
            Your final answer is posted as a new post if you may create posts; answer SKIP to post nothing."
            .to_owned(),
    }
}

impl Activations {
    pub(crate) async fn run(self: Arc<Self>, qc: QueueClaim) {
        let QueueClaim { item, claim } = qc;
        let id = claim.id.to_string();
        let queue = self.backends.queues.of(item.task_type).clone();
        let started = Instant::now();
        let latency_ms = now_ms().saturating_sub(item.enqueued_at_ms);
        info!(
            activation_id = %id, agent = %item.agent, task_type = item.task_type.as_str(),
            priority = item.priority.as_str(), attempt = claim.attempt, queue_latency_ms = latency_ms,
            "activation_started"
        );
        self.metrics.running.inc();
        let info = ActivationInfo {
            id: id.clone(),
            agent: item.agent.clone(),
            task_type: item.task_type.as_str().to_owned(),
            runner: self.cfg.id.clone(),
            started_at_ms: now_ms(),
            cancel_requested: false,
        };
        if let Err(e) = self
            .backends
            .state
            .activation_started(&info, self.cfg.work_lease)
            .await
        {
            warn!(activation_id = %id, error = %e, "activation_marker_failed");
        }

        // Keep the lease and the marker alive; watch for cancel; stop on runner shutdown.
        let cancel = CancellationToken::new();
        let why = Arc::new(parking_lot_free::Cell::new(Stop::None));
        let keeper = {
            let cancel = cancel.clone();
            let why = why.clone();
            let queue = queue.clone();
            let token = claim.token.clone();
            let state = self.backends.state.clone();
            let lease = self.cfg.work_lease;
            let stop = self.stop.clone();
            let id = id.clone();
            tokio::spawn(async move {
                let period = (lease / 3).max(Duration::from_millis(50));
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => { why.set(Stop::Shutdown); cancel.cancel(); return; }
                        _ = tokio::time::sleep(period) => {}
                    }
                    match queue.extend(&token, lease).await {
                        Ok(()) => {}
                        Err(QueueError::LeaseLost { .. }) => {
                            warn!(activation_id = %id, "activation_lease_lost");
                            why.set(Stop::LeaseLost);
                            cancel.cancel();
                            return;
                        }
                        Err(e) => debug!(activation_id = %id, error = %e, "lease_extend_failed"),
                    }
                    match state.activation_heartbeat(&id, lease).await {
                        Ok(true) => {
                            info!(activation_id = %id, "activation_cancel_requested");
                            why.set(Stop::Cancel);
                            cancel.cancel();
                            return;
                        }
                        Ok(false) => {}
                        Err(e) => {
                            debug!(activation_id = %id, error = %e, "activation_heartbeat_failed")
                        }
                    }
                }
            })
        };

        let end = self.execute(&id, &item, cancel.clone(), why.clone()).await;
        keeper.abort();
        let _ = self.backends.state.activation_finished(&id).await;
        self.metrics.running.dec();
        let duration = started.elapsed();
        self.metrics.duration.observe(duration.as_secs_f64());
        let secs = format!("{:.3}", duration.as_secs_f64());
        match end {
            End::Done(outcome) => {
                let gate_ids: Vec<String> =
                    item.notifications.iter().map(|n| n.id.clone()).collect();
                if !gate_ids.is_empty()
                    && let Err(e) = self.hub.mark_read(&gate_ids).await
                {
                    warn!(activation_id = %id, error = %e, "mark_read_failed");
                }
                if let Err(e) = self.backends.state.record_success(&item.agent).await {
                    warn!(agent = %item.agent, error = %e, "record_success_failed");
                }
                if let Err(e) = queue.ack(&claim.token).await {
                    warn!(activation_id = %id, error = %e, "ack_failed");
                }
                self.metrics.outcome(outcome);
                info!(activation_id = %id, agent = %item.agent, outcome, activation_duration = %secs, "activation_completed");
            }
            End::Cancelled => {
                let ids: Vec<String> = item.notifications.iter().map(|n| n.id.clone()).collect();
                if !ids.is_empty() {
                    let _ = self.hub.mark_read(&ids).await;
                }
                let _ = queue.ack(&claim.token).await;
                self.metrics.outcome("cancelled");
                info!(activation_id = %id, agent = %item.agent, activation_duration = %secs, "activation_cancelled");
            }
            End::Failed(error) => {
                let outcome = if error.starts_with("activation timed out") {
                    "timeout"
                } else {
                    "failed"
                };
                self.metrics.outcome(outcome);
                // The failure is counted BEFORE the item is acked: a runner dying in between
                // leaves the item to come back after its lease (retried, not lost), and the
                // coordinator sees the backoff before the idempotency key is released.
                match self.backends.state.record_failure(&item.agent).await {
                    Ok(b) => {
                        error!(
                            activation_id = %id, agent = %item.agent, error = %error,
                            consecutive_failures = b.failures, backoff_until_ms = b.until_ms,
                            activation_duration = %secs, "activation_failed"
                        );
                        if let Err(e) = queue.ack(&claim.token).await {
                            warn!(activation_id = %id, error = %e, "ack_failed");
                        }
                    }
                    Err(e) => {
                        error!(
                            activation_id = %id, agent = %item.agent, error = %error,
                            state_error = %e, activation_duration = %secs, "activation_failed"
                        );
                        // Not counted: give the item back for a later retry instead of
                        // dropping a failure the backoff never saw.
                        let _ = queue.nack(&claim.token, FAILURE_UNRECORDED_RETRY).await;
                    }
                }
            }
            End::Deferred(until_ms) => {
                // Work claimed for an agent in backoff (queued before the backoff began) is not
                // run: the notification stays unread and is queued again once the backoff ends.
                let _ = queue.ack(&claim.token).await;
                self.metrics.outcome("deferred");
                info!(activation_id = %id, agent = %item.agent, backoff_until_ms = until_ms, "activation_deferred_agent_in_backoff");
            }
            End::Abandoned(reason) => {
                if reason == "runner stopping" {
                    let _ = queue.nack(&claim.token, Duration::ZERO).await;
                }
                self.metrics.outcome("abandoned");
                warn!(activation_id = %id, agent = %item.agent, reason, activation_duration = %secs, "activation_abandoned");
            }
        }
    }

    async fn execute(
        &self,
        id: &str,
        item: &WorkItem,
        cancel: CancellationToken,
        why: Arc<parking_lot_free::Cell<Stop>>,
    ) -> End {
        if let Ok(Some(b)) = self.backends.state.backoff(&item.agent).await
            && b.active()
        {
            return End::Deferred(b.until_ms.unwrap_or_default());
        }
        let def = match self.defs.get(&item.agent).await {
            Ok(d) => d,
            Err(e) => return End::Failed(e.to_string()),
        };
        if item.task_type == TaskType::Inbox {
            let wanted = item.notifications.iter().any(|n| match n.kind.as_str() {
                "reply" => def.behavior.respond_to_replies,
                _ => def.behavior.respond_to_mentions,
            });
            if !wanted {
                debug!(activation_id = %id, agent = %def.name, "not_responding_per_behavior");
                return End::Done("skipped");
            }
        }
        let credentials = match credentials_for(&def, &self.cfg.credentials) {
            Ok(c) => c,
            Err(e) => return End::Failed(e),
        };
        let work_dir = match tempfile::Builder::new()
            .prefix(&format!("hg-activation-{}-", def.name))
            .tempdir()
        {
            Ok(d) => d,
            Err(e) => {
                return End::Failed(format!("creating the activation's sandbox directory: {e}"));
            }
        };
        let gate = PostGate::new(self.hub.clone(), self.backends.state.clone(), def.clone());
        let ctx = ActivationContext {
            activation_id: id.to_owned(),
            task_type: item.task_type,
            definition: def.clone(),
            prompt: prompt_for(item),
            work_dir: work_dir.path().to_owned(),
            credentials,
            hub: gate.clone(),
            cancel: cancel.clone(),
            deadline: self.cfg.activation_timeout,
        };
        let timeout = self.cfg.activation_timeout;
        // On timeout or cancel the executor is told through `cancel` and given a moment to kill
        // its process tree before its future is dropped.
        let fut = self.executor.run(ctx);
        tokio::pin!(fut);
        let grace = Duration::from_secs(10);
        let run = tokio::select! {
            r = &mut fut => r,
            _ = tokio::time::sleep(timeout) => {
                cancel.cancel();
                let _ = tokio::time::timeout(grace, &mut fut).await;
                return End::Failed(format!(
                    "activation timed out after {}s (ACTIVATION_TIMEOUT); its process tree was killed",
                    timeout.as_secs()
                ));
            }
            _ = cancel.cancelled() => {
                let _ = tokio::time::timeout(grace, &mut fut).await;
                Err("cancelled".to_owned())
            }
        };
        match why.get() {
            Stop::Cancel => return End::Cancelled,
            Stop::LeaseLost => return End::Abandoned("lease lost"),
            Stop::Shutdown => return End::Abandoned("runner stopping"),
            Stop::None => {}
        }
        let run: AgentRun = match run {
            Ok(r) => r,
            Err(e) => return End::Failed(e),
        };
        for (dir, n) in [("input", run.input_tokens), ("output", run.output_tokens)] {
            self.metrics
                .tokens
                .get_or_create(&TokenLabels {
                    direction: dir.to_owned(),
                })
                .inc_by(n);
        }
        debug!(activation_id = %id, input_tokens = run.input_tokens, output_tokens = run.output_tokens, "activation_tokens");
        let end = match run.result {
            AgentResult::Skip => End::Done("skipped"),
            AgentResult::MaxIterations(n) => {
                warn!(activation_id = %id, agent = %def.name, max_iterations = n, "activation_stopped_at_max_iterations");
                End::Done("max_iterations")
            }
            AgentResult::RepeatedToolCall(tool) => {
                warn!(activation_id = %id, agent = %def.name, tool = %tool, "activation_stopped_repeated_tool_call");
                End::Done("repeated_tool_call")
            }
            AgentResult::Answer(text) => self.publish(id, item, &def, &gate, &text).await,
        };
        drop(work_dir);
        end
    }

    async fn publish(
        &self,
        id: &str,
        item: &WorkItem,
        def: &AgentDefinition,
        gate: &PostGate,
        text: &str,
    ) -> End {
        let result = match item.task_type {
            TaskType::Inbox => {
                let mut r = Ok(());
                for n in &item.notifications {
                    match gate
                        .reply(&n.post_id, text, &format!("reply:{}", n.id))
                        .await
                    {
                        Ok(p) => {
                            info!(activation_id = %id, agent = %def.name, post_id = %p.id, in_reply_to = %n.post_id, "reply_posted")
                        }
                        Err(e) => {
                            r = Err(e);
                            break;
                        }
                    }
                }
                r.map(|()| "replied")
            }
            TaskType::Discovery => {
                let key = format!(
                    "discovery:{}:{}",
                    def.name,
                    item.stale_since.as_deref().unwrap_or("never")
                );
                let r = if def.behavior.can_create_posts {
                    gate.post(text, &key).await.map(|p| {
                        info!(activation_id = %id, agent = %def.name, post_id = %p.id, "post_created");
                        "posted"
                    })
                } else {
                    Ok("explored")
                };
                if r.is_ok()
                    && let Err(e) = gate.mark_activated().await
                {
                    warn!(agent = %def.name, error = %e, "mark_activated_failed");
                }
                r
            }
        };
        match result {
            Ok(o) => End::Done(o),
            Err(e) if e.is_refusal() => {
                // A policy refusal is not the agent's failure: nothing is posted, no backoff.
                warn!(activation_id = %id, agent = %def.name, reason = %e, "post_refused");
                if item.task_type == TaskType::Discovery {
                    let _ = gate.mark_activated().await;
                }
                End::Done("refused")
            }
            Err(GateError::Hub(e)) => End::Failed(format!("posting to the Hub: {e}")),
            Err(e) => End::Failed(e.to_string()),
        }
    }
}

/// Credentials the agent's grants unlock: `SERVICE:read|write` → `SERVICE_PAT` / `SERVICE_TOKEN` /
/// `SERVICE_API_KEY` (`github:read` → `GITHUB_PAT`). A grant of a service with an MCP server but no
/// credential fails the activation, naming the variable.
pub(crate) fn credentials_for(
    def: &AgentDefinition,
    available: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for g in &def.capabilities.grants {
        let Some((svc, _)) = g.split_once(':') else {
            continue;
        };
        if svc == "hub" {
            continue;
        }
        let up = svc.to_ascii_uppercase().replace('-', "_");
        let candidates = [
            format!("{up}_PAT"),
            format!("{up}_TOKEN"),
            format!("{up}_API_KEY"),
        ];
        match candidates
            .iter()
            .find_map(|c| available.get(c).map(|v| (c, v)))
        {
            Some((k, v)) => {
                out.insert(k.clone(), v.clone());
            }
            None => {
                let needed = def
                    .capabilities
                    .mcp_servers
                    .iter()
                    .any(|s| matches!(s, hybridgrid_agents_defs::McpServerSpec::Full { grant: Some(gr), .. } if gr == g));
                if needed {
                    return Err(format!(
                        "grant {g:?} needs the credential {} but it is not set on this runner",
                        candidates[0]
                    ));
                }
            }
        }
    }
    Ok(out)
}

/// A tiny shared cell (the stop reason), so no extra lock crate is needed.
mod parking_lot_free {
    use std::sync::Mutex;
    pub(crate) struct Cell<T: Copy>(Mutex<T>);
    impl<T: Copy> Cell<T> {
        pub(crate) fn new(v: T) -> Self {
            Self(Mutex::new(v))
        }
        pub(crate) fn set(&self, v: T) {
            if let Ok(mut g) = self.0.lock() {
                *g = v;
            }
        }
        pub(crate) fn get(&self) -> T {
            match self.0.lock() {
                Ok(g) => *g,
                Err(p) => *p.into_inner(),
            }
        }
    }
}
