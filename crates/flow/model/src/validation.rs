//! Checks of workflow and agent definitions, each error naming what is wrong.
//!
//! ```
//! use hybridgrid_flow_model::validation::{validate_workflow, ValidationError};
//! use hybridgrid_flow_model::{AgentSpec, WorkflowSpec};
//! use serde_json::json;
//! use std::collections::BTreeMap;
//!
//! let agent: AgentSpec = serde_json::from_value(json!({"name": "echo", "kind": "native",
//!     "command": ["echo.sh"], "capabilities": [{"name": "run"}]})).unwrap();
//! let agents = BTreeMap::from([(agent.name.clone(), agent)]);
//! let wf: WorkflowSpec = serde_json::from_value(json!({"name": "loop", "nodes": [
//!     {"id": "A", "agent": "echo", "action": "run"},
//!     {"id": "B", "agent": "echo", "action": "run"},
//!     {"id": "C", "agent": "echo", "action": "run"}],
//!   "edges": [{"from": "A", "to": "B"}, {"from": "B", "to": "C"}, {"from": "C", "to": "A"}]})).unwrap();
//! let err = validate_workflow(&wf, &agents).unwrap_err();
//! assert_eq!(err.to_string(), "dependency cycle: A → B → C → A");
//! ```

use crate::agent::AgentSpec;
use crate::schema::CompiledSchema;
use crate::template::{self, TemplateError};
use crate::workflow::{TriggerType, WorkflowSpec};
use hybridgrid_scheduler::dag::{Dag, DagError};
use std::collections::BTreeMap;

/// Longest node id, agent or workflow name.
pub const MAX_NAME_LEN: usize = 128;

/// Why a definition is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    /// A required field is empty or malformed.
    #[error("{field}: {reason}")]
    Field {
        /// Which (`name`, `nodes[2].id`, `trigger.pattern`).
        field: String,
        /// What is wrong.
        reason: String,
    },
    /// Duplicate node, unknown dependency or a cycle.
    #[error(transparent)]
    Graph(#[from] DagError),
    /// A node names an agent that is not registered.
    #[error("node {node:?} uses unknown agent {agent:?}")]
    UnknownAgent {
        /// Node id.
        node: String,
        /// Agent name.
        agent: String,
    },
    /// A node names an action its agent does not offer.
    #[error("node {node:?}: agent {agent:?} has no action {action:?} (it offers: {offered})")]
    UnknownAction {
        /// Node id.
        node: String,
        /// Agent name.
        agent: String,
        /// The action asked for.
        action: String,
        /// The actions offered, comma-separated.
        offered: String,
    },
    /// A node's inputs template is malformed.
    #[error("node {node:?} inputs: {source}")]
    Template {
        /// Node id.
        node: String,
        /// The problem.
        #[source]
        source: TemplateError,
    },
    /// A template refers to a node that does not run before this one.
    #[error(
        "node {node:?} inputs refer to `{reference}`, but {referenced:?} is not upstream of {node:?} (add it to dependsOn)"
    )]
    NotUpstream {
        /// Node id.
        node: String,
        /// The reference.
        reference: String,
        /// The node referred to.
        referenced: String,
    },
    /// A node's inputs (with no template in them) do not match the action's input schema.
    #[error("node {node:?} inputs do not match the input schema of {agent}/{action}: {}", problems.join("; "))]
    InputSchema {
        /// Node id.
        node: String,
        /// Agent name.
        agent: String,
        /// Action.
        action: String,
        /// Each mismatch.
        problems: Vec<String>,
    },
    /// An agent's capability schema does not compile.
    #[error("agent {agent:?} action {action:?}: {which} is not a valid JSON Schema: {reason}")]
    Schema {
        /// Agent name.
        agent: String,
        /// Action.
        action: String,
        /// `inputSchema` or `outputSchema`.
        which: &'static str,
        /// The compiler's message.
        reason: String,
    },
}

impl ValidationError {
    /// True for schema mismatches (a workflow's static inputs, an agent's schemas), false for
    /// malformed definitions; the API answers 400 for both, with its own error code.
    pub fn is_schema_mismatch(&self) -> bool {
        matches!(
            self,
            ValidationError::InputSchema { .. } | ValidationError::Schema { .. }
        )
    }
}

fn field(field: impl Into<String>, reason: impl Into<String>) -> ValidationError {
    ValidationError::Field {
        field: field.into(),
        reason: reason.into(),
    }
}

