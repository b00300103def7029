//! Runs, node states, agent runs and approvals, as the API returns them.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum FlowRunStatus {
    /// Created, not started yet.
    Pending,
    /// Steps are running or ready.
    Running,
    /// Running, with at least one step waiting for approval.
    WaitingApproval,
    /// Every node succeeded (or failed with `mayFail`).
    Succeeded,
    /// A node failed, the run timed out, or an approval was rejected.
    Failed,
    /// Cancelled on request.
    Cancelled,
}

impl FlowRunStatus {
    /// `PENDING`, `RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            FlowRunStatus::Pending => "PENDING",
            FlowRunStatus::Running => "RUNNING",
            FlowRunStatus::WaitingApproval => "WAITING_APPROVAL",
            FlowRunStatus::Succeeded => "SUCCEEDED",
            FlowRunStatus::Failed => "FAILED",
            FlowRunStatus::Cancelled => "CANCELLED",
        }
    }
    /// Whether the run is over.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            FlowRunStatus::Succeeded | FlowRunStatus::Failed | FlowRunStatus::Cancelled
        )
    }
}

impl fmt::Display for FlowRunStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where one node of a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum NodeStatus {
    /// Waiting for its parents (or for a retry's backoff).
    Pending,
    /// Running on an engine.
    Running,
    /// Waiting for a person's decision.
    WaitingApproval,
    /// Done well.
    Succeeded,
    /// Done badly (see `error`).
    Failed,
    /// Not run: an upstream node failed, the run was cancelled or timed out.
    Skipped,
}

impl NodeStatus {
    /// `PENDING`, `RUNNING`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            NodeStatus::Pending => "PENDING",
            NodeStatus::Running => "RUNNING",
            NodeStatus::WaitingApproval => "WAITING_APPROVAL",
            NodeStatus::Succeeded => "SUCCEEDED",
            NodeStatus::Failed => "FAILED",
            NodeStatus::Skipped => "SKIPPED",
        }
    }
}

impl fmt::Display for NodeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What started a run (the `trigger` label of `workflow_runs_total`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerSource {
    /// The API's trigger endpoint or an embedding program.
    #[default]
    Manual,
    /// A bus message (event trigger).
    Event,
    /// An AlertManager alert.
    Alert,
    /// Another webhook (Grafana).
    Webhook,
    /// `retry` of an earlier run.
    Retry,
}

impl TriggerSource {
    /// `manual`, `event`, `alert`, `webhook`, `retry`.
    pub fn as_str(self) -> &'static str {
        match self {
            TriggerSource::Manual => "manual",
            TriggerSource::Event => "event",
            TriggerSource::Alert => "alert",
            TriggerSource::Webhook => "webhook",
            TriggerSource::Retry => "retry",
        }
    }
}

/// One node of a run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeRun {
    /// Node id.
    pub id: String,
    /// Agent name.
    pub agent: String,
    /// Action.
    pub action: String,
    /// State.
    pub status: NodeStatus,
    /// Attempts started.
    pub attempt: u32,
    /// Ids of the nodes it waits for.
    pub depends_on: Vec<String>,
    /// Why it failed or was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A run of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkflowRun {
    /// Id.
    pub id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow name.
    pub workflow_name: String,
    /// The definition version this run is pinned to.
    pub workflow_version: i64,
    /// State.
    pub status: FlowRunStatus,
    /// What started it.
    pub trigger: TriggerSource,
    /// The context templates see as `context` (alert, event message, request body).
    pub context: serde_json::Value,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The run this one retries.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_of: Option<String>,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
    /// Wall time from creation to the end, once over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Its nodes, in definition order (empty in run lists).
    pub nodes: Vec<NodeRun>,
}

/// The last attempt of one node: what went in and what came out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AgentRun {
    /// `<runId>.<nodeId>`.
    pub id: String,
    /// Run id.
    pub run_id: String,
    /// Node id.
    pub node_id: String,
    /// Agent name.
    pub agent: String,
    /// Action.
    pub action: String,
    /// State.
    pub status: NodeStatus,
    /// Attempts started.
    pub attempt: u32,
    /// The resolved input (absent until resolved).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<serde_json::Value>,
    /// The output document.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<serde_json::Value>,
    /// Standard output as printed (bounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    /// Standard error, the agent's logs (bounded).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// Exit code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Wall time of the last attempt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A decision on an approval.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Decision {
    /// Run the step.
    Approved,
    /// Fail the step (and the run, unless the node may fail).
    Rejected,
}

impl Decision {
    /// `APPROVED`, `REJECTED`.
    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Approved => "APPROVED",
            Decision::Rejected => "REJECTED",
        }
    }
}

/// Where an approval stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ApprovalStatus {
    /// Waiting for a decision.
    Waiting,
    /// Approved (by a person, or by the timeout's default decision).
    Approved,
    /// Rejected (by a person, or by the timeout's default decision).
    Rejected,
}

/// The body of `POST /api/approvals/:id/decision`.
///
/// ```json
/// {"decision": "APPROVED", "by": "alice", "notes": "looks fine"}
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DecisionRequest {
    /// Approve or reject.
    pub decision: Decision,
    /// Who decides.
    #[serde(alias = "approver", alias = "decidedBy")]
    pub by: String,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}

/// A request for a person's decision on one step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// `<runId>.<nodeId>`.
    pub id: String,
    /// Run id.
    pub run_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Node id.
    pub node_id: String,
    /// Agent name.
    pub agent: String,
    /// Action.
    pub action: String,
    /// State.
    pub status: ApprovalStatus,
    /// The input the step will get.
    pub input: serde_json::Value,
    /// Asked, RFC 3339.
    pub requested_at: String,
    /// When the default decision applies, RFC 3339.
    pub expires_at: String,
    /// Who decided (`timeout` for the default decision).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    /// When, RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The decider's notes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
}
