//! [`FlowEngine`]: the facade the HTTP API, the CLI and embedders call.

use crate::core::{AGENT_KIND, Core, WorkflowCatalog};
use crate::plan::{Pinned, pinned_of, to_agent_run, to_approval, to_workflow_run};
use crate::{Executors, FlowChange, FlowConfig, FlowError, TriggerOptions, Triggered};
use hybridgrid_core::ids::{RunId, WorkflowId};
use hybridgrid_core::store::{NewRun, RunStatus, StoreError};
use hybridgrid_core::store_flow::{Record, RunFinish, RunLaunch, StepDecision};
use hybridgrid_core::{EventBus, Store};
use hybridgrid_flow_model::time::{parse_rfc3339, rfc3339};
use hybridgrid_flow_model::validation::{validate_agent, validate_workflow};
use hybridgrid_flow_model::{
    Agent, AgentRun, AgentSpec, Approval, ApprovalStatus, Decision, DecisionRequest, FlowEventKind,
    FlowRunStatus, NodeStatus, TriggerSource, Workflow, WorkflowRun, WorkflowSpec, WorkflowStatus,
};
use parking_lot::Mutex;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::{Notify, broadcast};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// A running engine. Cheap to clone (all clones share one engine); background tasks stop with
/// [`FlowEngine::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct FlowEngine {
    inner: Arc<Inner>,
}

struct Inner {
    core: Arc<Core>,
    catalog: WorkflowCatalog,
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.core.shutdown.cancel();
    }
}

impl FlowEngine {
    /// Starts an engine on a store its backend has migrated at open: takes back the steps leased
    /// under this `engine_id` (a restart), then starts the step runners, lease renewal, the
    /// outbox relay to `bus`, the event-trigger subscription, and the reaper of overdue runs and
    /// expired approvals.
    pub async fn start(
        config: FlowConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        executors: Executors,
    ) -> Result<FlowEngine, FlowError> {
        let engine_id = config
            .engine_id
            .clone()
            .unwrap_or_else(|| format!("flow-{}", uuid::Uuid::new_v4().simple()));
        let released = store.release_leases(&engine_id).await?;
        let (changes, _) = broadcast::channel(4096);
        let core = Arc::new(Core {
            lanes: crate::lanes::Lanes::new(config.writers.unwrap_or(1)),
            config,
            engine_id: engine_id.clone(),
            store,
            bus,
            executors,
            changes,
            work: Notify::new(),
            outbox: Notify::new(),
            plans: Mutex::new(HashMap::new()),
            running: Mutex::new(HashMap::new()),
            shutdown: CancellationToken::new(),
        });
        let catalog = WorkflowCatalog::default();
        catalog.refresh(&core).await;
        let mut tasks = JoinSet::new();
        crate::background::spawn_all(&core, catalog.clone(), &mut tasks);
        tracing::info!(engine = %engine_id, resumed_steps = released, max_parallel = core.config.max_parallel, "flow_engine_started");
        Ok(FlowEngine {
            inner: Arc::new(Inner {
                core,
                catalog,
                tasks: Mutex::new(Some(tasks)),
            }),
        })
    }

    /// This engine's id in leases.
    pub fn engine_id(&self) -> &str {
        &self.inner.core.engine_id
    }

    /// Stops the background tasks; steps running here are cancelled and their leases released,
    /// so another engine (or the next start) runs them again.
    pub async fn shutdown(&self) {
        self.inner.core.shutdown.cancel();
        let tasks = self.inner.tasks.lock().take();
        if let Some(mut tasks) = tasks {
            let _ = tokio::time::timeout(Duration::from_secs(10), async {
                while tasks.join_next().await.is_some() {}
            })
            .await;
        }
    }

    fn core(&self) -> &Arc<Core> {
        &self.inner.core
    }