fn check_name(what: &str, name: &str, strict: bool) -> Result<(), ValidationError> {
    if name.trim().is_empty() {
        return Err(field(what, "must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(field(what, format!("longer than {MAX_NAME_LEN} bytes")));
    }
    if strict
        && !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(field(
            what,
            format!("{name:?} may hold only letters, digits, '_' and '-'"),
        ));
    }
    if name.chars().any(char::is_control) {
        return Err(field(what, "holds a control character"));
    }
    Ok(())
}

/// Checks an agent definition: name, what its kind needs, unique actions, compilable schemas.
pub fn validate_agent(agent: &AgentSpec) -> Result<(), ValidationError> {
    use crate::agent::AgentKind;
    check_name("name", &agent.name, false)?;
    match agent.kind {
        AgentKind::Native | AgentKind::Llm if agent.command.is_empty() => {
            return Err(field(
                "command",
                format!("a {} agent needs a command", agent.kind),
            ));
        }
        AgentKind::Container | AgentKind::Dagger
            if agent.image.as_deref().is_none_or(|i| i.trim().is_empty()) =>
        {
            return Err(field(
                "image",
                format!("a {} agent needs an image", agent.kind),
            ));
        }
        _ => {}
    }
    if agent.command.first().is_some_and(|c| c.trim().is_empty()) {
        return Err(field("command[0]", "must not be empty"));
    }
    if agent.capabilities.is_empty() {
        return Err(field("capabilities", "an agent needs at least one action"));
    }
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in agent.capabilities.iter().enumerate() {
        check_name(&format!("capabilities[{i}].name"), &c.name, true)?;
        if !seen.insert(c.name.as_str()) {
            return Err(field(
                format!("capabilities[{i}].name"),
                format!("duplicate action {:?}", c.name),
            ));
        }
        for (which, s) in [
            ("inputSchema", &c.input_schema),
            ("outputSchema", &c.output_schema),
        ] {
            CompiledSchema::compile(s).map_err(|e| ValidationError::Schema {
                agent: agent.name.clone(),
                action: c.name.clone(),
                which,
                reason: e.reason,
            })?;
        }
    }
    Ok(())
}

/// Checks a workflow against the registered agents (by name) and returns its DAG.
pub fn validate_workflow(
    wf: &WorkflowSpec,
    agents: &BTreeMap<String, AgentSpec>,
) -> Result<Dag, ValidationError> {
    check_name("name", &wf.name, false)?;
    if wf.nodes.is_empty() {
        return Err(field("nodes", "a workflow needs at least one node"));
    }
    for (i, n) in wf.nodes.iter().enumerate() {
        check_name(&format!("nodes[{i}].id"), &n.id, true)?;
        if n.retry.is_some_and(|r| r.max_attempts == 0) {
            return Err(field(
                format!("nodes[{i}].retry.maxAttempts"),
                "must be at least 1",
            ));
        }
        if n.timeout.is_some_and(|t| t.is_zero()) {
            return Err(field(format!("nodes[{i}].timeout"), "must be above zero"));
        }
    }
    for (i, e) in wf.edges.iter().enumerate() {
        if wf.node(&e.to).is_none() {
            return Err(field(
                format!("edges[{i}].to"),
                format!("unknown node {:?}", e.to),
            ));
        }
    }
    if wf.timeout.is_some_and(|t| t.is_zero()) {
        return Err(field("timeout", "must be above zero"));
    }
    match wf.trigger.kind {
        TriggerType::Event => {
            let p = wf.trigger.pattern.as_deref().unwrap_or("");
            hybridgrid_core::event::check_pattern(p)
                .map_err(|e| field("trigger.pattern", e.to_string()))?;
        }
        TriggerType::Manual | TriggerType::Alert => {}
    }
    let dag = Dag::new(wf.dependencies())?;
    for n in &wf.nodes {
        let agent = agents
            .get(&n.agent)
            .ok_or_else(|| ValidationError::UnknownAgent {
                node: n.id.clone(),
                agent: n.agent.clone(),
            })?;
        let cap = agent
            .capability(&n.action)
            .ok_or_else(|| ValidationError::UnknownAction {
                node: n.id.clone(),
                agent: n.agent.clone(),
                action: n.action.clone(),
                offered: agent
                    .capabilities
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })?;
        let refs = template::references(&n.inputs).map_err(|e| ValidationError::Template {
            node: n.id.clone(),
            source: e,
        })?;
        let upstream = dag.ancestors(&n.id);
        for r in &refs {
            if let Some(referenced) = template::referenced_node(r)
                && !upstream.contains(&referenced)
            {
                return Err(ValidationError::NotUpstream {
                    node: n.id.clone(),
                    reference: r.clone(),
                    referenced: referenced.to_owned(),
                });
            }
        }
        if refs.is_empty() {
            let schema = CompiledSchema::compile(&cap.input_schema).map_err(|e| {
                ValidationError::Schema {
                    agent: agent.name.clone(),
                    action: cap.name.clone(),
                    which: "inputSchema",
                    reason: e.reason,
                }
            })?;
            schema
                .validate(&n.inputs)
                .map_err(|problems| ValidationError::InputSchema {
                    node: n.id.clone(),
                    agent: agent.name.clone(),
                    action: cap.name.clone(),
                    problems,
                })?;
        }
    }
    Ok(dag)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn agents() -> BTreeMap<String, AgentSpec> {
        let a: AgentSpec = serde_json::from_value(json!({"name": "scanner", "kind": "native",
            "command": ["scan"], "capabilities": [
                {"name": "scan", "inputSchema": {"type": "object", "required": ["path"]}},
                {"name": "report"}]}))
        .unwrap();
        BTreeMap::from([(a.name.clone(), a)])
    }

    fn wf(nodes: serde_json::Value) -> WorkflowSpec {
        serde_json::from_value(json!({"name": "w", "nodes": nodes})).unwrap()
    }

    #[test]
    fn each_problem_is_named() {
        let a = agents();
        let e = validate_workflow(
            &wf(json!([{"id": "x", "agent": "nope", "action": "scan"}])),
            &a,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "node \"x\" uses unknown agent \"nope\"");
        let e = validate_workflow(
            &wf(json!([{"id": "x", "agent": "scanner", "action": "fly"}])),
            &a,
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "node \"x\": agent \"scanner\" has no action \"fly\" (it offers: scan, report)"
        );
        let e = validate_workflow(
            &wf(json!([{"id": "x", "agent": "scanner", "action": "report", "dependsOn": ["y"]}])),
            &a,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "node \"x\" depends on unknown node \"y\"");
        let e = validate_workflow(
            &wf(json!([
            {"id": "x", "agent": "scanner", "action": "report"},
            {"id": "x", "agent": "scanner", "action": "report"}])),
            &a,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "duplicate node id \"x\"");
        let e = validate_workflow(&wf(json!([
            {"id": "x", "agent": "scanner", "action": "report", "inputs": {"a": "{{ nodes.y.output }}"}},
            {"id": "y", "agent": "scanner", "action": "report"}])), &a).unwrap_err();
        assert!(matches!(e, ValidationError::NotUpstream { .. }), "{e}");
        let e = validate_workflow(
            &wf(json!([{"id": "x", "agent": "scanner", "action": "scan", "inputs": {}}])),
            &a,
        )
        .unwrap_err();
        assert!(e.is_schema_mismatch(), "{e}");
        assert!(e.to_string().contains("path"), "{e}");
        let e = validate_workflow(
            &wf(json!([{"id": "bad id", "agent": "scanner", "action": "report"}])),
            &a,
        )
        .unwrap_err();
        assert!(e.to_string().starts_with("nodes[0].id"), "{e}");
        let e = validate_workflow(&wf(json!([])), &a).unwrap_err();
        assert!(e.to_string().starts_with("nodes:"), "{e}");
    }

    #[test]
    fn templated_inputs_are_checked_at_run_time_and_upstream_refs_pass() {
        let a = agents();
        let dag = validate_workflow(&wf(json!([
            {"id": "s", "agent": "scanner", "action": "scan", "inputs": {"path": "{{ context.repo }}"}},
            {"id": "r", "agent": "scanner", "action": "report", "dependsOn": ["s"],
             "inputs": {"f": "{{ nodes.s.output.findings.0.file }}"}}])), &a).unwrap();
        assert_eq!(dag.parents("r"), vec!["s"]);
    }

    #[test]
    fn agents_are_checked() {
        let mut a = agents().remove("scanner").unwrap();
        assert!(validate_agent(&a).is_ok());
        a.capabilities[0].output_schema = json!({"type": 5});
        assert!(matches!(
            validate_agent(&a),
            Err(ValidationError::Schema {
                which: "outputSchema",
                ..
            })
        ));
        a.capabilities.clear();
        assert!(validate_agent(&a).is_err());
    }
}
