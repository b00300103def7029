//! The farm checks read from a coordinator's `/api/stats`: workers known, each worker's liveness
//! and circuit with the reason of its last failures, timeouts hit, fallbacks, verification
//! mismatches and the clients' cache hit rate. Shared by `hg-coord doctor` and `hgbuild doctor`.

use super::{Check, Verdict, check, dial_addr, http_get};
use serde_json::Value;
use std::time::Duration;

/// `GET /api/stats` on the coordinator's HTTP address, with `coordinator.api_token` when set.
pub fn fetch_stats(http: &str, token: Option<&str>) -> Result<Value, Check> {
    let addr = dial_addr(http);
    let name = "coordinator /api/stats";
    match http_get(&addr, "/api/stats", token, Duration::from_secs(5)) {
        Ok((200, body)) => serde_json::from_str(&body).map_err(|e| {
            check(
                name,
                Verdict::Fail,
                format!("http://{addr}/api/stats is not the coordinator's JSON ({e}): is another service on that port?"),
            )
        }),
        Ok((401 | 403, _)) => Err(check(
            name,
            Verdict::Fail,
            format!("http://{addr}/api/stats refused this doctor: set coordinator.api_token (HG_COORDINATOR_API_TOKEN) to the coordinator's API token"),
        )),
        Ok((code, body)) => Err(check(
            name,
            Verdict::Fail,
            format!("http://{addr}/api/stats answered {code}: {}", body.trim()),
        )),
        Err(e) => Err(check(
            name,
            Verdict::Fail,
            format!("{e}: is hg-coord serve running with coordinator.http_addr {http}?"),
        )),
    }
}

fn count(v: &Value, key: &str) -> u64 {
    v[key].as_u64().unwrap_or(0)
}

