//! The engine's shared state and the operations the facade and the background tasks use.

use crate::lanes::Lanes;
use crate::plan::{Pinned, Plan, pinned_of};
use crate::{Executors, FlowChange, FlowConfig, FlowError};
use hybridgrid_core::ids::RunId;
use hybridgrid_core::store::{Run, RunStatus, StoreError};
use hybridgrid_core::store_flow::{
    FlowBatch, Launched, NewStep, OutboxEvent, RunLaunch, RunStart, StepCompleted, StepCompletion,
};
use hybridgrid_core::{EventBus, Store};
use hybridgrid_flow_model::time::rfc3339;
use hybridgrid_flow_model::{FlowEvent, FlowEventKind, FlowRunStatus, NodeStatus};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, broadcast, oneshot};
use tokio_util::sync::CancellationToken;

/// Record kind of agents in the store.
pub(crate) const AGENT_KIND: &str = "agent";

pub(crate) struct Core {
    pub config: FlowConfig,
    pub engine_id: String,
    pub store: Arc<dyn Store>,
    pub bus: Arc<dyn EventBus>,
    pub executors: Executors,
    pub changes: broadcast::Sender<FlowChange>,
    /// Wakes the claim loop: work was made ready here.
    pub work: Notify,
    /// Wakes the outbox relay: events were written here.
    pub outbox: Notify,
    /// Ended attempts and new runs on their way to the write lanes, which write those that
    /// arrive together in one transaction (and claim the steps they made ready in it).
    pub lanes: Lanes,
    pub plans: Mutex<HashMap<String, Arc<Plan>>>,
    /// Cancellation of the attempts running here, per run.
    pub running: Mutex<HashMap<String, CancellationToken>>,
    pub shutdown: CancellationToken,
}

/// An ended attempt and where its written result goes.
pub(crate) struct Finished {
    pub completion: StepCompletion,
    /// The attempt's slot, for a step claimed in the same transaction.
    pub slot: Option<tokio::sync::OwnedSemaphorePermit>,
    pub reply: oneshot::Sender<Result<StepCompleted, StoreError>>,
}

/// A run to create and start, and where its written result goes.
pub(crate) struct Launch {
    pub launch: RunLaunch,
    pub reply: oneshot::Sender<Result<Launched, StoreError>>,
}

/// What the claim loop writes in its batch transactions.
pub(crate) enum Write {
    Complete(Finished),
    Launch(Launch),
}

/// The error a writer gets when the engine stops before its write is committed.
fn stopped(what: &str) -> StoreError {
    StoreError::Backend {
        backend: "flow-engine",
        source: format!("the engine stopped before writing {what}").into(),
    }
}

impl Core {
    /// Ends an attempt: returns once its completion is committed (in a batch with the others
    /// that ended meanwhile).
    pub async fn complete_step(
        &self,
        completion: StepCompletion,
    ) -> Result<StepCompleted, StoreError> {
        let (reply, written) = oneshot::channel();
        let slot = self.lanes.take_slot(&(
            completion.run.to_string(),
            completion.name.clone(),
            completion.attempt,
        ));
        if let Err(w) = self.lanes.send(Write::Complete(Finished {
            completion,
            slot,
            reply,
        })) && let Write::Complete(f) = *w
        {
            return self.store.complete_step(f.completion).await;
        }
        written.await.unwrap_or_else(|_| {
            Err(stopped(
                "the completion; the step's lease lapses and it runs again",
            ))
        })
    }

    /// Creates and starts a run: returns once it is committed (in a batch with the other writes
    /// that arrived meanwhile, whose transaction also claims its first steps).
    pub async fn launch(&self, launch: RunLaunch) -> Result<Launched, StoreError> {
        let (reply, written) = oneshot::channel();
        if let Err(w) = self.lanes.send(Write::Launch(Launch { launch, reply }))
            && let Write::Launch(l) = *w
        {
            let done = self
                .store
                .write_batch(FlowBatch {
                    launches: vec![l.launch],
                    ..FlowBatch::default()
                })
                .await?;
            return done
                .launched
                .into_iter()
                .next()
                .unwrap_or_else(|| Err(stopped("the run")));
        }
        written.await.unwrap_or_else(|_| Err(stopped("the run")))
    }

    pub fn emit(&self, change: FlowChange) {
        let _ = self.changes.send(change);
    }

