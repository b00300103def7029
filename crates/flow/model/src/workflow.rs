//! Workflow definitions: nodes (agent + action + inputs template), dependencies, trigger, status.

use hybridgrid_core::config::HumanDuration;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// Whether a workflow may be triggered.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkflowStatus {
    /// Triggers start runs.
    #[default]
    Active,
    /// Being written: triggers are refused.
    Draft,
    /// Retired (what `DELETE` does): triggers are refused, runs are kept.
    Archived,
}

impl WorkflowStatus {
    /// `ACTIVE`, `DRAFT`, `ARCHIVED`.
    pub fn as_str(self) -> &'static str {
        match self {
            WorkflowStatus::Active => "ACTIVE",
            WorkflowStatus::Draft => "DRAFT",
            WorkflowStatus::Archived => "ARCHIVED",
        }
    }
}

impl fmt::Display for WorkflowStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What starts a workflow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TriggerType {
    /// Only `POST /api/workflows/:id/trigger`.
    #[default]
    Manual,
    /// A bus message whose subject matches `pattern` (NATS wildcards).
    Event,
    /// An AlertManager or Grafana alert whose labels match `match`.
    Alert,
}

/// A workflow's trigger.
///
/// ```json
/// {"type": "event", "pattern": "graph.>"}
/// {"type": "alert", "match": {"alertname": "HighErrorRate", "severity": "critical"}}
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Trigger {
    /// Kind of trigger.
    #[serde(rename = "type", default)]
    pub kind: TriggerType,
    /// Subject pattern, for `event`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// Label equality matchers, for `alert` (all must match).
    #[serde(default, rename = "match", skip_serializing_if = "BTreeMap::is_empty")]
    pub matchers: BTreeMap<String, String>,
}

/// How a failed step is tried again.
///
/// ```json
/// {"maxAttempts": 3, "backoff": "500ms"}
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (1 = no retry).
    #[serde(default = "one")]
    pub max_attempts: u32,
    /// Delay before the first retry; doubles each retry, capped at 5 minutes.
    #[serde(default = "default_backoff")]
    pub backoff: HumanDuration,
}

fn one() -> u32 {
    1
}

fn default_backoff() -> HumanDuration {
    HumanDuration::from_secs(1)
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 1,
            backoff: default_backoff(),
        }
    }
}

/// One step of a workflow.
///
/// ```json
/// {"id": "scan", "agent": "secret-scanner", "action": "scan",
///  "inputs": {"path": "{{ context.repo }}"}, "timeout": "30s",
///  "retry": {"maxAttempts": 2, "backoff": "1s"}, "dependsOn": ["checkout"]}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Node {
    /// Symbolic id, unique in the workflow (`[A-Za-z0-9_-]`, at most 64); templates use it.
    pub id: String,
    /// Agent name.
    pub agent: String,
    /// Action (a capability of the agent).
    pub action: String,
    /// Input document: JSON whose strings may hold `{{ ... }}` templates.
    #[serde(default = "empty_object")]
    pub inputs: serde_json::Value,
    /// Wait for a person's approval before running.
    #[serde(default)]
    pub approval_required: bool,
    /// Longest one attempt may run (default: the engine's `node_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
    /// Retries (default: none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetryPolicy>,
    /// A failure of this node does not fail the run; its dependents still run.
    #[serde(default)]
    pub may_fail: bool,
    /// Ids of the nodes this one waits for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// A dependency in the guide's form: `to` waits for `from`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Edge {
    /// Upstream node id.
    pub from: String,
    /// Downstream node id.
    pub to: String,
}

/// A workflow as created or updated through the API (`POST /api/workflows`). Dependencies may be
/// given as `dependsOn` on nodes, as `edges`, or both (they are merged).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkflowSpec {
    /// Unique name.
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Status (default `ACTIVE`).
    #[serde(default)]
    pub status: WorkflowStatus,
    /// What starts it (default manual).
    #[serde(default)]
    pub trigger: Trigger,
    /// Steps.
    pub nodes: Vec<Node>,
    /// Dependencies in `{from, to}` form.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<Edge>,
    /// Longest a whole run may take, approvals' waits excluded (default: the engine's
    /// `workflow_timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<HumanDuration>,
}

impl WorkflowSpec {
    /// The node with this id.
    pub fn node(&self, id: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    /// Every node's dependencies, `dependsOn` and `edges` merged, deduplicated, in node order.
    pub fn dependencies(&self) -> Vec<(String, Vec<String>)> {
        self.nodes
            .iter()
            .map(|n| {
                let mut deps: Vec<String> = n.depends_on.clone();
                for e in self.edges.iter().filter(|e| e.to == n.id) {
                    deps.push(e.from.clone());
                }
                let mut seen = std::collections::HashSet::new();
                deps.retain(|d| seen.insert(d.clone()));
                (n.id.clone(), deps)
            })
            .collect()
    }
}

/// A stored workflow (what the API returns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Workflow {
    /// Id.
    pub id: String,
    /// Definition version; each update adds one. A run keeps the version it started with.
    pub version: i64,
    /// The definition.
    #[serde(flatten)]
    pub spec: WorkflowSpec,
    /// Last change, RFC 3339.
    pub updated_at: String,
}
