//! # hybridgrid-flow-api
//!
//! The workflow orchestrator's serving side: the HTTP API on `:9002` (agents, workflows, runs,
//! agent runs, cancel, retry, approvals), the AlertManager and Grafana webhooks, `/health`,
//! `/health/db`, `/health/nats`, Prometheus `/metrics`, an OpenAPI document at
//! `/api/openapi.json`, and a web UI, all over a [`hybridgrid_flow_engine::FlowEngine`].
//! [`App::build`] assembles it from a [`Config`], so tests and embedders run it in process.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use hybridgrid_flow_api::{App, Config};
//! use std::collections::BTreeMap;
//!
//! let mut cfg = Config::load(None, &BTreeMap::new())?;
//! cfg.database_url = "sqlite://flow.db".into();   // nats_url empty: the in-process bus
//! cfg.server.addr = "127.0.0.1:9002".into();
//! let handle = App::build(cfg, &BTreeMap::new()).await?.serve().await?;
//! println!("UI on http://{}/", handle.addr());
//! handle.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Errors are JSON `{"status", "error", "message"}` ([`ApiError`]): malformed JSON 400, unknown
//! ids 404, conflicts 409, a body over `server.max_body_bytes` 413, a body of the wrong shape
//! 422 (naming the field), 429 past the per-client rate limit (never on health or metrics), 401
//! for a write without the configured bearer token.
//!
//! ## Features
//! None.

mod alerts;
mod app;
mod auth;
mod backends;
mod clock;
pub mod config;
pub mod demo;
pub mod doctor;
mod engine_error;
mod error;
mod extract;
mod metrics;
mod ratelimit;
mod routes;
mod state;
mod ui;
mod webhooks;

pub use alerts::{AlertRule, AlertState, RuleOn};
pub use app::{App, AppError, Handle, start, wait_for_signal};
pub use backends::BackendError;
pub use config::{Config, LlmConfig};
pub use error::ApiError;
pub use ratelimit::RateLimitConfig;
pub use routes::ROUTES;
