//! The agent registry's records: what an agent is, how it runs, what it may do.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fmt;

/// How an agent runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentKind {
    /// A container image run on the Docker engine (`image`, optional `command`).
    Container,
    /// A local program (`command`).
    Native,
    /// An LLM agent from the agent runners (`command` names the agent definition).
    Llm,
    /// A Dagger pipeline over the engine's GraphQL API (`image`, `command`).
    Dagger,
}

impl AgentKind {
    /// `container`, `native`, `llm`, `dagger`.
    pub fn as_str(self) -> &'static str {
        match self {
            AgentKind::Container => "container",
            AgentKind::Native => "native",
            AgentKind::Llm => "llm",
            AgentKind::Dagger => "dagger",
        }
    }
}

impl fmt::Display for AgentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a step of this agent needs a person's approval before it runs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RiskLevel {
    /// Runs without asking.
    #[default]
    Auto,
    /// Every step waits in `WAITING_APPROVAL` until approved.
    ApprovalRequired,
}

/// A named action an agent offers, with the JSON Schemas of its input and output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capability {
    /// Action name, unique within the agent (`scan`, `notify`).
    pub name: String,
    /// What it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// JSON Schema the input must match (default: anything).
    #[serde(default = "any_schema")]
    pub input_schema: serde_json::Value,
    /// JSON Schema the output must match (default: anything).
    #[serde(default = "any_schema")]
    pub output_schema: serde_json::Value,
}

fn any_schema() -> serde_json::Value {
    serde_json::Value::Bool(true)
}

/// CPU and memory limits of a container agent.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resources {
    /// CPUs (fractions allowed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpus: Option<f64>,
    /// Memory limit in MiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory_mb: Option<u64>,
}

/// An agent as created or updated through the API (`POST /api/agents`).
///
/// ```json
/// {"name": "secret-scanner", "kind": "native", "command": ["scan.sh"], "version": "1.0.0",
///  "riskLevel": "AUTO",
///  "capabilities": [{"name": "scan", "inputSchema": {"type": "object"}, "outputSchema": {"type": "object"}}]}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AgentSpec {
    /// Unique name; workflow nodes refer to agents by it.
    pub name: String,
    /// How it runs.
    pub kind: AgentKind,
    /// Container image (`container`, `dagger`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Program and fixed arguments; the input JSON is appended as the last argument.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
    /// Version label.
    #[serde(default = "default_version")]
    pub version: String,
    /// Whether its steps need approval.
    #[serde(default)]
    pub risk_level: RiskLevel,
    /// Actions it offers.
    #[serde(default)]
    pub capabilities: Vec<Capability>,
    /// Whether a container agent gets a network (default: `--network none`).
    #[serde(default)]
    pub network: bool,
    /// Extra environment for the program.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Container limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Resources>,
    /// What it is for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

fn default_version() -> String {
    "1".to_owned()
}

impl AgentSpec {
    /// The capability named `action`.
    pub fn capability(&self, action: &str) -> Option<&Capability> {
        self.capabilities.iter().find(|c| c.name == action)
    }
}

/// An agent in the registry (what the API returns).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Agent {
    /// Id.
    pub id: String,
    /// The definition.
    #[serde(flatten)]
    pub spec: AgentSpec,
    /// Created, RFC 3339.
    pub created_at: String,
    /// Last change, RFC 3339.
    pub updated_at: String,
}
