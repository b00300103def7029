//! `hgbuild doctor`: the troubleshooting guide's diagnoses from a client's seat — the config, the
//! coordinator answering over gRPC (TLS and token included) and its `/health`, what its
//! `/api/stats` says about workers, circuits, timeouts and fallbacks, this machine's compile
//! cache (enabled, directory writable, hit rate and the most common miss reason) and the TLS
//! certificate. Each finding says what to do. Links no server code.

use crate::{cache, connect::connect, paths, stats};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_transport::doctor::{
    Report, Verdict, check, dir_check, fetch_stats, health_check, listeners_of, port_of,
    stats_checks, tls_checks,
};

/// The coordinator's HTTP address as seen from here: `http` when given, else the host of
/// `client.coordinator` with the port of `coordinator.http_addr`.
pub fn coordinator_http(cfg: &FarmConfig, http: Option<&str>) -> String {
    if let Some(h) = http {
        return h.to_owned();
    }
    let host = cfg
        .client
        .coordinator
        .rsplit_once(':')
        .map_or("127.0.0.1", |(h, _)| h);
    let port = port_of(&cfg.coordinator.http_addr).unwrap_or(8080);
    format!("{host}:{port}")
}

/// Runs every check; `http` overrides the coordinator's HTTP address.
pub async fn diagnose(cfg: &FarmConfig, http: Option<&str>) -> Report {
    let mut r = Report::default();
    let addr = &cfg.client.coordinator;
    let reachable = match connect(cfg).await {
        Ok((_, slots)) => {
            r.push(check(
                "coordinator gRPC",
                Verdict::Ok,
                format!(
                    "{addr} answers (protocol v{}), {} slots free now",
                    hybridgrid_core::PROTOCOL_VERSION,
                    slots.free
                ),
            ));
            true
        }
        Err(e) => {
            let fix = match e.reason {
                "auth_refused" => "set client.token (HG_CLIENT_TOKEN) to a token in coordinator.client_tokens, or use a client certificate from the farm CA".to_owned(),
                "protocol_mismatch" => "run the same hybridgrid version on clients and coordinator".to_owned(),
                "client_error" => "fix the tls: section of the config".to_owned(),
                _ => {
                    let here = port_of(addr).map(listeners_of).unwrap_or_default();
                    format!(
                        "start hg-coord serve on that host (it listens on coordinator.grpc_addr, default :9000), or point client.coordinator / HG_COORDINATOR at it; compiles run locally meanwhile{}",
                        if here.is_empty() { String::new() } else { format!(" (on this machine that port is held by {})", here.join(", ")) }
                    )
                }
            };
            r.push(check(
                "coordinator gRPC",
                Verdict::Fail,
                format!("{}: {fix}", e.message),
            ));
            false
        }
    };
    let http = coordinator_http(cfg, http);
    if reachable {
        r.push(health_check(
            "coordinator",
            &http,
            "is coordinator.http_addr the same here as on the coordinator? (or pass doctor --http HOST:PORT)",
        ));
        match fetch_stats(
            &http,
            cfg.coordinator.api_token.as_ref().map(|t| t.expose()),
        ) {
            Ok(s) => r.extend(stats_checks(&s)),
            Err(c) => r.push(c),
        }
    }
    cache_checks(cfg, &mut r);
    r.extend(tls_checks(
        cfg.tls.ca.as_deref(),
        cfg.tls.cert.as_deref(),
        cfg.tls.key.as_deref(),
        None,
    ));
    r
}

fn cache_checks(cfg: &FarmConfig, r: &mut Report) {
    if !cfg.cache.enabled {
        r.push(check(
            "compile cache",
            Verdict::Warn,
            "disabled (cache.enabled: false): every compile runs; set cache.enabled: true (HG_CACHE_ENABLED=true)",
        ));
        return;
    }
    r.push(dir_check("cache.dir", &cache::cache_dir(&cfg.cache)));
    let log = paths::stats_log();
    let t = match stats::Totals::read(&log, 0) {
        Ok(t) => t,
        Err(e) => {
            r.push(check(
                "cache hit rate",
                Verdict::Warn,
                format!("cannot read {}: {e}", log.display()),
            ));
            return;
        }
    };
    let hits = t.cache_hit_total();
    let looked = hits + t.cache_misses;
    if looked == 0 {
        r.push(check(
            "cache hit rate",
            Verdict::Ok,
            format!("no cacheable compile recorded yet in {}", log.display()),
        ));
        return;
    }
    let top = t
        .cache_miss_reasons
        .iter()
        .max_by(|a, b| a.1.cmp(b.1).then(b.0.cmp(a.0)))
        .map(|(k, n)| (k.as_str(), *n));
    let advice = match top {
        Some(("new_source_or_flags", _)) => {
            "first compiles of these sources, or compiler flags, compiler or working directory differ between builds (the key includes every argument): keep build commands the same"
        }
        Some(("headers_changed", _)) => {
            "an included header changed since the entry was made (a generated or often-edited header)"
        }
        Some(("time_dependent", _)) => {
            "the sources use __DATE__/__TIME__/__TIMESTAMP__, which are never cached: drop them or pin SOURCE_DATE_EPOCH"
        }
        Some(("entry_missing", _)) => "entries were evicted or damaged: raise cache.max_size_gb",
        _ => "",
    };
    let rate = 100.0 * t.cache_hit_rate();
    let detail = format!(
        "{rate:.1}% ({hits} hits, {} misses){}{}",
        t.cache_misses,
        top.map_or(String::new(), |(k, n)| format!(
            "; most common miss reason: {k} ({n})"
        )),
        if advice.is_empty() {
            String::new()
        } else {
            format!(": {advice}")
        }
    );
    r.push(check(
        "cache hit rate",
        if hits == 0 && t.cache_misses >= 10 {
            Verdict::Warn
        } else {
            Verdict::Ok
        },
        detail,
    ));
    if !t.fallbacks.is_empty() {
        let mut f: Vec<_> = t.fallbacks.iter().collect();
        f.sort_by(|a, b| b.1.cmp(a.1));
        r.push(check(
            "local fallbacks (this machine)",
            Verdict::Ok,
            f.iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", "),
        ));
    }
}