    /// Registers an agent. A name already registered is [`FlowError::Conflict`]; an invalid
    /// definition (missing command or image, a schema that does not compile) is `Invalid` or
    /// `Unprocessable`.
    pub async fn create_agent(&self, spec: AgentSpec) -> Result<Agent, FlowError> {
        validate_agent(&spec).map_err(|e| FlowError::from_validation("agent", e))?;
        let doc = to_doc(&spec)?;
        let rec = self
            .core()
            .store
            .create_record(AGENT_KIND, &spec.name, doc)
            .await
            .map_err(|e| dup(e, "agent"))?;
        agent_of(rec)
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<Agent>, FlowError> {
        self.core()
            .store
            .records(AGENT_KIND)
            .await?
            .into_iter()
            .map(agent_of)
            .collect()
    }

    /// An agent by id or by name.
    pub async fn agent(&self, id_or_name: &str) -> Result<Agent, FlowError> {
        match self.core().store.record(AGENT_KIND, id_or_name).await {
            Ok(r) => agent_of(r),
            Err(StoreError::NotFound { .. }) => self
                .agents()
                .await?
                .into_iter()
                .find(|a| a.spec.name == id_or_name)
                .ok_or_else(|| FlowError::NotFound {
                    what: "agent",
                    id: id_or_name.to_owned(),
                }),
            Err(e) => Err(e.into()),
        }
    }

    /// Replaces an agent's definition (renaming onto another agent's name is `Conflict`). Runs
    /// in flight keep the definition they started with.
    pub async fn update_agent(&self, id: &str, spec: AgentSpec) -> Result<Agent, FlowError> {
        validate_agent(&spec).map_err(|e| FlowError::from_validation("agent", e))?;
        let current = self.agent(id).await?;
        let rec = self
            .core()
            .store
            .update_record(AGENT_KIND, &current.id, &spec.name, to_doc(&spec)?)
            .await
            .map_err(|e| not_found_as(dup(e, "agent"), "agent", id))?;
        agent_of(rec)
    }

    /// Removes an agent; `Conflict` while an ACTIVE workflow uses it.
    pub async fn delete_agent(&self, id: &str) -> Result<(), FlowError> {
        let agent = self.agent(id).await?;
        for wf in self.workflows().await? {
            if wf.spec.status == WorkflowStatus::Active
                && wf.spec.nodes.iter().any(|n| n.agent == agent.spec.name)
            {
                return Err(FlowError::Conflict {
                    what: "agent",
                    id: agent.spec.name.clone(),
                    message: format!(
                        "used by ACTIVE workflow {:?} ({}); archive it first",
                        wf.spec.name, wf.id
                    ),
                });
            }
        }
        self.core()
            .store
            .delete_record(AGENT_KIND, &agent.id)
            .await
            .map_err(|e| not_found_as(e.into(), "agent", id))
    }

    async fn agent_map(&self) -> Result<BTreeMap<String, AgentSpec>, FlowError> {
        Ok(self
            .agents()
            .await?
            .into_iter()
            .map(|a| (a.spec.name.clone(), a.spec))
            .collect())
    }

    /// Creates a workflow after validating it (unknown agent or action, unknown dependency,
    /// duplicate node id, a cycle named by its path, templates referring to nodes that are not
    /// upstream: `Invalid`; static inputs not matching the input schema: `Unprocessable`; a name
    /// already used: `Conflict`). Nothing is stored unless it is valid.
    pub async fn create_workflow(&self, spec: WorkflowSpec) -> Result<Workflow, FlowError> {
        validate_workflow(&spec, &self.agent_map().await?)
            .map_err(|e| FlowError::from_validation("workflow", e))?;
        let wf = self
            .core()
            .store
            .create_workflow(&spec.name, to_doc(&spec)?)
            .await
            .map_err(|e| dup(e, "workflow"))?;
        self.inner.catalog.refresh(self.core()).await;
        workflow_of(wf)
    }

    /// Every workflow, by name (archived ones included).
    pub async fn workflows(&self) -> Result<Vec<Workflow>, FlowError> {
        self.core()
            .store
            .workflows()
            .await?
            .into_iter()
            .map(workflow_of)
            .collect()
    }

    /// A workflow by id.
    pub async fn workflow(&self, id: &str) -> Result<Workflow, FlowError> {
        workflow_of(self.core().store.workflow(&WorkflowId::new(id)).await?)
    }

    /// Replaces a workflow's definition (validated as on create) and bumps its version; runs in
    /// flight keep the version they started with. The name cannot change (`Invalid`).
    pub async fn update_workflow(
        &self,
        id: &str,
        spec: WorkflowSpec,
    ) -> Result<Workflow, FlowError> {
        let current = self.workflow(id).await?;
        if current.spec.name != spec.name {
            return Err(FlowError::Invalid {
                what: "workflow",
                message: format!(
                    "name: a workflow cannot be renamed ({:?} to {:?}); create a new one",
                    current.spec.name, spec.name
                ),
            });
        }
        if spec.status != WorkflowStatus::Archived {
            validate_workflow(&spec, &self.agent_map().await?)
                .map_err(|e| FlowError::from_validation("workflow", e))?;
        }
        let wf = self
            .core()
            .store
            .update_workflow(&WorkflowId::new(id), to_doc(&spec)?)
            .await?;
        self.inner.catalog.refresh(self.core()).await;
        workflow_of(wf)
    }

    /// Archives a workflow (status `ARCHIVED`): it no longer triggers; its runs are kept.
    pub async fn delete_workflow(&self, id: &str) -> Result<Workflow, FlowError> {
        let mut spec = self.workflow(id).await?.spec;
        spec.status = WorkflowStatus::Archived;
        self.update_workflow(id, spec).await
    }

    /// Starts a run of an ACTIVE workflow (else `Conflict`) with `context` as what templates see
    /// as `context`. With an idempotency key already used, returns that run (`duplicate`).
    /// Returns once the run and its steps are stored; the first steps start at once.
    pub async fn trigger(
        &self,
        workflow_id: &str,
        context: serde_json::Value,
        source: TriggerSource,
        options: TriggerOptions,
    ) -> Result<Triggered, FlowError> {
        trigger_in(self.core(), workflow_id, context, source, options).await
    }

    /// Runs of a workflow, newest first, at most `limit`, without their nodes.
    pub async fn runs(
        &self,
        workflow_id: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRun>, FlowError> {
        self.workflow(workflow_id).await?;
        let runs = self
            .core()
            .store
            .workflow_runs(&WorkflowId::new(workflow_id), limit)
            .await?;
        Ok(runs
            .iter()
            .filter_map(|r| pinned_of(r).ok().map(|p| to_workflow_run(r, &p, None)))
            .collect())
    }

    /// A run with its nodes' states.
    pub async fn run(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let id = RunId::new(run_id);
        let run = self.core().store.run(&id).await?;
        let pinned = pinned(&run)?;
        let steps = self.core().store.steps(&id).await?;
        Ok(to_workflow_run(&run, &pinned, Some(&steps)))
    }

    /// The agent runs of a run (the last attempt of each node: input, output, stdout, stderr).
    pub async fn agent_runs(&self, run_id: &str) -> Result<Vec<AgentRun>, FlowError> {
        let id = RunId::new(run_id);
        let run = self.core().store.run(&id).await?;
        let pinned = pinned(&run)?;
        let steps = self.core().store.steps(&id).await?;
        let order: HashMap<&str, usize> = pinned
            .definition
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.id.as_str(), i))
            .collect();
        let mut out: Vec<AgentRun> = steps
            .iter()
            .map(|s| to_agent_run(run_id, &pinned, s))
            .collect();
        out.sort_by_key(|a| order.get(a.node_id.as_str()).copied().unwrap_or(usize::MAX));
        Ok(out)
    }

