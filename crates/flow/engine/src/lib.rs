//! # hybridgrid-flow-engine
//!
//! The workflow orchestrator's durable engine. [`FlowEngine::start`] takes a [`FlowConfig`], a
//! [`Store`](hybridgrid_core::Store) (SQLite embedded, PostgreSQL for fleets), an
//! [`EventBus`](hybridgrid_core::EventBus) (in process, or NATS JetStream) and the
//! [`Executors`] per agent kind, and offers everything the HTTP API needs: the agent registry,
//! workflows, triggers, runs with their nodes, agent runs, cancel, retry, approvals, and a
//! [`watch`](FlowEngine::watch) of changes for metrics. Errors are one [`FlowError`].
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_flow_engine::{Executors, FlowConfig, FlowEngine, TriggerOptions};
//! use hybridgrid_flow_model::TriggerSource;
//! use std::sync::Arc;
//!
//! let store = Arc::new(hybridgrid_store::SqliteStore::open("flow.db").await?);
//! let bus = Arc::new(hybridgrid_queue::MemoryEventBus::new(1024));
//! let engine = FlowEngine::start(FlowConfig::default(), store, bus, Executors::native("/tmp")).await?;
//! let agent = engine.create_agent(serde_json::from_value(serde_json::json!({
//!     "name": "echo", "kind": "native", "command": ["/bin/echo"], "capabilities": [{"name": "run"}]}))?).await?;
//! let wf = engine.create_workflow(serde_json::from_value(serde_json::json!({
//!     "name": "hello", "nodes": [{"id": "a", "agent": "echo", "action": "run"}]}))?).await?;
//! let t = engine.trigger(&wf.id, serde_json::json!({}), TriggerSource::Manual, TriggerOptions::default()).await?;
//! println!("{:?}", engine.run(&t.run_id).await?.status);
//! # let _ = agent; Ok(()) }
//! ```
//!
//! ## Guarantees
//! - Every transition is written to the store before it is acted on; an engine killed at any
//!   point leaves nothing RUNNING for good: its claimed steps' leases expire and another engine
//!   (or the restarted one, at once when it keeps its `engine_id`) runs them again; steps that
//!   completed are never re-run; approvals still wait. A run past its deadline is failed.
//! - Many engines on one PostgreSQL share the work: a step is claimed with a lease
//!   (`FOR UPDATE SKIP LOCKED`), and only the attempt holding the claim can complete it.
//! - Events are written to an outbox in the same transaction as their transition and relayed to
//!   the bus, so a bus outage delays events but loses none. Subjects: [`hybridgrid_flow_model::event`].
//!
//! ## Features
//! - `native` (default): [`Executors::native`] runs native agents with `NativeExecutor`.
//! - `docker`, `dagger`: container and Dagger agents (`Executors::docker`, `Executors::dagger`).
//! - `llm`: LLM agents from the agent runners' definitions (`LlmAgents`, `Executors::llm`).

mod background;
mod config;
mod core;
mod error;
mod executor;
mod facade;
mod facade_types;
mod lanes;
#[cfg(feature = "llm")]
mod llm;
mod plan;
mod runner;

pub use config::FlowConfig;
pub use error::FlowError;
pub use executor::{AgentCall, AgentExecutor, Executors, NoopExecutor, ProcessExecutor};
pub use facade::FlowEngine;
pub use facade_types::{FlowChange, TriggerOptions, Triggered};
pub use hybridgrid_core::{BusMessage, EventBus, EventBusError};
#[cfg(feature = "llm")]
pub use llm::{ExecutorEnv, LlmAgents, StandardExecutor};
