//! [`FlowEngine`]: the facade the HTTP API, the CLI and embedders call.

use crate::{Executors, FlowChange, FlowConfig, FlowError, TriggerOptions, Triggered};
use hybridgrid_core::{EventBus, Store};
use hybridgrid_flow_model::{
    Agent, AgentRun, AgentSpec, Approval, ApprovalStatus, DecisionRequest, TriggerSource, Workflow,
    WorkflowRun, WorkflowSpec,
};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast;

/// A running engine. Cheap to clone (all clones share one engine); background tasks stop with
/// [`FlowEngine::shutdown`] or when the last clone is dropped.
#[derive(Clone)]
pub struct FlowEngine {
    inner: Arc<Inner>,
}

struct Inner {
    engine_id: String,
    changes: broadcast::Sender<FlowChange>,
    #[allow(dead_code)]
    store: Arc<dyn Store>,
}

fn not_ready() -> FlowError {
    FlowError::Invalid {
        what: "request",
        message: "facade skeleton: not implemented yet".into(),
    }
}

impl FlowEngine {
    /// Starts an engine: applies nothing to the store that its backend did not migrate at open,
    /// takes back the steps leased under this `engine_id` (a restart), and starts the step runners,
    /// the outbox relay to `bus`, the event-trigger subscription, and the reaper of overdue runs
    /// and expired approvals.
    pub async fn start(
        config: FlowConfig,
        store: Arc<dyn Store>,
        bus: Arc<dyn EventBus>,
        executors: Executors,
    ) -> Result<FlowEngine, FlowError> {
        let _ = (bus, executors);
        let (changes, _) = broadcast::channel(1024);
        Ok(FlowEngine {
            inner: Arc::new(Inner {
                engine_id: config.engine_id.unwrap_or_else(|| "skeleton".into()),
                changes,
                store,
            }),
        })
    }

    /// This engine's id in leases.
    pub fn engine_id(&self) -> &str {
        &self.inner.engine_id
    }

    /// Stops the background tasks; steps running here are cancelled and their leases released,
    /// so another engine (or the next start) runs them again.
    pub async fn shutdown(&self) {}

    /// Registers an agent. A name already registered is [`FlowError::Conflict`]; an invalid
    /// definition (missing command or image, a schema that does not compile) is `Invalid` or
    /// `Unprocessable`.
    pub async fn create_agent(&self, spec: AgentSpec) -> Result<Agent, FlowError> {
        let _ = spec;
        Err(not_ready())
    }

    /// Every agent, by name.
    pub async fn agents(&self) -> Result<Vec<Agent>, FlowError> {
        Err(not_ready())
    }

    /// An agent by id or by name.
    pub async fn agent(&self, id_or_name: &str) -> Result<Agent, FlowError> {
        let _ = id_or_name;
        Err(not_ready())
    }

    /// Replaces an agent's definition (renaming onto another agent's name is `Conflict`).
    pub async fn update_agent(&self, id: &str, spec: AgentSpec) -> Result<Agent, FlowError> {
        let _ = (id, spec);
        Err(not_ready())
    }

    /// Removes an agent; `Conflict` while an ACTIVE workflow uses it.
    pub async fn delete_agent(&self, id: &str) -> Result<(), FlowError> {
        let _ = id;
        Err(not_ready())
    }

    /// Creates a workflow after validating it (unknown agent or action, unknown dependency,
    /// duplicate node id, a cycle named by its path, templates referring to nodes that are not
    /// upstream: `Invalid`; static inputs not matching the input schema: `Unprocessable`; a name
    /// already used: `Conflict`). Nothing is stored unless it is valid.
    pub async fn create_workflow(&self, spec: WorkflowSpec) -> Result<Workflow, FlowError> {
        let _ = spec;
        Err(not_ready())
    }

    /// Every workflow, by name (archived ones included).
    pub async fn workflows(&self) -> Result<Vec<Workflow>, FlowError> {
        Err(not_ready())
    }