    pub async fn plan(&self, run_id: &str) -> Result<Arc<Plan>, FlowError> {
        if let Some(p) = self.plans.lock().get(run_id) {
            return Ok(p.clone());
        }
        let run = self.store.run(&RunId::new(run_id)).await?;
        let pinned = pinned_of(&run).map_err(|message| FlowError::Invalid {
            what: "run",
            message,
        })?;
        self.remember(run_id, pinned)
    }

    /// Caches the plan of a run from its pinned definition (its `workflow.execute` span opens
    /// here and closes when the run ends here).
    pub fn remember(&self, run_id: &str, pinned: Pinned) -> Result<Arc<Plan>, FlowError> {
        let plan = Arc::new(Plan::new(run_id.to_owned(), pinned).map_err(|message| {
            FlowError::Invalid {
                what: "run",
                message,
            }
        })?);
        let mut plans = self.plans.lock();
        if plans.len() > 4096 {
            plans.clear();
        }
        Ok(plans.entry(run_id.to_owned()).or_insert(plan).clone())
    }

    pub fn forget(&self, run_id: &str) {
        self.plans.lock().remove(run_id);
        if let Some(t) = self.running.lock().remove(run_id) {
            t.cancel();
        }
    }

    pub fn run_token(&self, run_id: &str) -> CancellationToken {
        self.running
            .lock()
            .entry(run_id.to_owned())
            .or_insert_with(|| self.shutdown.child_token())
            .clone()
    }

    /// One event as an outbox entry.
    pub fn event(
        &self,
        kind: FlowEventKind,
        run_id: &str,
        pinned: &Pinned,
        fill: impl FnOnce(&mut FlowEvent),
    ) -> OutboxEvent {
        let mut ev = FlowEvent {
            kind,
            run_id: run_id.to_owned(),
            workflow_id: pinned.workflow_id.clone(),
            workflow_name: pinned.workflow_name.clone(),
            node_id: None,
            run_status: None,
            node_status: None,
            approval_id: None,
            decision: None,
            error: None,
            at: rfc3339(SystemTime::now()),
        };
        fill(&mut ev);
        OutboxEvent {
            subject: ev.subject(),
            payload: serde_json::to_vec(&ev).unwrap_or_default(),
        }
    }

    /// Starts a `Pending` run from its pinned input: its steps (carried-over outputs for a
    /// retry), deadline and `run.started` event in one transaction.
    pub async fn start_pending(
        &self,
        run: &Run,
        carried: &HashMap<String, (serde_json::Value, Option<serde_json::Value>)>,
    ) -> Result<Run, FlowError> {
        let pinned = pinned_of(run).map_err(|message| FlowError::Invalid {
            what: "run",
            message,
        })?;
        let timeout = pinned
            .definition
            .timeout
            .map(|t| *t)
            .unwrap_or(*self.config.workflow_timeout);
        let steps = new_steps(&pinned, carried);
        let id = run.id.to_string();
        let events = vec![self.event(FlowEventKind::RunStarted, &id, &pinned, |e| {
            e.run_status = Some(FlowRunStatus::Running);
        })];
        let started = self
            .store
            .start_run(RunStart {
                run: run.id.clone(),
                deadline: SystemTime::now() + timeout,
                steps,
                events,
            })
            .await?;
        // Its first steps need the plan at once: no read of the run's definition back.
        self.started(&id, pinned);
        Ok(started)
    }

    /// What follows a run's start here: its plan cached (unless the caller did), the
    /// `run_started` log line in its span, the change, the claim loop and the relay woken.
    pub fn started(&self, id: &str, pinned: Pinned) {
        let (workflow, trigger) = (pinned.workflow_name.clone(), pinned.trigger);
        let plan = match self.plans.lock().get(id) {
            Some(p) => Ok(p.clone()),
            None => Err(pinned),
        };
        match plan.or_else(|pinned| self.remember(id, pinned)) {
            Ok(plan) => plan
                .span
                .in_scope(|| tracing::info!(trigger = trigger.as_str(), "run_started")),
            Err(e) => {
                tracing::warn!(run = %id, error = %e, "run_started with a definition that does not plan")
            }
        }
        self.emit(FlowChange::RunStarted {
            run_id: id.to_owned(),
            workflow,
            trigger,
        });
        self.work.notify_one();
        self.outbox.notify_one();
    }
}

