//! The events the engine publishes on the bus, and their subjects.
//!
//! | subject | when |
//! |---|---|
//! | `workflow.run.started.<runId>` | a run started (or a retry run) |
//! | `workflow.run.completed.<runId>` | a run succeeded |
//! | `workflow.run.failed.<runId>` | a run failed (node failure, rejection, timeout) |
//! | `workflow.run.cancelled.<runId>` | a run was cancelled |
//! | `workflow.node.completed` | a node succeeded |
//! | `workflow.node.failed` | a node failed (its last attempt) |
//! | `workflow.approval.requested` | a node waits for approval |
//! | `workflow.approval.decided` | an approval was decided (by a person or its timeout) |
//!
//! Every payload is one JSON [`FlowEvent`]. Events go through an outbox in the store, written in
//! the same transaction as the transition, so a bus outage delays them but loses none (delivery is
//! at least once).

use crate::run::{Decision, FlowRunStatus, NodeStatus};
use serde::{Deserialize, Serialize};

/// Subject prefix of every flow event.
pub const SUBJECT_PREFIX: &str = "workflow";

/// What happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlowEventKind {
    /// `workflow.run.started.<runId>`
    RunStarted,
    /// `workflow.run.completed.<runId>`
    RunCompleted,
    /// `workflow.run.failed.<runId>`
    RunFailed,
    /// `workflow.run.cancelled.<runId>`
    RunCancelled,
    /// `workflow.node.completed`
    NodeCompleted,
    /// `workflow.node.failed`
    NodeFailed,
    /// `workflow.approval.requested`
    ApprovalRequested,
    /// `workflow.approval.decided`
    ApprovalDecided,
}

impl FlowEventKind {
    /// The subject this event is published on.
    pub fn subject(self, run_id: &str) -> String {
        match self {
            FlowEventKind::RunStarted => format!("workflow.run.started.{run_id}"),
            FlowEventKind::RunCompleted => format!("workflow.run.completed.{run_id}"),
            FlowEventKind::RunFailed => format!("workflow.run.failed.{run_id}"),
            FlowEventKind::RunCancelled => format!("workflow.run.cancelled.{run_id}"),
            FlowEventKind::NodeCompleted => "workflow.node.completed".to_owned(),
            FlowEventKind::NodeFailed => "workflow.node.failed".to_owned(),
            FlowEventKind::ApprovalRequested => "workflow.approval.requested".to_owned(),
            FlowEventKind::ApprovalDecided => "workflow.approval.decided".to_owned(),
        }
    }
}

/// The payload of every flow event.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FlowEvent {
    /// What happened.
    #[serde(rename = "type")]
    pub kind: FlowEventKind,
    /// Run id.
    pub run_id: String,
    /// Workflow id.
    pub workflow_id: String,
    /// Workflow name.
    pub workflow_name: String,
    /// Node id, for node and approval events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_id: Option<String>,
    /// Run status, for run events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_status: Option<FlowRunStatus>,
    /// Node status, for node events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_status: Option<NodeStatus>,
    /// Approval id, for approval events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub approval_id: Option<String>,
    /// The decision, for `approval_decided`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<Decision>,
    /// Why, for failures.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When, RFC 3339.
    pub at: String,
}

impl FlowEvent {
    /// The subject to publish it on.
    pub fn subject(&self) -> String {
        self.kind.subject(&self.run_id)
    }
}
