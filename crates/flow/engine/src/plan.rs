//! What a run is pinned to (stored as the run's input), the in-memory plan built from it, and the
//! conversions from store rows to the API's types.

use hybridgrid_core::store::{Run, RunStatus, Step};
use hybridgrid_core::store_flow::{PHASE_SKIPPED, PHASE_WAITING_APPROVAL};
use hybridgrid_flow_model::schema::CompiledSchema;
use hybridgrid_flow_model::time::rfc3339;
use hybridgrid_flow_model::{
    AgentRun, AgentSpec, Approval, ApprovalStatus, FlowRunStatus, NodeRun, NodeStatus,
    TriggerSource, WorkflowRun, WorkflowSpec,
};
use hybridgrid_scheduler::dag::Dag;
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// The run's input document: the definition and agents it is pinned to, and its context.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Pinned {
    pub workflow_id: String,
    pub workflow_name: String,
    pub version: i64,
    pub definition: WorkflowSpec,
    pub agents: BTreeMap<String, AgentSpec>,
    pub context: serde_json::Value,
    pub trigger: TriggerSource,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
}

/// A compiled schema (or why it does not compile), shared by every step of the run.
type SchemaSlot = Arc<Result<CompiledSchema, String>>;

/// A run's plan in memory: the pinned definition, its DAG, compiled schemas, known outputs.
pub(crate) struct Plan {
    pub run_id: String,
    pub pinned: Pinned,
    pub dag: Dag,
    pub agents: BTreeMap<String, Arc<AgentSpec>>,
    schemas: Mutex<HashMap<(String, bool), SchemaSlot>>,
    /// `workflow.execute` (fields `run_id`, `workflow`, `version`): the parent of the run's
    /// `agent.execute` step spans on this engine, so one run can be followed in the logs.
    pub span: tracing::Span,
    pub outputs: Mutex<HashMap<String, serde_json::Value>>,
}

impl Plan {
    pub fn new(run_id: String, pinned: Pinned) -> Result<Self, String> {
        let dag = Dag::new(pinned.definition.dependencies()).map_err(|e| e.to_string())?;
        let agents = pinned
            .agents
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(v.clone())))
            .collect();
        let span = tracing::info_span!(
            parent: None,
            "workflow.execute",
            run_id = %run_id,
            workflow = %pinned.workflow_name,
            version = pinned.version
        );
        Ok(Self {
            span,
            run_id,
            pinned,
            dag,
            agents,
            schemas: Mutex::new(HashMap::new()),
            outputs: Mutex::new(HashMap::new()),
        })
    }

    /// The compiled input (`output == false`) or output schema of `agent`/`action`.
    pub fn schema(
        &self,
        agent: &str,
        action: &str,
        output: bool,
    ) -> Arc<Result<CompiledSchema, String>> {
        let key = (format!("{agent}/{action}"), output);
        if let Some(s) = self.schemas.lock().get(&key) {
            return s.clone();
        }
        let compiled = match self.agents.get(agent).and_then(|a| a.capability(action)) {
            Some(c) => CompiledSchema::compile(if output {
                &c.output_schema
            } else {
                &c.input_schema
            })
            .map_err(|e| e.to_string()),
            None => Err(format!("agent {agent:?} has no action {action:?}")),
        };
        let compiled = Arc::new(compiled);
        self.schemas.lock().insert(key, compiled.clone());
        compiled
    }
}

pub(crate) fn run_status(run: &Run) -> FlowRunStatus {
    match run.status {
        RunStatus::Pending => FlowRunStatus::Pending,
        RunStatus::Running if run.waiting_approvals > 0 => FlowRunStatus::WaitingApproval,
        RunStatus::Running => FlowRunStatus::Running,
        RunStatus::Succeeded => FlowRunStatus::Succeeded,
        RunStatus::Failed => FlowRunStatus::Failed,
        RunStatus::Cancelled => FlowRunStatus::Cancelled,
    }
}

pub(crate) fn node_status(step: &Step) -> NodeStatus {
    match step.status {
        RunStatus::Pending if step.phase.as_deref() == Some(PHASE_WAITING_APPROVAL) => {
            NodeStatus::WaitingApproval
        }
        RunStatus::Pending => NodeStatus::Pending,
        RunStatus::Running => NodeStatus::Running,
        RunStatus::Succeeded => NodeStatus::Succeeded,
        RunStatus::Failed => NodeStatus::Failed,
        RunStatus::Cancelled => {
            let _ = PHASE_SKIPPED;
            NodeStatus::Skipped
        }
    }
}

