//! # hybridgrid-agents-defs
//!
//! Agent definitions: `AGENT_DEFINITIONS_PATH/agents/NAME/config.yaml` (local, git-sync style,
//! re-read when a file changes) or the same layout under an HTTP base URL (remote, cached for a
//! TTL, the last good copy used while the server is unreachable). Every definition is validated
//! when loaded; an error names the file, the field and the problem.
//!
//! ```
//! use hybridgrid_agents_defs::{AgentType, Definitions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let dir = tempfile::tempdir()?;
//! std::fs::create_dir_all(dir.path().join("agents/reviewer"))?;
//! std::fs::write(dir.path().join("agents/reviewer/config.yaml"), r#"
//! name: reviewer
//! type: native
//! brain: { provider: anthropic, model: claude-sonnet-4-5 }
//! system_prompt: You review code.
//! capabilities: { grants: [hub:read, hub:write] }
//! "#)?;
//! let defs = Definitions::local(dir.path());
//! # let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! let agent = rt.block_on(defs.get("reviewer"))?;
//! assert_eq!(agent.agent_type, AgentType::Native);
//! assert_eq!(agent.behavior.max_iterations, 10);
//! assert!(agent.has_grant("hub:write"));
//! # Ok(())
//! # }
//! ```

mod model;
mod source;

pub use model::{
    AgentDefinition, AgentType, Behavior, Brain, Capabilities, McpServerSpec, Network, Provider,
    parse_definition,
};
pub use source::{DefinitionError, Definitions};
