//! Tools the model may call: [`ToolRouter`] and [`CompositeTools`].

use async_trait::async_trait;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// One tool as the model sees it.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDef {
    /// Name the model calls it by (`[a-zA-Z0-9_-]{1,64}` for both providers).
    pub name: String,
    /// What it does, for the model.
    pub description: String,
    /// JSON Schema of its arguments (an `object` schema).
    pub input_schema: serde_json::Value,
}

/// The result of one tool call, fed back to the model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolOutput {
    /// Text given to the model.
    pub content: String,
    /// The tool reported a failure (the model sees it as an error result).
    pub is_error: bool,
}

impl ToolOutput {
    /// A successful result.
    pub fn text(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: false,
        }
    }

    /// A failed result the model should see.
    pub fn error(content: impl Into<String>) -> Self {
        Self {
            content: content.into(),
            is_error: true,
        }
    }
}

/// Why a tool call could not run. The agent loop feeds it back to the model as an error result
/// (the activation goes on); [`ToolError::Duplicate`] only comes from building a [`CompositeTools`].
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ToolError {
    /// No tool of that name.
    #[error("unknown tool '{name}'")]
    Unknown {
        /// The name asked for.
        name: String,
    },
    /// The tool exists but the agent's grants do not allow it; the server was not called.
    #[error("tool '{name}' refused: {reason}")]
    Refused {
        /// The tool.
        name: String,
        /// Why (e.g. `the agent's grants are read-only`).
        reason: String,
    },
    /// The arguments were not what the tool takes.
    #[error("tool '{name}': invalid arguments: {reason}")]
    InvalidArguments {
        /// The tool.
        name: String,
        /// What is wrong.
        reason: String,
    },
    /// No answer within the per-call timeout.
    #[error("tool '{name}' timed out after {after:?}")]
    Timeout {
        /// The tool.
        name: String,
        /// The per-call timeout.
        after: Duration,
    },
    /// The call failed (server gone, transport error ...).
    #[error("tool '{name}' failed: {reason}")]
    Failed {
        /// The tool.
        name: String,
        /// What happened.
        reason: String,
    },
    /// Two routers offer a tool of the same name.
    #[error("tool name '{name}' is offered twice")]
    Duplicate {
        /// The clashing name.
        name: String,
    },
}

/// A set of tools: what the model sees, and how a call is run. Object-safe: callers hold an
/// `Arc<dyn ToolRouter>` (an MCP session, the Hub's tools, a [`CompositeTools`] of several).
#[async_trait]
pub trait ToolRouter: Send + Sync {
    /// The tools the model may call.
    fn tools(&self) -> Vec<ToolDef>;
    /// Runs tool `name` with `args` (a JSON object).
    async fn call(&self, name: &str, args: serde_json::Value) -> Result<ToolOutput, ToolError>;
}

/// No tools at all.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoTools;

#[async_trait]
impl ToolRouter for NoTools {
    fn tools(&self) -> Vec<ToolDef> {
        Vec::new()
    }

    async fn call(&self, name: &str, _args: serde_json::Value) -> Result<ToolOutput, ToolError> {
        Err(ToolError::Unknown {
            name: name.to_owned(),
        })
    }
}

/// Several routers as one. Tool lists are read once, at [`CompositeTools::new`]; a name offered by
/// two routers is an error there.
pub struct CompositeTools {
    routers: Vec<Arc<dyn ToolRouter>>,
    defs: Vec<ToolDef>,
    by_name: HashMap<String, usize>,
}

impl CompositeTools {
    /// Merges `routers`, failing with [`ToolError::Duplicate`] on a name clash.
    pub fn new(routers: Vec<Arc<dyn ToolRouter>>) -> Result<Self, ToolError> {
        let mut defs = Vec::new();
        let mut by_name = HashMap::new();
        for (i, r) in routers.iter().enumerate() {
            for def in r.tools() {
                if by_name.insert(def.name.clone(), i).is_some() {
                    return Err(ToolError::Duplicate { name: def.name });
                }
                defs.push(def);
            }
        }
        Ok(Self {
            routers,
            defs,
            by_name,
        })
    }
}

impl std::fmt::Debug for CompositeTools {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeTools")
            .field("tools", &self.by_name.keys().collect::<Vec<_>>())
            .finish()
    }
}

#[async_trait]
impl ToolRouter for CompositeTools {
    fn tools(&self) -> Vec<ToolDef> {
        self.defs.clone()
    }

    async fn call(&self, name: &str, args: serde_json::Value) -> Result<ToolOutput, ToolError> {
        match self.by_name.get(name).and_then(|i| self.routers.get(*i)) {
            Some(router) => router.call(name, args).await,
            None => Err(ToolError::Unknown {
                name: name.to_owned(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct One(&'static str);

    #[async_trait]
    impl ToolRouter for One {
        fn tools(&self) -> Vec<ToolDef> {
            vec![ToolDef {
                name: self.0.to_owned(),
                description: String::new(),
                input_schema: serde_json::json!({"type": "object"}),
            }]
        }
        async fn call(&self, name: &str, _: serde_json::Value) -> Result<ToolOutput, ToolError> {
            Ok(ToolOutput::text(format!("{}:{name}", self.0)))
        }
    }

    #[test]
    fn object_safe() {
        let _: Box<dyn ToolRouter> = Box::new(NoTools);
    }

    #[tokio::test]
    async fn composite_routes_and_refuses_clashes() {
        let c = CompositeTools::new(vec![Arc::new(One("a")), Arc::new(One("b"))])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.tools().len(), 2);
        assert_eq!(
            c.call("b", serde_json::json!({})).await,
            Ok(ToolOutput::text("b:b"))
        );
        assert!(matches!(
            c.call("z", serde_json::json!({})).await,
            Err(ToolError::Unknown { .. })
        ));
        let clash = CompositeTools::new(vec![Arc::new(One("a")), Arc::new(One("a"))]);
        assert!(matches!(clash, Err(ToolError::Duplicate { name }) if name == "a"));
    }
}
