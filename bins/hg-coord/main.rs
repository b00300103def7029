//! `hg-coord serve`: the compile farm's coordinator (gRPC :9000, dashboard and API :8080).
use anyhow::Context;
use clap::{Parser, Subcommand};
use hybridgrid_core::config::ProcessEnv;
use hybridgrid_farm_coordinator as app;
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::serve::wait_for_signal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "hg-coord",
    version,
    about = "hybridgrid compile-farm coordinator"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve gRPC for clients and workers, and the dashboard, /api/stats and /metrics over HTTP.
    Serve {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
        /// gRPC listen address (overrides coordinator.grpc_addr).
        #[arg(long)]
        grpc_addr: Option<String>,
        /// HTTP listen address (overrides coordinator.http_addr).
        #[arg(long)]
        http_addr: Option<String>,
        /// A worker's gRPC address to probe; repeatable (adds to coordinator.static_workers).
        #[arg(long = "static-worker")]
        static_workers: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hg-coord: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let Command::Serve {
        config,
        grpc_addr,
        http_addr,
        static_workers,
    } = Cli::parse().command;
    let mut cfg = FarmConfig::load(config.as_deref(), &ProcessEnv).context("loading config")?;
    if let Some(a) = grpc_addr {
        cfg.coordinator.grpc_addr = a;
    }
    if let Some(a) = http_addr {
        cfg.coordinator.http_addr = a;
    }
    cfg.coordinator.static_workers.extend(static_workers);
    hybridgrid_core::logging::init_logging(&cfg.logging);
    let mut discovery = Vec::new();
    if !cfg.coordinator.static_workers.is_empty() {
        discovery.push(app::static_discovery(
            cfg.coordinator.static_workers.clone(),
        )?);
    }
    let handle = app::start_coordinator(&cfg, discovery)
        .await
        .context("starting coordinator")?;
    eprintln!(
        "hg-coord: gRPC on {}, dashboard on http://{}/",
        handle.grpc_addr, handle.http_addr
    );
    wait_for_signal(handle.stop_token()).await;
    handle.shutdown().await;
    Ok(())
}
