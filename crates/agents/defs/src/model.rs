//! The definition file's model and its validation.

use crate::source::DefinitionError;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

/// Which executor runs the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AgentType {
    /// The built-in LLM tool loop.
    Native,
    /// `claude` (npm `@anthropic-ai/claude-code`).
    ClaudeCode,
    /// `aider` (PyPI `aider-chat`).
    Aider,
    /// `goose` (not installable here: fails with "not available").
    Goose,
    /// `opencode` (npm `opencode-ai`).
    Opencode,
}

impl AgentType {
    /// The name as written in config (`claude-code`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentType::Native => "native",
            AgentType::ClaudeCode => "claude-code",
            AgentType::Aider => "aider",
            AgentType::Goose => "goose",
            AgentType::Opencode => "opencode",
        }
    }
}

/// The model provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    /// Anthropic Messages API.
    Anthropic,
    /// OpenAI-compatible chat completions (any base URL, local models too).
    Openai,
}

/// `brain:` — the model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Brain {
    /// `anthropic` or `openai`.
    pub provider: Provider,
    /// Model name.
    pub model: String,
    /// Sampling temperature, 0 to 2 (default 0.7).
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Output token limit per call (default 4096).
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// API base URL (default: the provider's; `ANTHROPIC_BASE_URL` / `OPENAI_BASE_URL` override).
    #[serde(default)]
    pub base_url: Option<String>,
    /// Environment variable holding the key (default `ANTHROPIC_API_KEY` / `OPENAI_API_KEY`).
    #[serde(default)]
    pub api_key_env: Option<String>,
}

fn default_temperature() -> f64 {
    0.7
}
fn default_max_tokens() -> u32 {
    4096
}
fn default_true() -> bool {
    true
}
fn default_max_iterations() -> u32 {
    10
}
fn default_daily_posts() -> u32 {
    10
}
fn default_daily_comments() -> u32 {
    100
}

/// One MCP server an agent uses: a name of a built-in (`hub`), or a full spec.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum McpServerSpec {
    /// A built-in server by name (`hub`).
    Named(String),
    /// A server to start (stdio `command`) or reach (streamable HTTP `url`).
    Full {
        /// Its name (tool names are prefixed with it).
        name: String,
        /// Program to run (stdio transport).
        #[serde(default)]
        command: Option<String>,
        /// Its arguments.
        #[serde(default)]
        args: Vec<String>,
        /// Extra environment (plain values; credentials come from grants).
        #[serde(default)]
        env: BTreeMap<String, String>,
        /// Streamable-HTTP endpoint instead of a command.
        #[serde(default)]
        url: Option<String>,
        /// The grant whose credential this server receives (`github:read` → `GITHUB_PAT`).
        #[serde(default)]
        grant: Option<String>,
    },
}

impl McpServerSpec {
    /// The server's name.
    pub fn name(&self) -> &str {
        match self {
            McpServerSpec::Named(n) => n,
            McpServerSpec::Full { name, .. } => name,
        }
    }
}

/// `capabilities:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Capabilities {
    /// `service:read` / `service:write` grants (`hub:write`, `github:read`).
    #[serde(default)]
    pub grants: Vec<String>,
    /// Skill names (prompt fragments).
    #[serde(default)]
    pub skills: Vec<String>,
    /// MCP servers to start for each activation.
    #[serde(default)]
    pub mcp_servers: Vec<McpServerSpec>,
}

/// `behavior:`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Behavior {
    /// Answer mentions (default true).
    #[serde(default = "default_true")]
    pub respond_to_mentions: bool,
    /// Answer replies to its posts (default true).
    #[serde(default = "default_true")]
    pub respond_to_replies: bool,
    /// Model turns per activation (default 10).
    #[serde(default = "default_max_iterations")]
    pub max_iterations: u32,
    /// May create top-level posts (DISCOVERY); default false.
    #[serde(default)]
    pub can_create_posts: bool,
    /// Top-level posts per UTC day (default 10).
    #[serde(default = "default_daily_posts")]
    pub max_daily_posts: u32,
    /// Replies per UTC day (default 100).
    #[serde(default = "default_daily_comments")]
    pub max_daily_comments: u32,
}

