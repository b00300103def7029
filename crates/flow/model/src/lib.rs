//! # hybridgrid-flow-model
//!
//! The workflow orchestrator's model, as the HTTP API's JSON (camelCase): [`AgentSpec`]/[`Agent`]
//! (the registry), [`WorkflowSpec`]/[`Workflow`] (DAGs of agent actions), [`WorkflowRun`],
//! [`NodeRun`], [`AgentRun`], [`Approval`] and the bus [`event`]s; plus the pure logic over them:
//! [`validation`] (each error names the culprit, a cycle its path), input [`template`]s, and JSON
//! [`schema`] checks. The DAG itself lives in `hybridgrid_scheduler::dag`.
//!
//! ```
//! use hybridgrid_flow_model::{validation::validate_workflow, AgentSpec, WorkflowSpec};
//! use serde_json::json;
//! use std::collections::BTreeMap;
//!
//! let agent: AgentSpec = serde_json::from_value(json!({
//!     "name": "scanner", "kind": "native", "command": ["scan.sh"],
//!     "capabilities": [{"name": "scan", "inputSchema": {"type": "object"}}]})).unwrap();
//! let wf: WorkflowSpec = serde_json::from_value(json!({
//!     "name": "scan-and-notify",
//!     "nodes": [
//!         {"id": "scan", "agent": "scanner", "action": "scan", "inputs": {"path": "{{ context.repo }}"}},
//!         {"id": "again", "agent": "scanner", "action": "scan", "dependsOn": ["scan"],
//!          "inputs": {"file": "{{ nodes.scan.output.findings.0.file }}"}}]})).unwrap();
//! let dag = validate_workflow(&wf, &BTreeMap::from([("scanner".to_owned(), agent)])).unwrap();
//! assert_eq!(dag.topological(), vec!["scan", "again"]);
//! ```
//!
//! ## Features
//! None.

pub mod agent;
pub mod event;
pub mod run;
pub mod schema;
pub mod template;
pub mod time;
pub mod validation;
pub mod workflow;

pub use agent::{Agent, AgentKind, AgentSpec, Capability, Resources, RiskLevel};
pub use event::{FlowEvent, FlowEventKind};
pub use run::{
    AgentRun, Approval, ApprovalStatus, Decision, DecisionRequest, FlowRunStatus, NodeRun,
    NodeStatus, TriggerSource, WorkflowRun,
};
pub use validation::ValidationError;
pub use workflow::{
    Edge, Node, RetryPolicy, Trigger, TriggerType, Workflow, WorkflowSpec, WorkflowStatus,
};
