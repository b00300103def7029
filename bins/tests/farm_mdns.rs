//! mDNS on by default, across network namespaces: a coordinator and two workers, each in its own
//! namespace, joined by a bridge that lives in a fifth namespace (nothing touches the host's
//! interfaces). The workers announce themselves, the coordinator finds them over mDNS, confirms
//! each over mutual TLS, and drops the one that is killed; Debian's `avahi-browse` (a real mDNS
//! client, with `avahi-daemon` in its own namespace) sees the announcement and its TXT records.
//! Needs root, `ip`, python3, avahi-daemon and avahi-utils (`scripts/ci-deps/net.sh`).

mod lan_support;
mod peers_support;
mod support;

use hybridgrid_transport::tls::Role;
use hybridgrid_transport::tls::certgen::Validity;
use lan_support::*;
use peers_support::Farm;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

const WAIT: Duration = Duration::from_secs(60);

#[test]
fn workers_in_other_namespaces_are_found_over_mdns_and_dropped_when_killed() {
    let lan = Lan::new(&["c", "w1", "w2", "rg", "av"]);
    let dir = TempDir::new("mdns");
    let farm = Farm::new();
    let other = Farm::named("another farm");

    // Coordinator in namespace 0, listening on its LAN address (TLS on, mDNS on by default).
    let coord_tls = farm.issue_with(
        Role::Coordinator,
        "coord",
        &[lan.addr(0)],
        Validity::days(1),
    );
    let mut cmd = lan.cmd(0, COORD);
    cmd.args(["serve", "--grpc-addr", &format!("{}:9000", lan.addr(0))])
        .args(["--http-addr", "127.0.0.1:8080"])
        .env("HG_COORDINATOR_HEARTBEAT_INTERVAL", "500ms")
        .env("HG_COORDINATOR_HEARTBEAT_TIMEOUT", "2s")
        .envs(tls_env(&coord_tls));
    let coord = Daemon::spawn_for_test(cmd, dir.path().join("coord.log"), "dashboard on");

    // Two workers that know nothing of the coordinator, and one whose certificate is from
    // another CA (it announces itself like the others but must never get work).
    let spawn_worker = |i: usize, id: &str, slots: &str, tls| {
        let mut cmd = lan.cmd(i, WORKER);
        let work = dir.path().join(format!("work-{id}"));
        std::fs::create_dir_all(&work).expect("work dir");
        cmd.args(["serve", "--id", id])
            .args(["--grpc-addr", &format!("{}:50052", lan.addr(i))])
            .args(["--http-addr", "127.0.0.1:9090"])
            .env("HG_WORKER_MAX_CONCURRENT_TASKS", slots)
            .env("HG_WORKER_WORK_DIR", &work)
            .envs(tls_env(tls));
        Daemon::spawn_for_test(cmd, dir.path().join(format!("{id}.log")), "serving gRPC on")
    };
    let w1_tls = farm.issue_with(Role::Worker, "w1", &[lan.addr(1)], Validity::days(1));
    let w2_tls = farm.issue_with(Role::Worker, "w2", &[lan.addr(2)], Validity::days(1));
    let rogue_tls = other.issue_with(Role::Worker, "rogue", &[lan.addr(3)], Validity::days(1));
    let _w1 = spawn_worker(1, "w1", "3", &w1_tls);
    let mut w2 = spawn_worker(2, "w2", "2", &w2_tls);
    let _rogue = spawn_worker(3, "rogue", "8", &rogue_tls);

    // Both are found, with the capabilities they have.
    let http = "127.0.0.1:8080";
    assert!(
        wait_until(WAIT, || ["w1", "w2"]
            .iter()
            .all(|id| state_of(&lan, http, id).is_some_and(|(s, _)| s == "up"))),
        "workers not found over mDNS; stats: {:?}\ncoordinator log:\n{}",
        workers(&lan, http),
        coord.log_text()
    );
    let arch = hybridgrid_core::Capabilities::of_this_host(1).arch;
    for (id, slots, addr) in [("w1", 3, lan.addr(1)), ("w2", 2, lan.addr(2))] {
        let (_, w) = state_of(&lan, http, id).expect("known");
        assert_eq!(w["source"], "mdns", "{w}");
        assert_eq!(w["slots"], slots, "{w}");
        assert_eq!(w["arch"], arch.as_str(), "{w}");
        assert_eq!(w["addr"], format!("{addr}:50052"), "{w}");
        let tcs = w["toolchains"].as_array().expect("toolchains");
        assert!(!tcs.is_empty(), "{w}");
    }
    let log = coord.log_text();
    for id in ["w1", "w2"] {
        assert!(
            log.lines().any(|l| l.contains("worker registered")
                && l.contains(&format!("worker_id={id}"))
                && l.contains("source=mdns")),
            "no `worker registered worker_id={id} ... source=mdns` line:\n{log}"
        );
    }
    // The rogue worker announced itself too, but its certificate is not from the farm CA.
    assert!(
        wait_until(WAIT, || coord.log_text().lines().any(|l| l
            .contains("announced worker not confirmed")
            && l.contains("worker_id=rogue"))),
        "the rogue worker's refusal is not logged:\n{}",
        coord.log_text()
    );
    assert!(
        state_of(&lan, http, "rogue").is_none(),
        "{:?}",
        workers(&lan, http)
    );

    // A real mDNS client sees the announcement with its TXT records.
    let avahi = avahi_browse(&lan, 4, "w1");
    assert!(avahi.contains("\"slots=3\""), "{avahi}");
    assert!(
        avahi.contains(&format!(
            "\"version={}\"",
            hybridgrid_core::PROTOCOL_VERSION
        )),
        "{avahi}"
    );
    assert!(avahi.contains("\"port=50052\""), "{avahi}");
    assert!(avahi.contains("\"tls="), "{avahi}");
    assert!(avahi.contains(lan.addr(1)), "{avahi}");

    // Killed (no goodbye): noticed by the probes within the heartbeat timeout.
    w2.child.kill().expect("SIGKILL w2");
    let killed = Instant::now();
    assert!(
        wait_until(WAIT, || state_of(&lan, http, "w2")
            .is_some_and(|(s, _)| s == "down")),
        "killed worker still up; coordinator log:\n{}",
        coord.log_text()
    );
    eprintln!(
        "killed worker marked down after {:?} (heartbeat timeout 2s)",
        killed.elapsed()
    );
    assert_eq!(
        state_of(&lan, http, "w1").map(|(s, _)| s).as_deref(),
        Some("up")
    );
}