pub(crate) fn pinned_of(run: &Run) -> Result<Pinned, String> {
    serde_json::from_value(run.input.clone())
        .map_err(|e| format!("run {} holds no workflow definition: {e}", run.id))
}

pub(crate) fn to_workflow_run(run: &Run, pinned: &Pinned, steps: Option<&[Step]>) -> WorkflowRun {
    let status = run_status(run);
    let duration_ms = status.is_terminal().then(|| {
        run.updated_at
            .duration_since(run.created_at)
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    });
    let nodes = steps
        .map(|steps| {
            let by_name: HashMap<&str, &Step> =
                steps.iter().map(|s| (s.name.as_str(), s)).collect();
            let deps: HashMap<String, Vec<String>> =
                pinned.definition.dependencies().into_iter().collect();
            pinned
                .definition
                .nodes
                .iter()
                .map(|n| {
                    let s = by_name.get(n.id.as_str());
                    NodeRun {
                        id: n.id.clone(),
                        agent: n.agent.clone(),
                        action: n.action.clone(),
                        status: s.map(|s| node_status(s)).unwrap_or(NodeStatus::Pending),
                        attempt: s.map(|s| s.attempt).unwrap_or(0),
                        depends_on: deps.get(&n.id).cloned().unwrap_or_default(),
                        error: s.and_then(|s| s.error.clone()),
                        updated_at: rfc3339(s.map(|s| s.updated_at).unwrap_or(run.updated_at)),
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    WorkflowRun {
        id: run.id.to_string(),
        workflow_id: pinned.workflow_id.clone(),
        workflow_name: pinned.workflow_name.clone(),
        workflow_version: pinned.version,
        status,
        trigger: pinned.trigger,
        context: pinned.context.clone(),
        error: run.error.clone(),
        retry_of: pinned.retry_of.clone(),
        created_at: rfc3339(run.created_at),
        updated_at: rfc3339(run.updated_at),
        duration_ms,
        nodes,
    }
}

pub(crate) fn to_agent_run(run_id: &str, pinned: &Pinned, step: &Step) -> AgentRun {
    let node = pinned.definition.node(&step.name);
    let d = step.detail.as_ref();
    let get_str = |k: &str| {
        d.and_then(|d| d.get(k))
            .and_then(|v| v.as_str())
            .map(str::to_owned)
    };
    AgentRun {
        id: format!("{run_id}.{}", step.name),
        run_id: run_id.to_owned(),
        node_id: step.name.clone(),
        agent: node.map(|n| n.agent.clone()).unwrap_or_default(),
        action: node.map(|n| n.action.clone()).unwrap_or_default(),
        status: node_status(step),
        attempt: step.attempt,
        input: d.and_then(|d| d.get("input")).cloned(),
        output: step.output.clone(),
        stdout: get_str("stdout"),
        stderr: get_str("stderr"),
        exit_code: d
            .and_then(|d| d.get("exitCode"))
            .and_then(|v| v.as_i64())
            .and_then(|v| i32::try_from(v).ok()),
        error: step.error.clone(),
        duration_ms: d.and_then(|d| d.get("durationMs")).and_then(|v| v.as_u64()),
        updated_at: rfc3339(step.updated_at),
    }
}

/// The approval stored on a step, with its status as the step says.
pub(crate) fn to_approval(step: &Step) -> Option<Approval> {
    let mut a: Approval = serde_json::from_value(step.approval.clone()?).ok()?;
    let waiting = node_status(step) == NodeStatus::WaitingApproval;
    if waiting {
        a.status = ApprovalStatus::Waiting;
    } else if a.status == ApprovalStatus::Waiting {
        // The run ended (cancelled, failed elsewhere, overdue) before anyone decided.
        a.status = ApprovalStatus::Rejected;
        a.decided_by = Some("system".into());
        a.decided_at = Some(rfc3339(step.updated_at));
        a.notes = Some(
            step.error
                .clone()
                .unwrap_or_else(|| "run ended before a decision".into()),
        );
    }
    Some(a)
}