/// The steps of a run pinned to `pinned`: carried-over outputs (a retry) as `Succeeded`, the
/// rest `Pending`, each waiting on its parents that are not carried over.
pub(crate) fn new_steps(
    pinned: &Pinned,
    carried: &HashMap<String, (serde_json::Value, Option<serde_json::Value>)>,
) -> Vec<NewStep> {
    let deps = pinned.definition.dependencies();
    deps.iter()
        .map(|(name, parents)| {
            let node_input = pinned
                .definition
                .node(name)
                .map(|n| n.inputs.clone())
                .unwrap_or_default();
            match carried.get(name) {
                Some((output, detail)) => NewStep {
                    name: name.clone(),
                    input: node_input,
                    status: RunStatus::Succeeded,
                    waiting_on: 0,
                    output: Some(output.clone()),
                    detail: detail.clone(),
                },
                None => NewStep {
                    name: name.clone(),
                    input: node_input,
                    status: RunStatus::Pending,
                    waiting_on: u32::try_from(
                        parents.iter().filter(|p| !carried.contains_key(*p)).count(),
                    )
                    .unwrap_or(u32::MAX),
                    output: None,
                    detail: None,
                },
            }
        })
        .collect()
}

impl Core {
    pub fn run_finished(&self, run: &Run, pinned: &Pinned) {
        let status = crate::plan::run_status(run);
        let duration = run
            .updated_at
            .duration_since(run.created_at)
            .unwrap_or(Duration::ZERO);
        let span = self
            .plans
            .lock()
            .get(run.id.as_str())
            .map(|p| p.span.clone())
            .unwrap_or_else(|| {
                tracing::info_span!("workflow.execute", run_id = %run.id, workflow = %pinned.workflow_name, version = pinned.version)
            });
        span.in_scope(|| {
            tracing::info!(
                status = status.as_str(),
                duration_ms = duration.as_millis() as u64,
                error = run.error.as_deref().unwrap_or(""),
                "run_finished"
            )
        });
        self.emit(FlowChange::RunFinished {
            run_id: run.id.to_string(),
            workflow: pinned.workflow_name.clone(),
            trigger: pinned.trigger,
            status,
            duration,
        });
        self.forget(run.id.as_str());
    }

    pub fn agent_finished(
        &self,
        run_id: &str,
        node_id: &str,
        agent: &str,
        status: NodeStatus,
        duration: Duration,
    ) {
        self.emit(FlowChange::AgentRunFinished {
            run_id: run_id.to_owned(),
            node_id: node_id.to_owned(),
            agent: agent.to_owned(),
            status,
            duration,
        });
    }
}

/// The ACTIVE workflows with an event trigger: `(workflow id, pattern)`, refreshed by the reaper
/// and after every workflow change made here.
#[derive(Clone, Default)]
pub(crate) struct WorkflowCatalog {
    inner: Arc<Mutex<Vec<(String, String)>>>,
    changed: Arc<Notify>,
}

impl WorkflowCatalog {
    pub async fn refresh(&self, core: &Core) {
        let Ok(all) = core.store.workflows().await else {
            return;
        };
        let list = all
            .into_iter()
            .filter_map(|w| {
                let spec: hybridgrid_flow_model::WorkflowSpec =
                    serde_json::from_value(w.definition).ok()?;
                (spec.status == hybridgrid_flow_model::WorkflowStatus::Active
                    && spec.trigger.kind == hybridgrid_flow_model::TriggerType::Event)
                    .then(|| Some((w.id.to_string(), spec.trigger.pattern?)))
                    .flatten()
            })
            .collect();
        let changed = {
            let mut cur = self.inner.lock();
            let changed = *cur != list;
            *cur = list;
            changed
        };
        if changed {
            self.changed.notify_one();
        }
    }

    pub async fn changed(&self) {
        self.changed.notified().await
    }

    pub fn patterns(&self) -> std::collections::BTreeSet<String> {
        self.inner.lock().iter().map(|(_, p)| p.clone()).collect()
    }

    pub fn with_pattern(&self, pattern: &str) -> Vec<String> {
        self.inner
            .lock()
            .iter()
            .filter(|(_, p)| p == pattern)
            .map(|(id, _)| id.clone())
            .collect()
    }
}