    /// Cancels a run: it becomes CANCELLED, its open nodes SKIPPED, and steps running on this
    /// engine are stopped (on other engines their results are refused when they finish). A
    /// finished run is `Conflict`.
    pub async fn cancel(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let core = self.core();
        let id = RunId::new(run_id);
        let run = core.store.run(&id).await?;
        let pinned = pinned(&run)?;
        let ev = core.event(FlowEventKind::RunCancelled, run_id, &pinned, |e| {
            e.run_status = Some(FlowRunStatus::Cancelled);
        });
        let done = core
            .store
            .finish_run(RunFinish {
                run: id,
                from: vec![RunStatus::Pending, RunStatus::Running],
                to: RunStatus::Cancelled,
                error: "cancelled on request".into(),
                events: vec![ev],
            })
            .await
            .map_err(|e| finished_conflict(e, run_id))?;
        core.outbox.notify_one();
        core.run_finished(&done, &pinned);
        self.run(run_id).await
    }

    /// Retries a FAILED or CANCELLED run (else `Conflict`): a new run (trigger `retry`,
    /// `retryOf` = the old id) on the same pinned definition and context that keeps the old run's
    /// successful nodes (their outputs) and runs the rest.
    pub async fn retry(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let core = self.core();
        let id = RunId::new(run_id);
        let old = core.store.run(&id).await?;
        if !matches!(old.status, RunStatus::Failed | RunStatus::Cancelled) {
            return Err(FlowError::Conflict {
                what: "run",
                id: run_id.to_owned(),
                message: format!(
                    "is {}; only FAILED or CANCELLED runs can be retried",
                    crate::plan::run_status(&old)
                ),
            });
        }
        let mut pinned = pinned(&old)?;
        pinned.trigger = TriggerSource::Retry;
        pinned.retry_of = Some(run_id.to_owned());
        let carried: HashMap<String, (serde_json::Value, Option<serde_json::Value>)> = core
            .store
            .steps(&id)
            .await?
            .into_iter()
            .filter(|s| s.status == RunStatus::Succeeded)
            .filter_map(|s| Some((s.name, (s.output?, s.detail))))
            .collect();
        let run = core
            .store
            .create_run(NewRun {
                workflow_id: old.workflow_id.clone(),
                kind: "workflow".into(),
                input: to_doc(&pinned)?,
                idempotency_key: None,
            })
            .await?;
        core.start_pending(&run, &carried).await?;
        self.run(run.id.as_str()).await
    }

