//! `hg-worker serve --coordinator=HOST:9000`: a compile-farm worker (gRPC :50052, HTTP :9090).
//! SIGTERM or SIGINT drains it (running tasks finish, new ones go elsewhere); a second one stops it.
use anyhow::Context;
use clap::{Parser, Subcommand};
use hybridgrid_core::config::ProcessEnv;
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_worker as app;
use hybridgrid_transport::serve::wait_for_signal;
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "hg-worker", version, about = "hybridgrid compile-farm worker")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run compile tasks for a coordinator.
    Serve {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
        /// Coordinator to register with, host:port (overrides worker.coordinator).
        #[arg(long)]
        coordinator: Option<String>,
        /// gRPC listen address (overrides worker.grpc_addr).
        #[arg(long)]
        grpc_addr: Option<String>,
        /// HTTP listen address (overrides worker.http_addr).
        #[arg(long)]
        http_addr: Option<String>,
        /// Worker id (overrides worker.id).
        #[arg(long)]
        id: Option<String>,
    },
    /// Diagnose the worker this config describes: ports, /health, the coordinator, the work dir,
    /// compilers, the Docker engine and images, mDNS, TLS. Exits 1 when a check fails.
    Doctor {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
        /// Coordinator address (overrides worker.coordinator).
        #[arg(long)]
        coordinator: Option<String>,
        /// gRPC address of the worker (overrides worker.grpc_addr).
        #[arg(long)]
        grpc_addr: Option<String>,
        /// HTTP address of the worker (overrides worker.http_addr).
        #[arg(long)]
        http_addr: Option<String>,
        /// The Docker engine (unix:///path or tcp://host:port); when set, its absence is a failure.
        #[arg(long, env = "DOCKER_HOST")]
        docker_host: Option<String>,
        /// An image the Docker executor needs; repeatable (each must be on the engine).
        #[arg(long = "image")]
        images: Vec<String>,
    },
}

/// mimalloc: every task decodes, copies and frees its text and object (hundreds of KiB each),
/// which the system allocator hands back to the kernel and faults in again on the next task;
/// mimalloc keeps and reuses them.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hg-worker: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> anyhow::Result<()> {
    let (config, coordinator, grpc_addr, http_addr, id) = match Cli::parse().command {
        Command::Serve {
            config,
            coordinator,
            grpc_addr,
            http_addr,
            id,
        } => (config, coordinator, grpc_addr, http_addr, id),
        Command::Doctor {
            config,
            coordinator,
            grpc_addr,
            http_addr,
            docker_host,
            images,
        } => {
            let mut cfg =
                FarmConfig::load(config.as_deref(), &ProcessEnv).context("loading config")?;
            if coordinator.is_some() {
                cfg.worker.coordinator = coordinator;
            }
            if let Some(a) = grpc_addr {
                cfg.worker.grpc_addr = a;
            }
            if let Some(a) = http_addr {
                cfg.worker.http_addr = a;
            }
            let opts = app::doctor::DoctorOptions {
                docker_required: docker_host.is_some() || !images.is_empty(),
                docker_host,
                images,
            };
            let report = tokio::task::spawn_blocking(move || app::doctor::diagnose(&cfg, &opts))
                .await
                .context("running the checks")?;
            print!("{report}");
            if !report.ok() {
                std::process::exit(report.exit_code());
            }
            return Ok(());
        }
    };
    let mut cfg = FarmConfig::load(config.as_deref(), &ProcessEnv).context("loading config")?;
    if coordinator.is_some() {
        cfg.worker.coordinator = coordinator;
    }
    if let Some(a) = grpc_addr {
        cfg.worker.grpc_addr = a;
    }
    if let Some(a) = http_addr {
        cfg.worker.http_addr = a;
    }
    if id.is_some() {
        cfg.worker.id = id;
    }
    hybridgrid_core::logging::init_logging(&cfg.logging);
    let handle = app::start_native_worker(&cfg)
        .await
        .context("starting worker")?;
    // With `logging.format: json` stderr carries JSON lines only (the log event says the same).
    if cfg.logging.format == hybridgrid_core::logging::LogFormat::Text {
        eprintln!(
            "hg-worker: {} serving gRPC on {}, health on http://{}/health",
            handle.state.info.id, handle.grpc_addr, handle.http_addr
        );
    }
    wait_for_signal(handle.stop_token()).await;
    // Drain: no new tasks, NOT_SERVING in gRPC health, mDNS goodbye; the running tasks finish
    // (up to worker.task_timeout) unless a second signal arrives.
    tokio::select! {
        _ = handle.state.drain(*cfg.worker.task_timeout) => {}
        _ = wait_for_signal(hybridgrid_core::CancellationToken::new()) => {}
    }
    handle.shutdown().await;
    Ok(())
}
