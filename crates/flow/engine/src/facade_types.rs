//! Small types of the facade: trigger options, trigger results, change notifications.

use hybridgrid_flow_model::{Decision, FlowRunStatus, NodeStatus, TriggerSource};
use std::time::Duration;

/// Options of [`FlowEngine::trigger`](crate::FlowEngine::trigger).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TriggerOptions {
    /// A second trigger with the same key returns the first run instead of starting another
    /// (an alert's fingerprint plus its `startsAt`, an event's subject and sequence).
    pub idempotency_key: Option<String>,
}

/// What [`FlowEngine::trigger`](crate::FlowEngine::trigger) did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Triggered {
    /// The run.
    pub run_id: String,
    /// True when the idempotency key matched an existing run (nothing new started).
    pub duplicate: bool,
}

/// A change made by this engine, for metrics and dashboards ([`FlowEngine::watch`](crate::FlowEngine::watch)).
/// Each engine reports what it did itself; the bus events cover all engines.
#[derive(Clone, Debug, PartialEq)]
pub enum FlowChange {
    /// A run started.
    RunStarted {
        /// Run id.
        run_id: String,
        /// Workflow name.
        workflow: String,
        /// What started it.
        trigger: TriggerSource,
    },
    /// A run ended.
    RunFinished {
        /// Run id.
        run_id: String,
        /// Workflow name.
        workflow: String,
        /// What started it.
        trigger: TriggerSource,
        /// `SUCCEEDED`, `FAILED` or `CANCELLED`.
        status: FlowRunStatus,
        /// From creation to the end.
        duration: Duration,
    },
    /// An attempt of an agent ended (`SUCCEEDED` or `FAILED`; a retried failure counts too).
    AgentRunFinished {
        /// Run id.
        run_id: String,
        /// Node id.
        node_id: String,
        /// Agent name.
        agent: String,
        /// Outcome.
        status: NodeStatus,
        /// The attempt's wall time.
        duration: Duration,
    },
    /// A step now waits for approval.
    ApprovalRequested {
        /// Approval id.
        approval_id: String,
        /// Run id.
        run_id: String,
    },
    /// An approval was decided.
    ApprovalDecided {
        /// Approval id.
        approval_id: String,
        /// The decision.
        decision: Decision,
        /// From request to decision.
        waited: Duration,
    },
}