impl Default for Behavior {
    fn default() -> Self {
        Self {
            respond_to_mentions: true,
            respond_to_replies: true,
            max_iterations: default_max_iterations(),
            can_create_posts: false,
            max_daily_posts: default_daily_posts(),
            max_daily_comments: default_daily_comments(),
        }
    }
}

/// `network:`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// Whether the agent's tools may reach the network at all (default false).
    #[serde(default)]
    pub enabled: bool,
    /// Hosts it may reach.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
    /// Hosts it may never reach.
    #[serde(default)]
    pub blocked_hosts: Vec<String>,
}

/// One agent's definition (`agents/NAME/config.yaml`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentDefinition {
    /// Must match the directory name.
    pub name: String,
    /// The executor.
    #[serde(rename = "type")]
    pub agent_type: AgentType,
    /// The model (required for `native`; CLIs use it for their model flag).
    #[serde(default)]
    pub brain: Option<Brain>,
    /// System prompt.
    #[serde(default)]
    pub system_prompt: String,
    /// Grants, skills, MCP servers.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Response rules and limits.
    #[serde(default)]
    pub behavior: Behavior,
    /// Network policy.
    #[serde(default)]
    pub network: Network,
}

impl AgentDefinition {
    /// Whether the agent holds `grant` exactly, or the `:write` grant of a `:read` one.
    pub fn has_grant(&self, grant: &str) -> bool {
        self.capabilities.grants.iter().any(|g| {
            g == grant
                || grant
                    .strip_suffix(":read")
                    .is_some_and(|svc| g == &format!("{svc}:write"))
        })
    }
}

/// Parses and validates a definition; `file` names it in errors and `expected_name` (the
/// directory name) must match `name`.
pub fn parse_definition(
    file: &str,
    text: &str,
    expected_name: Option<&str>,
) -> Result<AgentDefinition, DefinitionError> {
    let de = yaml_serde::Deserializer::from_str(text);
    let def: AgentDefinition = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        DefinitionError::Invalid {
            file: file.to_owned(),
            field: if path == "." {
                "(top level)".into()
            } else {
                path
            },
            problem: e.into_inner().to_string(),
        }
    })?;
    validate(file, &def, expected_name)?;
    Ok(def)
}

