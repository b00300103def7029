//! `hg-agents`: the agent-runner system's binary. Wiring only: the roles live in
//! `hybridgrid-agents-{coordinator,runner}`.
//!
//! ```text
//! hg-agents coordinator                      leader-elected Hub poller
//! hg-agents runner [--mode=notification|exploration|hybrid]
//! hg-agents cancel ACTIVATION_ID             ask the running activation's runner to stop it
//! hg-agents clear-backoff AGENT              clear an agent's failures and backoff
//! hg-agents doctor                           the troubleshooting guide's diagnoses
//! hg-agents demo                             the whole flow in one process (fake Hub + fake LLM)
//! ```

mod demo;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use hybridgrid_agents_coordinator::CoordinatorConfig;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::{Backends, RunnerMode, Settings, redact_url};
use hybridgrid_agents_runner::{ExecutorEnv, RunnerConfig, StandardExecutor};
use hybridgrid_core::config::{EnvSource, ProcessEnv};
use hybridgrid_core::logging::{LogFormat, LoggingConfig, init_logging};
use std::sync::Arc;

#[derive(Parser)]
#[command(name = "hg-agents", version, about = "hybridgrid agent runners")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Campaign for leadership; while leader, poll the Hub and enqueue work.
    Coordinator,
    /// Claim and run activations.
    Runner {
        /// notification, exploration or hybrid (overrides RUNNER_MODE).
        #[arg(long)]
        mode: Option<String>,
    },
    /// Cancel a running activation (its runner kills the process tree).
    Cancel {
        /// The activation id (see `GET /api/v1/activations`).
        id: String,
    },
    /// Clear an agent's failures and backoff.
    ClearBackoff {
        /// The agent.
        agent: String,
    },
    /// Run the diagnoses of the troubleshooting guide.
    Doctor {
        /// Runner modes deployed (comma-separated) to compare with where the work is.
        #[arg(long, default_value = "hybrid")]
        modes: String,
    },
    /// The whole flow in one process: fake Hub, fake LLM, in-memory queue and election.
    Demo,
}

fn logging(env: &dyn EnvSource) {
    let level = env
        .var("HG_LOG_LEVEL")
        .or_else(|| env.var("LOG_LEVEL"))
        .and_then(|l| l.parse().ok())
        .unwrap_or_default();
    let format = match env.var("HG_LOG_FORMAT").as_deref() {
        Some("json") => LogFormat::Json,
        _ => LogFormat::Text,
    };
    init_logging(&LoggingConfig { level, format });
}

/// Settings and backends; every problem is reported at once.
async fn startup(env: &dyn EnvSource) -> Result<(Settings, Backends)> {
    let settings = Settings::from_env(env);
    let url = env.var("VALKEY_URL").or_else(|| env.var("REDIS_URL"));
    let prefix = env.var("AGENTS_REDIS_PREFIX").unwrap_or_default();
    let policy = settings
        .as_ref()
        .map(|s| s.backoff_policy())
        .unwrap_or_default();
    let backends = match &url {
        Some(u) if u.starts_with("redis") || u.starts_with("memory") => {
            Some(Backends::connect_with(u, &prefix, policy).await)
        }
        _ => None,
    };
    let mut problems: Vec<String> = match &settings {
        Ok(_) => Vec::new(),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    };
    if let Some(Err(e)) = &backends {
        problems.push(e.to_string());
    }
    if !problems.is_empty() {
        bail!(
            "{} invalid setting(s):\n  - {}",
            problems.len(),
            problems.join("\n  - ")
        );
    }
    match (settings, backends) {
        (Ok(s), Some(Ok(b))) => Ok((s, b)),
        _ => bail!("VALKEY_URL missing"),
    }
}

fn definitions(s: &Settings) -> Result<Definitions> {
    Ok(match &s.definitions_url {
        Some(u) => Definitions::remote(u, s.definitions_ttl).context("AGENT_DEFINITIONS_URL")?,
        None => Definitions::local(&s.definitions_path),
    })
}

async fn ops_backends(env: &dyn EnvSource) -> Result<Backends> {
    let url = env
        .var("VALKEY_URL")
        .or_else(|| env.var("REDIS_URL"))
        .context("VALKEY_URL missing (redis://host:6379)")?;
    let prefix = env.var("AGENTS_REDIS_PREFIX").unwrap_or_default();
    Backends::connect(&url, &prefix)
        .await
        .with_context(|| format!("connecting to {}", redact_url(&url)))
}

async fn until_signal() {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let cli = Cli::parse();
    let env = ProcessEnv;
    logging(&env);
    match cli.cmd {
        Cmd::Coordinator => {
            let (s, backends) = startup(&env).await?;
            let hub = HubClient::new(&s.hub_url, s.hub_api_key.clone())?;
            let defs = definitions(&s)?;
            let c = hybridgrid_agents_coordinator::start(
                CoordinatorConfig::from_settings(&s),
                backends,
                hub,
                Some(defs),
            )
            .await?;
            tracing::info!(id = %s.id, admin = ?c.admin_addr(), "coordinator_started");
            until_signal().await;
            c.shutdown().await;
        }
        Cmd::Runner { mode } => {
            let (mut s, backends) = startup(&env).await?;
            if let Some(m) = mode {
                s.runner_mode = m
                    .parse::<RunnerMode>()
                    .map_err(|e| anyhow::anyhow!("--mode: {e}"))?;
            }
            let hub = HubClient::new(&s.hub_url, s.hub_api_key.clone())?;
            let defs = definitions(&s)?;
            let exec = Arc::new(StandardExecutor::new(ExecutorEnv::from_env(&env)));
            let r = hybridgrid_agents_runner::start_with_prefix(
                RunnerConfig::from_settings(&s, &env),
                backends,
                hub,
                defs,
                exec,
                &s.prefix,
            )
            .await?;
            until_signal().await;
            r.shutdown().await;
        }
        Cmd::Cancel { id } => {
            let b = ops_backends(&env).await?;
            if b.state.request_cancel(&id).await? {
                println!("cancel requested for activation {id}");
            } else {
                bail!("no running activation {id}");
            }
        }
        Cmd::ClearBackoff { agent } => {
            let b = ops_backends(&env).await?;
            if b.state.clear_backoff(&agent).await? {
                println!("backoff of {agent} cleared");
            } else {
                println!("{agent} had no failures or backoff");
            }
        }
        Cmd::Doctor { modes } => {
            // Not `startup`: a down Redis is one of the findings, not a reason to stop.
            let s = Settings::from_env(&env).map_err(|e| anyhow::anyhow!("{e}"))?;
            let modes: Vec<RunnerMode> = modes
                .split(',')
                .map(|m| m.parse().map_err(|e| anyhow::anyhow!("--modes: {e}")))
                .collect::<Result<_>>()?;
            let doctor = hybridgrid_agents_runner::doctor::Doctor {
                valkey_url: s.valkey_url.clone(),
                prefix: s.prefix.clone(),
                hub: HubClient::new(&s.hub_url, s.hub_api_key.clone())?,
                defs: definitions(&s)?,
                modes,
                env: ExecutorEnv::from_env(&env),
                credentials: RunnerConfig::from_settings(&s, &env).credentials,
            };
            let checks = doctor.diagnose().await;
            let mut bad = 0;
            for c in &checks {
                println!("[{}] {}: {}", c.verdict.label(), c.name, c.detail);
                bad += usize::from(!c.ok());
            }
            if bad > 0 {
                bail!("{bad} check(s) failed");
            }
        }
        Cmd::Demo => demo::run().await?,
    }
    Ok(())
}