    /// Approvals, newest first; only those with `status` when given.
    pub async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, FlowError> {
        let waiting_only = status == Some(ApprovalStatus::Waiting);
        let steps = self.core().store.approval_steps(waiting_only, 1000).await?;
        Ok(steps
            .iter()
            .filter_map(to_approval)
            .filter(|a| status.is_none_or(|s| a.status == s))
            .collect())
    }

    /// An approval by id.
    pub async fn approval(&self, id: &str) -> Result<Approval, FlowError> {
        approval_in(self.core(), id).await.map(|(a, _)| a)
    }

    /// Decides an approval: APPROVED runs the step at once, REJECTED fails it (and the run, unless
    /// the node may fail). The decider, notes and time are recorded. Already decided: `Conflict`.
    pub async fn decide(
        &self,
        approval_id: &str,
        decision: DecisionRequest,
    ) -> Result<Approval, FlowError> {
        decide_in(self.core(), approval_id, decision).await
    }

    /// Whether the store answers (a cheap query).
    pub async fn health_db(&self) -> Result<(), FlowError> {
        self.core().store.runs(None, 1).await?;
        Ok(())
    }

    /// Runs still RUNNING past their deadline (what `doctor` reports; the reaper fails them).
    pub async fn overdue_runs(&self) -> Result<Vec<WorkflowRun>, FlowError> {
        let runs = self
            .core()
            .store
            .overdue_runs(SystemTime::now(), 1000)
            .await?;
        Ok(runs
            .iter()
            .filter_map(|r| pinned_of(r).ok().map(|p| to_workflow_run(r, &p, None)))
            .collect())
    }