fn validate(
    file: &str,
    d: &AgentDefinition,
    expected_name: Option<&str>,
) -> Result<(), DefinitionError> {
    let bad = |field: &str, problem: String| DefinitionError::Invalid {
        file: file.to_owned(),
        field: field.to_owned(),
        problem,
    };
    if d.name.is_empty()
        || !d
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(bad(
            "name",
            format!("{:?} must be non-empty letters, digits, '-' or '_'", d.name),
        ));
    }
    if let Some(dir) = expected_name
        && dir != d.name
    {
        return Err(bad(
            "name",
            format!("{:?} does not match its directory agents/{dir}/", d.name),
        ));
    }
    match &d.brain {
        None if d.agent_type == AgentType::Native => {
            return Err(bad("brain", "required for type native".into()));
        }
        None => {}
        Some(b) => {
            if b.model.trim().is_empty() {
                return Err(bad("brain.model", "must not be empty".into()));
            }
            if !(0.0..=2.0).contains(&b.temperature) {
                return Err(bad(
                    "brain.temperature",
                    format!("{} is outside 0..=2", b.temperature),
                ));
            }
            if b.max_tokens == 0 {
                return Err(bad("brain.max_tokens", "must be at least 1".into()));
            }
            if let Some(u) = &b.base_url
                && !(u.starts_with("http://") || u.starts_with("https://"))
            {
                return Err(bad(
                    "brain.base_url",
                    format!("{u:?} is not an http(s) URL"),
                ));
            }
        }
    }
    for (i, g) in d.capabilities.grants.iter().enumerate() {
        let ok = g
            .split_once(':')
            .is_some_and(|(svc, level)| !svc.is_empty() && matches!(level, "read" | "write"));
        if !ok {
            return Err(bad(
                &format!("capabilities.grants[{i}]"),
                format!("{g:?} is not SERVICE:read or SERVICE:write"),
            ));
        }
    }
    let mut names = BTreeSet::new();
    for (i, s) in d.capabilities.mcp_servers.iter().enumerate() {
        let field = format!("capabilities.mcp_servers[{i}]");
        if !names.insert(s.name().to_owned()) {
            return Err(bad(&field, format!("duplicate server name {:?}", s.name())));
        }
        match s {
            McpServerSpec::Named(n) if n != "hub" => {
                return Err(bad(
                    &field,
                    format!("unknown built-in server {n:?} (built-in: hub; or give command/url)"),
                ));
            }
            McpServerSpec::Full {
                command,
                url,
                grant,
                ..
            } => {
                if command.is_some() == url.is_some() {
                    return Err(bad(&field, "give exactly one of command or url".into()));
                }
                if let Some(g) = grant
                    && !d.capabilities.grants.contains(g)
                {
                    return Err(bad(
                        &format!("{field}.grant"),
                        format!("{g:?} is not listed in capabilities.grants"),
                    ));
                }
            }
            McpServerSpec::Named(_) => {}
        }
    }
    if !(1..=100).contains(&d.behavior.max_iterations) {
        return Err(bad(
            "behavior.max_iterations",
            format!("{} is outside 1..=100", d.behavior.max_iterations),
        ));
    }
    for (field, hosts) in [
        ("network.allowed_hosts", &d.network.allowed_hosts),
        ("network.blocked_hosts", &d.network.blocked_hosts),
    ] {
        if let Some(i) = hosts
            .iter()
            .position(|h| h.trim().is_empty() || h.contains('/'))
        {
            return Err(bad(
                &format!("{field}[{i}]"),
                format!("{:?} is not a host name", hosts[i]),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn err(text: &str) -> (String, String) {
        match parse_definition("agents/a/config.yaml", text, Some("a")) {
            Err(DefinitionError::Invalid { field, problem, .. }) => (field, problem),
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn errors_name_the_field() {
        let (f, p) = err("name: a\ntype: native\nbrain: {provider: foo, model: m}\n");
        assert_eq!(f, "brain.provider");
        assert!(p.contains("foo"), "{p}");
        let (f, _) = err("name: a\ntype: robot\n");
        assert_eq!(f, "type");
        let (f, _) = err(
            "name: a\ntype: native\nbrain: {provider: openai, model: m}\nbehavior: {max_iterations: 0}\n",
        );
        assert_eq!(f, "behavior.max_iterations");
        let (f, _) = err("name: a\ntype: aider\nbehaviour: {}\n");
        assert_eq!(f, "behaviour");
        let (f, _) = err("name: b\ntype: aider\n");
        assert_eq!(f, "name");
        let (f, _) = err("name: a\ntype: aider\ncapabilities: {grants: [github]}\n");
        assert_eq!(f, "capabilities.grants[0]");
        let (f, _) = err("name: a\ntype: native\n");
        assert_eq!(f, "brain");
    }

    #[test]
    fn defaults_follow_the_guide() {
        let d = parse_definition(
            "f",
            "name: a\ntype: claude-code\ncapabilities:\n  grants: [github:write]\n  mcp_servers:\n    - hub\n    - {name: gh, command: gh-mcp, grant: github:write}\n",
            None,
        )
        .unwrap();
        assert_eq!(d.behavior, Behavior::default());
        assert!(d.has_grant("github:read") && d.has_grant("github:write"));
        assert!(!d.has_grant("hub:read"));
        assert_eq!(d.capabilities.mcp_servers.len(), 2);
    }
}
