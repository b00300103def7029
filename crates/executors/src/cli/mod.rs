//! Coding-agent CLIs as executors (feature `cli`): claude-code, aider, opencode (and goose,
//! which is never available here).
//!
//! [`run_cli`] runs the CLI named by [`CodingAgentKind`] as a subprocess in the activation's work
//! directory with the prompt, the provider's base URL and key injected the way that CLI takes
//! them, and the agent's MCP servers in the CLI's own config format. The CLI and everything it
//! starts live in one process group, killed as a whole on timeout or cancellation.
//!
//! Grants: a CLI talks to the MCP servers it is given directly. To apply a
//! [`crate::mcp::ToolPolicy`], start an [`crate::mcp::McpSession`] with the policy, serve it with
//! [`crate::mcp::serve_tools_http`] and give the CLI only that endpoint.
//!
//! ```no_run
//! # async fn demo() -> Result<(), hybridgrid_executors::cli::CliError> {
//! use hybridgrid_executors::cli::{CliRequest, CodingAgentKind, run_cli};
//! use hybridgrid_executors::llm::{ProviderConfig, ProviderKind};
//!
//! let provider = ProviderConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5", "sk-...");
//! let req = CliRequest::new(CodingAgentKind::ClaudeCode, "Fix the failing test", "/tmp/work".into(), provider);
//! let out = run_cli(req).await?;
//! println!("exit {} after {:?}: {:?}", out.exit_code, out.duration, out.final_text);
//! # Ok(()) }
//! ```

mod kinds;
mod process;

pub use kinds::CodingAgentKind;
pub use process::{CliError, CliOutcome, CliRequest, run_cli};