fn map_line(v: &Value) -> String {
    v.as_object()
        .map(|m| {
            let mut e: Vec<(&String, u64)> = m
                .iter()
                .map(|(k, n)| (k, n.as_u64().unwrap_or(0)))
                .filter(|(_, n)| *n > 0)
                .collect();
            e.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
            e.iter()
                .map(|(k, n)| format!("{k}: {n}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default()
}

/// The reason of a worker's last failures, newest first (`timeout: no answer within 5s`).
fn last_failures(w: &Value) -> String {
    let f: Vec<String> = w["last_failures"]
        .as_array()
        .map(|a| {
            a.iter()
                .rev()
                .take(3)
                .map(|f| {
                    format!(
                        "{}: {} ({}s ago)",
                        f["kind"].as_str().unwrap_or("?"),
                        f["message"].as_str().unwrap_or(""),
                        f["secs_ago"].as_u64().unwrap_or(0)
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    if f.is_empty() {
        String::new()
    } else {
        format!("; last failures: {}", f.join("; "))
    }
}

/// The checks over one `/api/stats` answer.
pub fn stats_checks(s: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let workers = s["workers"].as_array().cloned().unwrap_or_default();
    if workers.is_empty() {
        out.push(check(
            "workers known",
            Verdict::Fail,
            "the coordinator knows no worker: start hg-worker serve --coordinator=THIS_HOST:9000 on each machine, or list them in coordinator.static_workers (mDNS needs 5353/udp open and one network segment)",
        ));
    } else {
        let up = workers.iter().filter(|w| w["state"] == "up").count();
        out.push(check(
            "workers known",
            Verdict::Ok,
            format!(
                "{} known, {up} up; {} of {} slots free",
                workers.len(),
                count(s, "free_slots"),
                count(s, "total_slots")
            ),
        ));
    }
    for w in &workers {
        let id = w["id"].as_str().unwrap_or("?");
        let addr = w["addr"].as_str().unwrap_or("?");
        let circuit = w["circuit"]["state"].as_str().unwrap_or("closed");
        let reason = w["circuit"]["reason"].as_str().unwrap_or("failure_rate");
        let failures = last_failures(w);
        let name = format!("worker {id}");
        let c = if w["state"] != "up" {
            check(
                name,
                Verdict::Fail,
                format!(
                    "{addr} is down (missed heartbeats or unreachable){failures}: on that machine check curl http://HOST:9090/health and hg-worker doctor; start it with hg-worker serve --coordinator=THIS_HOST:9000"
                ),
            )
        } else if circuit == "open" {
            check(
                name,
                Verdict::Fail,
                format!(
                    "circuit open ({reason}, failure rate {:.0}%){failures}: no task goes to it; fix the cause on the worker (compiler not installed, disk full, resource exhaustion; its log says which), it half-opens after coordinator.breaker.open_timeout (default 30s) and closes after a good probe",
                    100.0 * w["circuit"]["failure_rate"].as_f64().unwrap_or(0.0)
                ),
            )
        } else if circuit == "half_open" {
            check(
                name,
                Verdict::Warn,
                format!("circuit half-open ({reason}): one probe task decides{failures}"),
            )
        } else {
            check(
                name,
                Verdict::Ok,
                format!(
                    "up at {addr}, circuit closed, {} slots, {} done, {} failed{failures}",
                    count(w, "slots"),
                    count(w, "done"),
                    count(w, "failed")
                ),
            )
        };
        out.push(c);
    }
    let kinds = &s["worker_failures"];
    let timeouts = count(kinds, "timeout") + count(kinds, "deadline_exceeded");
    out.push(if timeouts > 0 {
        check(
            "timeouts",
            Verdict::Warn,
            format!(
                "{timeouts} task(s) hit their deadline ({}): raise worker.task_timeout (default 5m) and coordinator.task_timeout, check the worker's resources (top, df -h), or lower worker.max_concurrent_tasks",
                map_line(kinds)
            ),
        )
    } else {
        check("timeouts", Verdict::Ok, "no task hit its deadline")
    });
    let fallbacks = map_line(&s["fallbacks"]);
    out.push(check(
        "local fallbacks",
        Verdict::Ok,
        if fallbacks.is_empty() {
            format!(
                "none; {} compiled on client cores by choice",
                count(s, "local_by_choice")
            )
        } else {
            format!(
                "{fallbacks}; {} compiled on client cores by choice",
                count(s, "local_by_choice")
            )
        },
    ));
    let mismatches = map_line(&s["verify_mismatches"]);
    out.push(if mismatches.is_empty() {
        check(
            "verification",
            Verdict::Ok,
            "no remote result contradicted a local recompile",
        )
    } else {
        check(
            "verification",
            Verdict::Warn,
            format!(
                "results contradicted by a local recompile ({mismatches}): that worker's toolchain or hardware is not what it announces; its circuit was opened; compare its compiler with the clients'"
            ),
        )
    });
    let cache = &s["client_cache"];
    let hits = count(cache, "hit_local") + count(cache, "hit_shared");
    let misses = count(cache, "miss");
    out.push(if hits + misses == 0 {
        check(
            "clients' cache",
            Verdict::Ok,
            "no cache events reported yet",
        )
    } else {
        let rate = 100.0 * hits as f64 / (hits + misses) as f64;
        check(
            "clients' cache",
            if hits == 0 && misses >= 10 {
                Verdict::Warn
            } else {
                Verdict::Ok
            },
            format!(
                "hit rate {rate:.1}% ({hits} hits, {misses} misses){}",
                if hits == 0 && misses >= 10 {
                    ": nothing was reused; check cache.enabled and the cache directory on the clients (hgbuild doctor), and keep compiler flags the same between builds"
                } else {
                    ""
                }
            ),
        )
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_open_circuit_fails_with_its_reason_and_the_fix() {
        let s = serde_json::json!({
            "workers": [{"id": "w1", "addr": "10.0.0.2:50052", "state": "up", "slots": 4,
                "circuit": {"state": "open", "reason": "output_mismatch", "failure_rate": 0.0},
                "last_failures": [{"kind": "output_mismatch", "message": "object differs", "secs_ago": 3}]}],
            "worker_failures": {"timeout": 2},
            "client_cache": {"hit_local": 1, "miss": 3},
        });
        let c = stats_checks(&s);
        let w = c.iter().find(|c| c.name == "worker w1").unwrap();
        assert_eq!(w.verdict, Verdict::Fail);
        assert!(
            w.detail.contains("circuit open (output_mismatch"),
            "{}",
            w.detail
        );
        assert!(w.detail.contains("object differs"), "{}", w.detail);
        assert!(w.detail.contains("open_timeout"), "{}", w.detail);
        let t = c.iter().find(|c| c.name == "timeouts").unwrap();
        assert_eq!(t.verdict, Verdict::Warn);
        assert!(t.detail.contains("worker.task_timeout"));
        let cache = c.iter().find(|c| c.name == "clients' cache").unwrap();
        assert!(cache.detail.contains("hit rate 25.0%"), "{}", cache.detail);
    }
}
