//! `hg-flow` configuration: the YAML file, then `HG_*` overrides, then the guide's variables
//! (`DATABASE_URL`, `NATS_URL`, `HG_FLOW_API_TOKEN`).
//!
//! ```yaml
//! server:
//!   addr: 0.0.0.0:9002
//!   api_token: ""            # when set, writes need Authorization: Bearer <token>
//!   max_body_bytes: 1048576  # larger bodies get 413
//!   rate_limit: { per_second: 50, burst: 100 }
//! database_url: sqlite://hg-flow.db      # or postgres://user@host/db
//! nats_url: ""                           # empty: the in-process event bus
//! alerts:
//!   rules:
//!     - match: { alertname: DiskFull }
//!       workflow: clean-disk
//! events: { stream: HG_FLOW, subjects: ["workflow.>", "graph.>"] }
//! engine: { max_parallel: 8, workflow_timeout: 1h, approval_timeout: 24h }
//! docker: { socket: unix:///var/run/docker.sock }   # enables container agents
//! dagger: { port: 36409, token: "..." }              # enables Dagger agents (a `dagger run` session)
//! logging: { level: info, format: text }
//! ```

use crate::alerts::AlertRule;
use crate::ratelimit::RateLimitConfig;
use hybridgrid_core::config::{ConfigError, EnvSource, load};
use hybridgrid_core::logging::{LOGGING_ENV_ALIASES, LoggingConfig};
use hybridgrid_flow_engine::FlowConfig as EngineConfig;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `server:` — the HTTP listener and its guards.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Listen address (`HG_SERVER_ADDR`), `0.0.0.0:9002` by default.
    pub addr: String,
    /// Bearer token for write endpoints (`HG_FLOW_API_TOKEN`); empty = no token needed.
    pub api_token: String,
    /// Largest request body accepted, in bytes; larger ones get 413.
    pub max_body_bytes: usize,
    /// Per-client rate limit on `/api`.
    pub rate_limit: RateLimitConfig,
    /// The URL people reach the UI at (printed by `demo`); defaults to `http://<addr>/`.
    pub public_url: String,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            addr: "0.0.0.0:9002".into(),
            api_token: String::new(),
            max_body_bytes: 1 << 20,
            rate_limit: RateLimitConfig::default(),
            public_url: String::new(),
        }
    }
}

/// `alerts:` — how webhook alerts map to workflows.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AlertsConfig {
    /// Label-matching rules, tried in order; every matching rule starts its workflow.
    pub rules: Vec<AlertRule>,
}

/// `events:` — the NATS JetStream stream the bus uses (ignored by the in-process bus).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Stream name (`HG_FLOW`).
    pub stream: String,
    /// Subjects the stream carries: the engine's `workflow.>` and every event trigger's pattern.
    pub subjects: Vec<String>,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            stream: "HG_FLOW".into(),
            subjects: vec!["workflow.>".into(), "graph.>".into(), "events.>".into()],
        }
    }
}

/// The whole `hg-flow` config.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// HTTP server.
    pub server: ServerConfig,
    /// `DATABASE_URL`: `sqlite://path` (default `sqlite://hg-flow.db`) or `postgres://...`.
    pub database_url: String,
    /// `NATS_URL`: a NATS server for events; empty means the in-process bus.
    pub nats_url: String,
    /// Alert → workflow rules.
    pub alerts: AlertsConfig,
    /// The event bus stream.
    pub events: EventsConfig,
    /// The engine: parallelism, leases, timeouts, approvals.
    pub engine: EngineConfig,
    /// Container agents: the Docker engine (`docker: {}` for the defaults); absent = container
    /// agents cannot run here (their steps fail naming the missing executor).
    pub docker: Option<hybridgrid_executors::DockerConfig>,
    /// Dagger agents: a `dagger run` session's GraphQL API (`port`, `token`); absent = Dagger
    /// agents cannot run here (their steps fail naming the missing executor).
    pub dagger: Option<hybridgrid_executors::DaggerConfig>,
    /// LLM agents (`llm: {definitions: DIR}`): an agent of kind `llm` runs the agent-runner
    /// definition its `command[0]` names; absent = llm agents cannot run here (their steps fail
    /// naming the missing executor).
    pub llm: Option<LlmConfig>,
    /// Logging.
    pub logging: LoggingConfig,
}

/// Where LLM agents come from. Models are reached as the agent runners reach them
/// (`ANTHROPIC_BASE_URL`/`ANTHROPIC_API_KEY`, `OPENAI_BASE_URL`/`OPENAI_API_KEY`, or a
/// definition's own `brain.base_url`/`brain.api_key_env`).
///
/// ```yaml
/// llm:
///   definitions: /etc/hybridgrid/agents   # holds agents/NAME/config.yaml
///   hub_url: http://127.0.0.1:8080        # optional: Hub tools for definitions granted hub:*
/// ```
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// The `AGENT_DEFINITIONS_PATH` root: `agents/NAME/config.yaml` under it.
    pub definitions: std::path::PathBuf,
    /// The Hub (`HUB_URL`; its key from `HUB_API_KEY`) for definitions granted `hub:read` or
    /// `hub:write`; without it their steps fail saying so.
    pub hub_url: Option<String>,
}

/// The guide's variable names for config keys.
pub const ENV_ALIASES: &[(&str, &str)] = &[
    ("DATABASE_URL", "database_url"),
    ("NATS_URL", "nats_url"),
    ("HG_FLOW_API_TOKEN", "server.api_token"),
];

impl Config {
    /// Loads defaults → `file` → `HG_*` and the guide's variables from `env`.
    pub fn load(file: Option<&Path>, env: &dyn EnvSource) -> Result<Self, ConfigError> {
        let aliases: Vec<(&str, &str)> = ENV_ALIASES
            .iter()
            .chain(LOGGING_ENV_ALIASES)
            .copied()
            .collect();
        let mut cfg: Config = load(file, env, &aliases)?;
        if cfg.database_url.trim().is_empty() {
            cfg.database_url = "sqlite://hg-flow.db".into();
        }
        if cfg.server.max_body_bytes == 0 {
            return Err(ConfigError::Invalid {
                key: "server.max_body_bytes".into(),
                message: "must be greater than 0".into(),
            });
        }
        Ok(cfg)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn guide_variables_override() {
        let env = BTreeMap::from([
            ("DATABASE_URL".to_string(), "postgres://u@h/db".to_string()),
            ("NATS_URL".to_string(), "nats://127.0.0.1:4222".to_string()),
            ("HG_FLOW_API_TOKEN".to_string(), "t0k".to_string()),
            ("HG_SERVER_MAX_BODY_BYTES".to_string(), "10".to_string()),
        ]);
        let cfg = Config::load(None, &env).unwrap();
        assert_eq!(cfg.database_url, "postgres://u@h/db");
        assert_eq!(cfg.nats_url, "nats://127.0.0.1:4222");
        assert_eq!(cfg.server.api_token, "t0k");
        assert_eq!(cfg.server.max_body_bytes, 10);
        let cfg = Config::load(None, &BTreeMap::new()).unwrap();
        assert_eq!(cfg.database_url, "sqlite://hg-flow.db");
        assert_eq!(cfg.server.addr, "0.0.0.0:9002");
    }
}
