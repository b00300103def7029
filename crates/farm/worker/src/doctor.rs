//! `hg-worker doctor`: the troubleshooting guide's diagnoses for a worker host — its ports (and
//! which process holds them), `/health`, the coordinator reachable from here, the work
//! directory, the compilers, the Docker engine and its images, mDNS and the TLS certificate.
//! Each finding says what to do.

use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::doctor::{
    Report, Verdict, check, dial_addr, dir_check, docker_checks, health_check, listeners_of,
    mdns_check, port_check, port_of, tcp_connect, tls_checks,
};
use std::time::Duration;

/// What `hg-worker doctor` is asked besides the config.
#[derive(Clone, Debug, Default)]
pub struct DoctorOptions {
    /// `DOCKER_HOST` (`unix://PATH`, `tcp://HOST:PORT`); the default socket when `None`.
    pub docker_host: Option<String>,
    /// Whether the Docker engine is required (a Docker executor is configured, or `DOCKER_HOST`
    /// is set): its absence is then a failure, else a warning.
    pub docker_required: bool,
    /// Images that must be on the engine.
    pub images: Vec<String>,
}

/// Runs every check for the worker configured in `cfg`.
pub fn diagnose(cfg: &FarmConfig, opts: &DoctorOptions) -> Report {
    let w = &cfg.worker;
    let mut r = Report::default();
    let grpc = w.grpc_listen(&cfg.tls);
    let start = "start it with hg-worker serve --coordinator=COORD_HOST:9000 (or systemctl start hg-worker)";
    r.push(port_check("worker gRPC", &grpc, "hg-worker", start));
    r.push(port_check("worker HTTP", &w.http_addr, "hg-worker", start));
    r.push(health_check("worker", &w.http_addr, start));
    r.push(match &w.coordinator {
        None => check(
            "coordinator reachable",
            Verdict::Ok,
            "worker.coordinator not set: this worker waits to be found (coordinator.static_workers or mDNS)",
        ),
        Some(addr) => match tcp_connect(&dial_addr(addr), Duration::from_secs(3)) {
            Ok(_) => check(
                "coordinator reachable",
                Verdict::Ok,
                format!("{addr} accepts connections"),
            ),
            Err(e) => {
                let local = port_of(addr).map(listeners_of).unwrap_or_default();
                check(
                    "coordinator reachable",
                    Verdict::Fail,
                    format!(
                        "{e}: start hg-coord serve on that host, or fix worker.coordinator (HG_WORKER_COORDINATOR); in a container on Docker Desktop use host.docker.internal:9000{}",
                        if local.is_empty() { String::new() } else { format!(" (here that port is held by {})", local.join(", ")) }
                    ),
                )
            }
        },
    });
    let work = w.work_dir.clone().unwrap_or_else(std::env::temp_dir);
    r.push(dir_check("worker.work_dir", &work));
    let missing: Vec<&String> = w.compilers.iter().filter(|c| !on_path(c)).collect();
    r.push(if missing.len() == w.compilers.len() && !w.compilers.is_empty() {
        check(
            "compilers",
            Verdict::Fail,
            format!(
                "none of worker.compilers {:?} is installed: install one (apt-get install gcc) or list the ones you have",
                w.compilers
            ),
        )
    } else if missing.is_empty() {
        check(
            "compilers",
            Verdict::Ok,
            format!("{} found", w.compilers.len()),
        )
    } else {
        check(
            "compilers",
            Verdict::Warn,
            format!("not installed here: {missing:?} (the others are offered)"),
        )
    });
    r.extend(docker_checks(
        opts.docker_host.as_deref(),
        opts.docker_required,
        &opts.images,
    ));
    r.push(mdns_check());
    let advertise = w.advertise_addr.clone().unwrap_or_else(|| grpc.clone());
    let host = advertise
        .rsplit_once(':')
        .map(|(h, _)| h.trim_matches(|c| c == '[' || c == ']'));
    r.extend(tls_checks(
        cfg.tls.ca.as_deref(),
        cfg.tls.cert.as_deref(),
        cfg.tls.key.as_deref(),
        host.filter(|h| *h != "127.0.0.1" && *h != "::1"),
    ));
    r
}

fn on_path(program: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    let exec = |p: &std::path::Path| {
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if program.contains('/') {
        return exec(std::path::Path::new(program));
    }
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| exec(&d.join(program))))
}
