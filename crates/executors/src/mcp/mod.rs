//! MCP through the official `rmcp` SDK (feature `mcp`): client sessions over an agent's servers,
//! and an MCP server for our own tools. rmcp types stay inside this module.
//!
//! - [`McpSession::start`] starts the servers an agent lists ([`McpServerSpec`]: stdio
//!   subprocesses or streamable HTTP) in parallel, lists their tools and filters them through a
//!   [`ToolPolicy`] ([`AllowAll`], [`ReadOnly`], [`DenyAll`], [`PerServer`]); the session is a
//!   [`crate::llm::ToolRouter`] with tools named `server__tool`. [`McpSession::shutdown`] (and
//!   drop) kill every stdio server's process group.
//! - [`serve_tools_stdio`] / [`serve_tools_http`] expose any `ToolRouter` as an MCP server.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_executors::llm::ToolRouter;
//! use hybridgrid_executors::mcp::{McpServerSpec, McpSession, ReadOnly, StartOptions};
//! use std::sync::Arc;
//!
//! let specs = vec![McpServerSpec::stdio("time", "mcp-server-time", Vec::<String>::new())];
//! let session = McpSession::start(specs, Arc::new(ReadOnly { trust_unannotated: true }), StartOptions::default()).await?;
//! for t in session.tools() {
//!     println!("{}", t.name); // time__get_current_time ...
//! }
//! session.shutdown().await;
//! # Ok(()) }
//! ```

mod error;
mod policy;
mod serve;
mod session;
mod spec;

pub use error::McpError;
pub use policy::{
    AllowAll, DenyAll, McpToolInfo, PerServer, ReadOnly, ToolPolicy, looks_like_write,
};
pub use serve::{MCP_PATH, McpHttpServer, serve_tools_http, serve_tools_stdio};
pub use session::{McpSession, NAMESPACE_SEPARATOR, group_alive};
pub use spec::{McpServerSpec, McpTransport, StartOptions};
