//! `hg-flow`: the workflow orchestrator. `serve` (HTTP API, webhooks, metrics and UI on :9002),
//! `doctor` (the runbook's checks), `demo` (the quick start: serve, load the example agents and
//! workflow, run it, print the result), and `agent` (the example agents, run by the demo).
use anyhow::Context;
use clap::{Parser, Subcommand};
use hybridgrid_core::config::ProcessEnv;
use hybridgrid_flow_api::{Config, demo, doctor};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "hg-flow", version, about = "hybridgrid workflow orchestrator")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API, webhooks, /metrics and the web UI (DATABASE_URL, NATS_URL; migrations applied at start).
    Serve {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
        /// Listen address (overrides server.addr).
        #[arg(long)]
        addr: Option<String>,
    },
    /// Check the database (reachable, migrated), NATS, stuck runs and agents' images/commands.
    Doctor {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
    },
    /// The quick start: SQLite + in-process bus, the example agents and scan → notify workflow.
    Demo {
        /// Directory to scan (default: a sample directory with planted secrets).
        #[arg(long)]
        path: Option<PathBuf>,
        /// Listen address of the UI and API.
        #[arg(long, default_value = "127.0.0.1:9002")]
        addr: String,
        /// Exit after the run instead of serving the UI until Ctrl-C.
        #[arg(long)]
        exit: bool,
    },
    /// Run an example agent (`secret-scanner` or `notifier`) under the agent I/O contract.
    Agent {
        /// Which agent.
        name: String,
        /// Input JSON (else AGENT_INPUT).
        input: Option<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(code) => code,
        Err(e) => {
            eprintln!("hg-flow: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<std::process::ExitCode> {
    match Cli::parse().command {
        Command::Serve { config, addr } => {
            let mut cfg = Config::load(config.as_deref(), &ProcessEnv).context("loading config")?;
            if let Some(a) = addr {
                cfg.server.addr = a;
            }
            hybridgrid_core::logging::init_logging(&cfg.logging);
            let handle = hybridgrid_flow_api::start(cfg, &ProcessEnv)
                .await
                .context("starting hg-flow")?;
            eprintln!("hg-flow: serving on http://{}/", handle.addr());
            hybridgrid_flow_api::wait_for_signal(handle.stop_token()).await;
            handle.shutdown().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Doctor { config } => {
            let cfg = Config::load(config.as_deref(), &ProcessEnv).context("loading config")?;
            let report = doctor::run(&cfg, &ProcessEnv).await;
            print!("{report}");
            Ok(if report.ok() {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Demo { path, addr, exit } => {
            let exe = std::env::current_exe().context("locating hg-flow for the demo agents")?;
            hybridgrid_core::logging::init_logging(&Default::default());
            let opts = demo::DemoOptions {
                agent_exe: exe,
                scan_path: path,
                addr,
            };
            let d = demo::run(opts, &ProcessEnv).await.context("demo")?;
            print!("{}", d.report());
            let ok = d.run.status.as_str() == "SUCCEEDED";
            if !exit {
                println!("serving the UI until Ctrl-C");
                hybridgrid_flow_api::wait_for_signal(d.handle.stop_token()).await;
            }
            d.handle.shutdown().await;
            Ok(if ok {
                std::process::ExitCode::SUCCESS
            } else {
                std::process::ExitCode::FAILURE
            })
        }
        Command::Agent { name, input } => {
            let body = match name.as_str() {
                "secret-scanner" => hybridgrid_flow_examples::scanner::run,
                "notifier" => hybridgrid_flow_examples::notifier::run,
                other => {
                    anyhow::bail!("unknown example agent {other:?} (secret-scanner, notifier)")
                }
            };
            let input =
                hybridgrid_flow_examples::read_input(input, std::env::var("AGENT_INPUT").ok())
                    .map_err(anyhow::Error::msg)?;
            match body(&input) {
                Ok(out) => {
                    println!("{out}");
                    Ok(std::process::ExitCode::SUCCESS)
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    Ok(std::process::ExitCode::FAILURE)
                }
            }
        }
    }
}