/// Runs avahi-daemon and `avahi-browse -rp` in namespace `i` (private /run, its own system bus)
/// until worker `id` is resolved; returns avahi-browse's line for it.
fn avahi_browse(lan: &Lan, i: usize, id: &str) -> String {
    let conf = std::env::temp_dir().join(format!("hg-avahi-{}.conf", std::process::id()));
    let err_path = std::env::temp_dir().join(format!("hg-avahi-{}.err", std::process::id()));
    let err_file = std::fs::File::create(&err_path).expect("avahi stderr file");
    let mut child = avahi_sh(
        lan,
        i,
        &conf,
        false,
        "exec timeout 60 avahi-browse -r -p _hybridgrid._tcp",
    )
    .stdout(Stdio::piped())
    .stderr(err_file)
    .spawn()
    .expect("start avahi (apt-get install avahi-daemon avahi-utils: scripts/ci-deps/net.sh)");
    // Read in a thread with a deadline: avahi-browse and the daemons it talks to hold the pipe,
    // so the end of the output is never a reliable signal.
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut found = None;
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        let Ok(line) = rx.recv_timeout(left) else {
            break;
        };
        // `=;iface;IPv4;name;type;domain;host;address;port;"txt" "txt" ...`
        if line.starts_with("=;") && line.contains(&format!(";{id};")) {
            found = Some(line);
            break;
        }
    }
    // avahi-browse, avahi-daemon and dbus-daemon all run in namespace `i`: stop every one.
    lan.kill_all(i);
    let _ = child.kill();
    let _ = child.wait();
    let err = std::fs::read_to_string(&err_path).unwrap_or_default();
    let _ = std::fs::remove_file(&conf);
    let _ = std::fs::remove_file(&err_path);
    found.unwrap_or_else(|| panic!("avahi-browse never resolved {id} within 60 s: {err}"))
}

/// Binds udp/5353 exclusively (no `SO_REUSEADDR`, as a program that wants the port for itself
/// does), then becomes the daemon given as arguments, the socket still open: no race.
const HOLD_5353: &str = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5353))
os.set_inheritable(s.fileno(), True)
os.execv(sys.argv[1], sys.argv[1:])
"#;

#[test]
fn udp_5353_held_by_another_program_is_logged_once_with_the_fix_and_the_daemons_serve_on() {
    let lan = Lan::new(&["c", "w"]);
    let dir = TempDir::new("mdns5353");
    let farm = Farm::new();
    let coord_tls = farm.issue_with(
        Role::Coordinator,
        "coord",
        &[lan.addr(0)],
        Validity::days(1),
    );
    let mut cmd = lan.cmd(0, "python3");
    cmd.args(["-c", HOLD_5353, COORD, "serve"])
        .args(["--grpc-addr", &format!("{}:9000", lan.addr(0))])
        .args(["--http-addr", "127.0.0.1:8080"])
        .envs(tls_env(&coord_tls));
    let coord = Daemon::spawn_for_test(cmd, dir.path().join("coord.log"), "dashboard on");

    let w_tls = farm.issue_with(Role::Worker, "w", &[lan.addr(1)], Validity::days(1));
    let work = dir.path().join("work-w");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cmd = lan.cmd(1, "python3");
    cmd.args(["-c", HOLD_5353, WORKER, "serve", "--id", "w"])
        .args(["--grpc-addr", &format!("{}:50052", lan.addr(1))])
        .args(["--http-addr", "127.0.0.1:9090"])
        .env("HG_WORKER_WORK_DIR", &work)
        .envs(tls_env(&w_tls));
    let worker = Daemon::spawn_for_test(cmd, dir.path().join("w.log"), "serving gRPC on");

    for (who, log) in [
        ("coordinator", coord.log_text()),
        ("worker", worker.log_text()),
    ] {
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("cannot use udp/5353"))
            .collect();
        assert_eq!(lines.len(), 1, "{who}: not logged exactly once:\n{log}");
        assert!(
            lines[0].contains("5353/udp") && lines[0].contains("discovery.mdns: false"),
            "{who}: the line gives no fix: {}",
            lines[0]
        );
    }
    // Both serve on without mDNS.
    let health = ns_get(&lan, 0, "http://127.0.0.1:8080/health");
    assert!(health.is_some(), "coordinator not serving");
    let health = ns_get(&lan, 1, "http://127.0.0.1:9090/health");
    assert!(health.is_some(), "worker not serving");
}