    /// Waits until the run is finished or waits for an approval, at most `timeout`, and returns it
    /// as it then is.
    pub async fn wait_run(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> Result<WorkflowRun, FlowError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.watch();
        loop {
            let run = self.core().store.run(&RunId::new(run_id)).await?;
            let status = crate::plan::run_status(&run);
            if status.is_terminal()
                || status == FlowRunStatus::WaitingApproval
                || tokio::time::Instant::now() >= deadline
            {
                return self.run(run_id).await;
            }
            // Woken by this engine's changes; polled for those made elsewhere.
            let _ = tokio::time::timeout(Duration::from_millis(100), async {
                loop {
                    match changes.recv().await {
                        Ok(FlowChange::RunFinished { run_id: r, .. })
                        | Ok(FlowChange::ApprovalRequested { run_id: r, .. })
                            if r == run_id =>
                        {
                            return;
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                        _ => {}
                    }
                }
            })
            .await;
        }
    }

    /// Changes made by this engine from now on (runs started and finished, agent runs,
    /// approvals), for metrics. A slow receiver misses changes (`Lagged`) rather than slowing
    /// the engine.
    pub fn watch(&self) -> broadcast::Receiver<FlowChange> {
        self.inner.core.changes.subscribe()
    }
}

pub(crate) async fn trigger_in(
    core: &Arc<Core>,
    workflow_id: &str,
    context: serde_json::Value,
    source: TriggerSource,
    options: TriggerOptions,
) -> Result<Triggered, FlowError> {
    // The workflow and the agents are read side by side (two connections, one wait).
    let wf_id = WorkflowId::new(workflow_id);
    let (wf, records) = tokio::join!(core.store.workflow(&wf_id), core.store.records(AGENT_KIND));
    let wf = workflow_of(wf?)?;
    if wf.spec.status != WorkflowStatus::Active {
        return Err(FlowError::Conflict {
            what: "workflow",
            id: workflow_id.to_owned(),
            message: format!(
                "is {}; only ACTIVE workflows can be triggered",
                wf.spec.status
            ),
        });
    }
    let all: BTreeMap<String, AgentSpec> = records?
        .into_iter()
        .filter_map(|r| serde_json::from_value::<AgentSpec>(r.doc).ok())
        .map(|a| (a.name.clone(), a))
        .collect();
    // Validated when saved; agents removed since are named here, not at run time.
    if let Some(n) = wf.spec.nodes.iter().find(|n| !all.contains_key(&n.agent)) {
        return Err(FlowError::Invalid {
            what: "workflow",
            message: format!(
                "node {:?} uses agent {:?}, which is no longer registered",
                n.id, n.agent
            ),
        });
    }
    let agents = wf
        .spec
        .nodes
        .iter()
        .filter_map(|n| all.get(&n.agent).map(|a| (n.agent.clone(), a.clone())))
        .collect();
    let pinned = Pinned {
        workflow_id: wf.id.clone(),
        workflow_name: wf.spec.name.clone(),
        version: wf.version,
        definition: wf.spec,
        agents,
        context,
        trigger: source,
        retry_of: None,
    };
    // Created and started in one transaction of the claim loop, with whatever else is being
    // written meanwhile, and its first steps claimed in it.
    let id = RunId::random();
    let input = to_doc(&pinned)?;
    let timeout = pinned
        .definition
        .timeout
        .map(|t| *t)
        .unwrap_or(*core.config.workflow_timeout);
    let launch = RunLaunch {
        id: id.clone(),
        new: NewRun {
            workflow_id: Some(WorkflowId::new(workflow_id)),
            kind: "workflow".into(),
            input,
            idempotency_key: options.idempotency_key.clone(),
        },
        deadline: SystemTime::now() + timeout,
        steps: crate::core::new_steps(&pinned, &HashMap::new()),
        events: vec![
            core.event(FlowEventKind::RunStarted, id.as_str(), &pinned, |e| {
                e.run_status = Some(FlowRunStatus::Running);
            }),
        ],
    };
    // The steps claimed with it find their plan here, not by reading the run back.
    // (A definition that does not plan is logged by `started`.)
    let _ = core.remember(id.as_str(), pinned.clone());
    let launched = match core.launch(launch).await {
        Ok(l) => l,
        Err(e) => {
            core.forget(id.as_str());
            return Err(e.into());
        }
    };
    if !launched.duplicate {
        core.started(id.as_str(), pinned);
        return Ok(Triggered {
            run_id: id.to_string(),
            duplicate: false,
        });
    }
    core.forget(id.as_str());
    let run = launched.run;
    if run.status != RunStatus::Pending {
        return Ok(Triggered {
            run_id: run.id.to_string(),
            duplicate: true,
        });
    }
    // A run created under this key but never started (by an engine that stopped in between).
    let run = core.store.run(&run.id).await?;
    match core.start_pending(&run, &HashMap::new()).await {
        Ok(_) => Ok(Triggered {
            run_id: run.id.to_string(),
            duplicate: false,
        }),
        // Another trigger with the same key started it meanwhile.
        Err(FlowError::Backend(StoreError::Conflict { .. })) => Ok(Triggered {
            run_id: run.id.to_string(),
            duplicate: true,
        }),
        Err(e) => Err(e),
    }
}

async fn approval_in(
    core: &Arc<Core>,
    id: &str,
) -> Result<(Approval, hybridgrid_core::store::Step), FlowError> {
    let not_found = || FlowError::NotFound {
        what: "approval",
        id: id.to_owned(),
    };
    let (run, node) = id.split_once('.').ok_or_else(not_found)?;
    let steps = core
        .store
        .steps(&RunId::new(run))
        .await
        .map_err(|e| not_found_as(e.into(), "approval", id))?;
    let step = steps
        .into_iter()
        .find(|s| s.name == node)
        .ok_or_else(not_found)?;
    let a = to_approval(&step).ok_or_else(not_found)?;
    Ok((a, step))
}

pub(crate) async fn decide_in(
    core: &Arc<Core>,
    id: &str,
    req: DecisionRequest,
) -> Result<Approval, FlowError> {
    if req.by.trim().is_empty() {
        return Err(FlowError::Invalid {
            what: "decision",
            message: "by: who decides must be given".into(),
        });
    }
    let (mut a, step) = approval_in(core, id).await?;
    if a.status != ApprovalStatus::Waiting {
        return Err(FlowError::Conflict {
            what: "approval",
            id: id.to_owned(),
            message: format!(
                "already decided: {:?} by {}",
                a.status,
                a.decided_by.as_deref().unwrap_or("?")
            ),
        });
    }
    let now = SystemTime::now();
    let waited = parse_rfc3339(&a.requested_at)
        .and_then(|t| now.duration_since(t).ok())
        .unwrap_or(Duration::ZERO);
    a.status = match req.decision {
        Decision::Approved => ApprovalStatus::Approved,
        Decision::Rejected => ApprovalStatus::Rejected,
    };
    a.decided_by = Some(req.by.clone());
    a.decided_at = Some(rfc3339(now));
    a.notes = req.notes.clone();
    let run = core.store.run(&step.run_id).await?;
    let pinned = pinned(&run)?;
    let ev = core.event(
        FlowEventKind::ApprovalDecided,
        step.run_id.as_str(),
        &pinned,
        |e| {
            e.node_id = Some(step.name.clone());
            e.approval_id = Some(id.to_owned());
            e.decision = Some(req.decision);
            e.node_status = Some(NodeStatus::Pending);
        },
    );
    core.store
        .decide_step(StepDecision {
            run: step.run_id.clone(),
            name: step.name.clone(),
            approval: to_doc(&a)?,
            extend_deadline: waited,
            events: vec![ev],
        })
        .await
        .map_err(|e| match e {
            StoreError::Stale { detail, .. } => FlowError::Conflict {
                what: "approval",
                id: id.to_owned(),
                message: detail,
            },
            other => other.into(),
        })?;
    tracing::info!(approval = %id, decision = req.decision.as_str(), by = %req.by, waited_ms = waited.as_millis() as u64, "approval_decided");
    core.work.notify_one();
    core.outbox.notify_one();
    core.emit(FlowChange::ApprovalDecided {
        approval_id: id.to_owned(),
        decision: req.decision,
        waited,
    });
    Ok(a)
}

fn to_doc<T: serde::Serialize>(v: &T) -> Result<serde_json::Value, FlowError> {
    serde_json::to_value(v).map_err(|e| FlowError::Invalid {
        what: "document",
        message: e.to_string(),
    })
}

fn pinned(run: &hybridgrid_core::store::Run) -> Result<Pinned, FlowError> {
    pinned_of(run).map_err(|message| FlowError::NotFound {
        what: "run",
        id: format!("{} ({message})", run.id),
    })
}

fn dup(e: StoreError, what: &'static str) -> FlowError {
    match e {
        StoreError::Duplicate { name, .. } => FlowError::Conflict {
            what,
            id: name,
            message: format!("a {what} with this name already exists"),
        },
        other => other.into(),
    }
}

fn not_found_as(e: FlowError, what: &'static str, id: &str) -> FlowError {
    match e {
        FlowError::NotFound { .. } => FlowError::NotFound {
            what,
            id: id.to_owned(),
        },
        other => other,
    }
}

fn finished_conflict(e: StoreError, run_id: &str) -> FlowError {
    match e {
        StoreError::Conflict { actual, .. } => FlowError::Conflict {
            what: "run",
            id: run_id.to_owned(),
            message: format!("is already {actual}"),
        },
        other => other.into(),
    }
}

fn agent_of(r: Record) -> Result<Agent, FlowError> {
    let spec: AgentSpec = serde_json::from_value(r.doc).map_err(|e| FlowError::Invalid {
        what: "agent",
        message: format!("stored agent {} does not decode: {e}", r.id),
    })?;
    Ok(Agent {
        id: r.id,
        spec,
        created_at: rfc3339(r.created_at),
        updated_at: rfc3339(r.updated_at),
    })
}

fn workflow_of(w: hybridgrid_core::store::Workflow) -> Result<Workflow, FlowError> {
    let spec: WorkflowSpec =
        serde_json::from_value(w.definition).map_err(|e| FlowError::Invalid {
            what: "workflow",
            message: format!("stored workflow {} does not decode: {e}", w.id),
        })?;
    Ok(Workflow {
        id: w.id.to_string(),
        version: w.version,
        spec,
        updated_at: rfc3339(w.updated_at),
    })
}
