//! `hg-coord doctor`: the troubleshooting guide's diagnoses for a coordinator host, run against
//! the coordinator this config describes — its ports (and which process holds them), `/health`,
//! what `/api/stats` says about workers, circuits, timeouts, fallbacks and the clients' cache,
//! mDNS, and the TLS certificate. Each finding says what to do.

use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::doctor::{
    Report, fetch_stats, health_check, mdns_check, port_check, stats_checks, tls_checks,
};

/// Runs every check for the coordinator configured in `cfg`.
pub fn diagnose(cfg: &FarmConfig) -> Report {
    let c = &cfg.coordinator;
    let mut r = Report::default();
    let grpc = c.grpc_listen(&cfg.tls);
    let start = "start it with hg-coord serve (or systemctl start hg-coord)";
    r.push(port_check("coordinator gRPC", &grpc, "hg-coord", start));
    r.push(port_check(
        "coordinator HTTP",
        &c.http_addr,
        "hg-coord",
        start,
    ));
    r.push(health_check("coordinator", &c.http_addr, start));
    match fetch_stats(&c.http_addr, c.api_token.as_ref().map(|t| t.expose())) {
        Ok(stats) => r.extend(stats_checks(&stats)),
        Err(check) => r.push(check),
    }
    r.push(mdns_check());
    let host = grpc
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
