//! [`ToolPolicy`]: which MCP tools the model sees and may call.

use std::collections::HashMap;
use std::sync::Arc;

/// What a policy knows about one MCP tool (read from the server's `tools/list`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct McpToolInfo {
    /// The tool's own name on its server (not namespaced).
    pub name: String,
    /// Its description.
    pub description: String,
    /// The `readOnlyHint` annotation, when the server gives one.
    pub read_only_hint: Option<bool>,
    /// The `destructiveHint` annotation, when the server gives one.
    pub destructive_hint: Option<bool>,
}

/// Decides, per (server, tool), whether the model sees the tool and may call it. A tool refused
/// here is left out of [`crate::llm::ToolRouter::tools`], and a call to it fails with
/// [`crate::llm::ToolError::Refused`] without reaching the server.
pub trait ToolPolicy: Send + Sync {
    /// `Ok(())` to allow, `Err(reason)` to hide and refuse (the reason is shown to the model).
    fn check(&self, server: &str, tool: &McpToolInfo) -> Result<(), String>;
}

/// Every tool allowed.
#[derive(Clone, Copy, Debug, Default)]
pub struct AllowAll;

impl ToolPolicy for AllowAll {
    fn check(&self, _: &str, _: &McpToolInfo) -> Result<(), String> {
        Ok(())
    }
}

/// No tool allowed (a server the agent has no grant for).
#[derive(Clone, Copy, Debug, Default)]
pub struct DenyAll;

impl ToolPolicy for DenyAll {
    fn check(&self, server: &str, _: &McpToolInfo) -> Result<(), String> {
        Err(format!("the agent has no grant for server '{server}'"))
    }
}

/// Read-only access (what a `:read` grant maps to). A tool is refused when
/// - its `readOnlyHint` is `false` or its `destructiveHint` is `true`, or
/// - its name looks like a write: one of its words (split at `_`, `-`, `.`, and lower→upper case
///   changes) is a write verb such as create, update, delete, write, push, post, edit, merge ...,
/// - or, unless [`ReadOnly::trust_unannotated`] is set, its `readOnlyHint` is not `true`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ReadOnly {
    /// Also allow tools without a `readOnlyHint` when their name does not look like a write
    /// (many servers do not annotate their tools). Default `false`: only annotated read-only tools.
    pub trust_unannotated: bool,
}

const WRITE_VERBS: &[&str] = &[
    "add", "append", "apply", "approve", "archive", "assign", "block", "cancel", "clear", "close",
    "comment", "commit", "create", "delete", "deploy", "destroy", "disable", "dispatch", "drop",
    "edit", "enable", "exec", "execute", "fork", "insert", "invite", "kill", "lock", "merge",
    "modify", "move", "mutate", "patch", "post", "publish", "push", "put", "remove", "rename",
    "reopen", "replace", "reply", "rerun", "reset", "restart", "revert", "run", "save", "send",
    "set", "star", "start", "stop", "submit", "toggle", "transfer", "trigger", "unblock", "unlock",
    "unstar", "update", "upload", "upsert", "write",
];

/// The lower-case words of a tool name: `createPullRequest` → create, pull, request.
fn words(name: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut prev_lower = false;
    for c in name.chars() {
        if !c.is_ascii_alphanumeric() {
            if !cur.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            prev_lower = false;
            continue;
        }
        if c.is_ascii_uppercase() && prev_lower && !cur.is_empty() {
            out.push(std::mem::take(&mut cur));
        }
        prev_lower = c.is_ascii_lowercase() || c.is_ascii_digit();
        cur.push(c.to_ascii_lowercase());
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// True when a word of `name` is a write verb (see [`ReadOnly`]).
pub fn looks_like_write(name: &str) -> bool {
    words(name)
        .iter()
        .any(|w| WRITE_VERBS.contains(&w.as_str()))
}

impl ToolPolicy for ReadOnly {
    fn check(&self, server: &str, tool: &McpToolInfo) -> Result<(), String> {
        let refuse = |why: &str| {
            Err(format!(
                "read-only grant for '{server}': tool '{}' {why}",
                tool.name
            ))
        };
        if tool.read_only_hint == Some(false) || tool.destructive_hint == Some(true) {
            return refuse("is annotated as a write");
        }
        if looks_like_write(&tool.name) {
            return refuse("looks like a write");
        }
        if tool.read_only_hint != Some(true) && !self.trust_unannotated {
            return refuse("is not annotated read-only");
        }
        Ok(())
    }
}

/// One policy per server, and a default for the others.
#[derive(Clone)]
pub struct PerServer {
    default: Arc<dyn ToolPolicy>,
    servers: HashMap<String, Arc<dyn ToolPolicy>>,
}

impl PerServer {
    /// `default` for every server not named with [`PerServer::with`].
    pub fn new(default: Arc<dyn ToolPolicy>) -> Self {
        Self {
            default,
            servers: HashMap::new(),
        }
    }

    /// Uses `policy` for `server`.
    pub fn with(mut self, server: impl Into<String>, policy: Arc<dyn ToolPolicy>) -> Self {
        self.servers.insert(server.into(), policy);
        self
    }
}

impl std::fmt::Debug for PerServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PerServer")
            .field("servers", &self.servers.keys().collect::<Vec<_>>())
            .finish_non_exhaustive()
    }
}

impl ToolPolicy for PerServer {
    fn check(&self, server: &str, tool: &McpToolInfo) -> Result<(), String> {
        self.servers
            .get(server)
            .unwrap_or(&self.default)
            .check(server, tool)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tool(name: &str, ro: Option<bool>) -> McpToolInfo {
        McpToolInfo {
            name: name.into(),
            description: String::new(),
            read_only_hint: ro,
            destructive_hint: None,
        }
    }

    #[test]
    fn write_names() {
        for w in [
            "create_entities",
            "createPullRequest",
            "push_files",
            "delete-file",
            "add_observations",
            "update_issue",
        ] {
            assert!(looks_like_write(w), "{w}");
        }
        for r in [
            "read_graph",
            "search_nodes",
            "get_current_time",
            "list_issues",
            "get_pull_request",
            "echo",
            "readFile",
        ] {
            assert!(!looks_like_write(r), "{r}");
        }
    }

    #[test]
    fn read_only_rules() {
        let strict = ReadOnly::default();
        assert!(strict.check("g", &tool("get_issue", Some(true))).is_ok());
        assert!(strict.check("g", &tool("get_issue", None)).is_err());
        assert!(
            strict
                .check("g", &tool("create_issue", Some(true)))
                .is_err()
        );
        let lax = ReadOnly {
            trust_unannotated: true,
        };
        assert!(lax.check("g", &tool("get_issue", None)).is_ok());
        assert!(lax.check("g", &tool("get_issue", Some(false))).is_err());
        assert!(lax.check("g", &tool("create_issue", None)).is_err());
    }

    #[test]
    fn per_server() {
        let p = PerServer::new(Arc::new(DenyAll)).with("time", Arc::new(AllowAll));
        assert!(p.check("time", &tool("x", None)).is_ok());
        assert!(p.check("github", &tool("x", None)).is_err());
    }
}
