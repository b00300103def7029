//! `hg-coord serve`: the compile farm's coordinator (gRPC :9000, dashboard and API :8080).
//! `hg-coord cert init|issue`: the farm CA and the certificates of coordinator, workers, clients.
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
    /// Diagnose the coordinator this config describes: ports, /health, workers and their circuits,
    /// timeouts, fallbacks, the clients' cache, mDNS, TLS. Exits 1 when a check fails.
    Doctor {
        /// YAML config file (env: HG_CONFIG).
        #[arg(long, env = "HG_CONFIG")]
        config: Option<PathBuf>,
        /// gRPC address of the coordinator (overrides coordinator.grpc_addr).
        #[arg(long)]
        grpc_addr: Option<String>,
        /// HTTP address of the coordinator (overrides coordinator.http_addr).
        #[arg(long)]
        http_addr: Option<String>,
    },
    /// Make the farm CA and issue certificates from it (no openssl needed).
    Cert {
        #[command(subcommand)]
        command: CertCommand,
    },
}

#[derive(Subcommand)]
enum CertCommand {
    /// Create a farm CA: DIR/ca.crt (give it to every machine) and DIR/ca.key (keep it here).
    Init {
        /// Directory for the CA files.
        #[arg(long)]
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "hybridgrid farm CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// Issue a certificate from the CA in DIR: OUT/NAME.crt and OUT/NAME.key.
    Issue {
        /// Directory holding ca.crt and ca.key.
        #[arg(long)]
        dir: PathBuf,
        /// coordinator, worker or client.
        #[arg(long)]
        role: String,
        /// The identity: for a worker its worker id (worker.id), for a client any name.
        #[arg(long)]
        name: String,
        /// A DNS name or IP address the holder serves on (coordinator and workers); repeatable.
        #[arg(long = "host")]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Output directory (default: DIR).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

fn cert(command: CertCommand) -> anyhow::Result<()> {
    use hybridgrid_transport::tls::{Role, certgen};
    match command {
        CertCommand::Init { dir, name, days } => {
            let ca = certgen::new_ca(&name, days).context("creating the CA")?;
            certgen::write_pair(&dir, "ca", &ca).context("writing the CA")?;
            println!(
                "farm CA written: {0}/ca.crt (copy to every machine as tls.ca) and {0}/ca.key (keep it secret)",
                dir.display()
            );
        }
        CertCommand::Issue {
            dir,
            role,
            name,
            hosts,
            days,
            out,
        } => {
            let role = Role::parse(&role).with_context(|| {
                format!("--role {role:?}: expected coordinator, worker or client")
            })?;
            if role != Role::Client && hosts.is_empty() {
                anyhow::bail!(
                    "--host is required for a {role} certificate: the names or addresses peers dial it at"
                );
            }
            let ca = certgen::read_pair(&dir, "ca").context("reading the CA")?;
            let pair = certgen::issue(&ca, role, &name, &hosts, certgen::Validity::days(days))
                .context("issuing the certificate")?;
            let out = out.unwrap_or(dir.clone());
            certgen::write_pair(&out, &name, &pair).context("writing the certificate")?;
            println!(
                "{role} certificate for {name:?} written; config:\ntls:\n  ca: {}\n  cert: {}\n  key: {}",
                dir.join("ca.crt").display(),
                out.join(format!("{name}.crt")).display(),
                out.join(format!("{name}.key")).display()
            );
        }
    }
    Ok(())
}

/// mimalloc: every compile request is many small allocations (HTTP/2 frames, headers, the
/// request and reply messages), which it serves faster than the system allocator. The farm_sim
/// bench runs the coordinator with the same allocator.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    let (config, grpc_addr, http_addr, static_workers) = match Cli::parse().command {
        Command::Serve {
            config,
            grpc_addr,
            http_addr,
            static_workers,
        } => (config, grpc_addr, http_addr, static_workers),
        Command::Cert { command } => return cert(command),
        Command::Doctor {
            config,
            grpc_addr,
            http_addr,
        } => {
            let mut cfg =
                FarmConfig::load(config.as_deref(), &ProcessEnv).context("loading config")?;
            if let Some(a) = grpc_addr {
                cfg.coordinator.grpc_addr = a;
            }
            if let Some(a) = http_addr {
                cfg.coordinator.http_addr = a;
            }
            let report = tokio::task::spawn_blocking(move || app::doctor::diagnose(&cfg))
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
            &cfg,
            cfg.coordinator.static_workers.clone(),
        )?);
    }
    if let Some(mdns) = app::mdns_discovery(&cfg)? {
        discovery.push(mdns);
    }
    let handle = app::start_coordinator(&cfg, discovery)
        .await
        .context("starting coordinator")?;
    // With `logging.format: json` stderr carries JSON lines only (the log event says the same).
    if cfg.logging.format == hybridgrid_core::logging::LogFormat::Text {
        eprintln!(
            "hg-coord: gRPC on {}, dashboard on http://{}/",
            handle.grpc_addr, handle.http_addr
        );
    }
    wait_for_signal(handle.stop_token()).await;
    handle.shutdown().await;
    Ok(())
}