    /// A workflow by id.
    pub async fn workflow(&self, id: &str) -> Result<Workflow, FlowError> {
        let _ = id;
        Err(not_ready())
    }

    /// Replaces a workflow's definition (validated as on create) and bumps its version; runs in
    /// flight keep the version they started with. The name cannot change (`Invalid`).
    pub async fn update_workflow(
        &self,
        id: &str,
        spec: WorkflowSpec,
    ) -> Result<Workflow, FlowError> {
        let _ = (id, spec);
        Err(not_ready())
    }

    /// Archives a workflow (status `ARCHIVED`): it no longer triggers; its runs are kept.
    pub async fn delete_workflow(&self, id: &str) -> Result<Workflow, FlowError> {
        let _ = id;
        Err(not_ready())
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
        let _ = (workflow_id, context, source, options);
        Err(not_ready())
    }

    /// Runs of a workflow, newest first, at most `limit`, without their nodes.
    pub async fn runs(
        &self,
        workflow_id: &str,
        limit: usize,
    ) -> Result<Vec<WorkflowRun>, FlowError> {
        let _ = (workflow_id, limit);
        Err(not_ready())
    }

    /// A run with its nodes' states.
    pub async fn run(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let _ = run_id;
        Err(not_ready())
    }

    /// The agent runs of a run (the last attempt of each node: input, output, stdout, stderr).
    pub async fn agent_runs(&self, run_id: &str) -> Result<Vec<AgentRun>, FlowError> {
        let _ = run_id;
        Err(not_ready())
    }

    /// Cancels a run: it becomes CANCELLED, its open nodes SKIPPED, and steps running on any
    /// engine are stopped. A finished run is `Conflict`.
    pub async fn cancel(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let _ = run_id;
        Err(not_ready())
    }

    /// Retries a FAILED or CANCELLED run (else `Conflict`): a new run (trigger `retry`,
    /// `retryOf` = the old id) on the same pinned definition and context that keeps the old run's
    /// successful nodes (their outputs) and runs the rest.
    pub async fn retry(&self, run_id: &str) -> Result<WorkflowRun, FlowError> {
        let _ = run_id;
        Err(not_ready())
    }

    /// Approvals, newest first; only those with `status` when given.
    pub async fn approvals(
        &self,
        status: Option<ApprovalStatus>,
    ) -> Result<Vec<Approval>, FlowError> {
        let _ = status;
        Err(not_ready())
    }

    /// An approval by id.
    pub async fn approval(&self, id: &str) -> Result<Approval, FlowError> {
        let _ = id;
        Err(not_ready())
    }

    /// Decides an approval: APPROVED runs the step at once, REJECTED fails it (and the run, unless
    /// the node may fail). The decider, notes and time are recorded. Already decided: `Conflict`.
    pub async fn decide(
        &self,
        approval_id: &str,
        decision: DecisionRequest,
    ) -> Result<Approval, FlowError> {
        let _ = (approval_id, decision);
        Err(not_ready())
    }

    /// Whether the store answers (a cheap query).
    pub async fn health_db(&self) -> Result<(), FlowError> {
        Err(not_ready())
    }

    /// Runs still RUNNING past their deadline (what `doctor` reports; the reaper fails them).
    pub async fn overdue_runs(&self) -> Result<Vec<WorkflowRun>, FlowError> {
        Err(not_ready())
    }

    /// Waits until the run is finished or waits for an approval, at most `timeout`, and returns it.
    pub async fn wait_run(
        &self,
        run_id: &str,
        timeout: Duration,
    ) -> Result<WorkflowRun, FlowError> {
        let _ = (run_id, timeout);
        Err(not_ready())
    }

    /// Changes made by this engine from now on (runs started and finished, agent runs,
    /// approvals), for metrics. A slow receiver misses changes (`Lagged`) rather than slowing
    /// the engine.
    pub fn watch(&self) -> broadcast::Receiver<FlowChange> {
        self.inner.changes.subscribe()
    }
}
