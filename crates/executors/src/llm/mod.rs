//! The native LLM agent loop (feature `llm`).
//!
//! [`run_agent`] talks to a model through the Anthropic Messages API or an OpenAI-compatible chat
//! completions endpoint ([`ProviderConfig`]), runs the tool calls it asks for through a
//! [`ToolRouter`], feeds the results back, and stops at a final answer, at `SKIP`, at
//! `max_iterations`, or when the same call repeats ([`StopReason`]). Model calls are streamed
//! (SSE) or not, retried on 429/5xx/timeouts honouring `Retry-After`, and their token usage is
//! summed ([`Usage`]).
//!
//! ```no_run
//! # async fn demo() -> Result<(), hybridgrid_executors::llm::LlmError> {
//! use hybridgrid_executors::llm::{AgentRequest, NoTools, ProviderConfig, ProviderKind, StopReason, run_agent};
//! use std::sync::Arc;
//!
//! let provider = ProviderConfig::new(ProviderKind::Anthropic, "claude-sonnet-4-5", "sk-...")
//!     .with_base_url("http://127.0.0.1:8080");
//! let out = run_agent(AgentRequest::new(provider, "You are terse.", "Say hi", Arc::new(NoTools))).await?;
//! if out.stop == StopReason::Final {
//!     println!("{}", out.final_text.unwrap_or_default());
//! }
//! # Ok(()) }
//! ```

mod agent;
mod anthropic;
mod client;
mod config;
mod conversation;
mod error;
mod openai;
mod sse;
mod tools;

pub use agent::{AgentOutcome, AgentRequest, StopReason, ToolCallRecord, run_agent};
#[cfg(feature = "mcp")]
pub(crate) use client::http as http_client;
pub use config::{ProviderConfig, ProviderKind, Secret};
pub use conversation::Usage;
pub use error::LlmError;
pub use tools::{CompositeTools, NoTools, ToolDef, ToolError, ToolOutput, ToolRouter};
