//! Protocol-version refusal end to end, against the real `hg-coord`:
//! - over mDNS: a real `hg-worker` (its own announcements off) in a network namespace on a bridge,
//!   announced by Debian's avahi (a real mDNS responder in that namespace) with another protocol
//!   version in its TXT record: the coordinator logs the refusal, never lists the worker and
//!   gives it no work; announced again with this build's version, the same worker is registered
//!   and compiles, which shows that only the version kept it out;
//! - over gRPC: a worker registering with another protocol version is refused with the same log
//!   line, is not listed, and a compile sent to the coordinator never reaches it.
//!
//! Needs root, `ip`, python3, avahi-daemon and avahi-utils (`scripts/ci-deps/net.sh`).

mod lan_support;
mod peers_support;
mod support;

use hybridgrid_core::PROTOCOL_VERSION;
use hybridgrid_transport::pb;
use hybridgrid_transport::tls::Role;
use hybridgrid_transport::tls::certgen::Validity;
use lan_support::*;
use peers_support::*;
use std::io::Write;
use std::process::{Child, Stdio};
use std::sync::atomic::Ordering;
use std::time::Duration;
use support::*;

const WAIT: Duration = Duration::from_secs(60);

/// The TXT records a worker with id `id`, no toolchain and `slots` slots announces, in
/// avahi-publish's argument form, speaking protocol `version`.
fn txt(id: &str, version: u32, port: u16) -> String {
    let arch = hybridgrid_core::Capabilities::of_this_host(1).arch;
    format!(
        "id={id} arch={arch} os=linux cpus=1 slots=2 version={version} port={port} exec=native tc=0"
    )
}

/// The refusal line for `id`, if the coordinator logged it.
fn refusal<'a>(log: &'a str, id: &str, source: &str) -> Option<&'a str> {
    log.lines().find(|l| {
        l.contains("worker refused: incompatible protocol version")
            && l.contains(&format!("worker_id={id}"))
            && l.contains(&format!("source={source}"))
    })
}

/// Tasks the worker in namespace `i` (metrics on 127.0.0.1:9090 there) finished, by its own count.
fn worker_tasks(lan: &Lan, i: usize) -> u64 {
    let metrics = ns_get(lan, i, "http://127.0.0.1:9090/metrics").expect("worker metrics");
    metrics
        .lines()
        .filter(|l| l.starts_with("hybridgrid_worker_tasks_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// `hgbuild cc -c x.c` in namespace `i` against `coord` with the client's TLS material; checks
/// that it succeeded and wrote the object.
fn compile_in(lan: &Lan, i: usize, dir: &std::path::Path, coord: &str, tls: &[(String, String)]) {
    let src = dir.join("x.c");
    std::fs::write(&src, "int answer(int x) { return x * 42; }\n").expect("write x.c");
    let obj = dir.join("x.o");
    let _ = std::fs::remove_file(&obj);
    let mut cmd = lan.cmd(i, HGBUILD);
    cmd.env("HG_COORDINATOR", coord)
        .env("HOME", dir)
        .env("HG_CACHE_ENABLED", "false")
        .env_remove("HG_CONFIG")
        .env_remove("MAKEFLAGS")
        .envs(tls.iter().cloned())
        .args(["cc", "-O2", "-c"])
        .arg(&src)
        .arg("-o")
        .arg(&obj);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "hgbuild cc failed: {err}");
    assert!(obj.exists(), "no object written: {err}");
}

/// avahi-daemon in namespace `i` publishing worker `id` at `port` with protocol `first`; a line
/// on its stdin withdraws that announcement and publishes `then` instead.
fn publish(lan: &Lan, i: usize, dir: &std::path::Path, id: &str, first: u32, then: u32) -> Child {
    let script = format!(
        "avahi-publish -s {id} _hybridgrid._tcp 50052 {} & p=$!; read line; kill -INT $p; wait $p; \
         exec avahi-publish -s {id} _hybridgrid._tcp 50052 {}",
        txt(id, first, 50052),
        txt(id, then, 50052)
    );
    avahi_sh(lan, i, &dir.join("avahi.conf"), true, &script)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("avahi.err")).expect("avahi stderr"))
        .spawn()
        .expect("start avahi (apt-get install avahi-daemon avahi-utils: scripts/ci-deps/net.sh)")
}

#[test]
fn a_worker_announcing_another_protocol_version_is_refused_and_gets_no_work() {
    let lan = Lan::new(&["c", "old"]);
    let dir = TempDir::new("mdns-version");
    let farm = Farm::new();
    let other = PROTOCOL_VERSION + 1;

    let coord_tls = farm.issue_with(
        Role::Coordinator,
        "coord",
        &[lan.addr(0)],
        Validity::days(1),
    );
    let coord_grpc = format!("{}:9000", lan.addr(0));
    let mut cmd = lan.cmd(0, COORD);
    cmd.args(["serve", "--grpc-addr", &coord_grpc])
        .args(["--http-addr", "127.0.0.1:8080"])
        .env("HG_COORDINATOR_HEARTBEAT_INTERVAL", "500ms")
        .env("HG_COORDINATOR_HEARTBEAT_TIMEOUT", "2s")
        .envs(tls_env(&coord_tls));
    let coord = Daemon::spawn_for_test(cmd, dir.path().join("coord.log"), "dashboard on");

    // A real worker that does not announce itself: avahi announces it instead.
    let w_tls = farm.issue_with(Role::Worker, "old", &[lan.addr(1)], Validity::days(1));
    let work = dir.path().join("work-old");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cmd = lan.cmd(1, WORKER);
    cmd.args(["serve", "--id", "old"])
        .args(["--grpc-addr", &format!("{}:50052", lan.addr(1))])
        .args(["--http-addr", "127.0.0.1:9090"])
        .env("HG_DISCOVERY_MDNS", "false")
        .env("HG_WORKER_WORK_DIR", &work)
        .envs(tls_env(&w_tls));
    let worker = Daemon::spawn_for_test(cmd, dir.path().join("old.log"), "serving gRPC on");
    let mut avahi = publish(&lan, 1, dir.path(), "old", other, PROTOCOL_VERSION);

    let http = "127.0.0.1:8080";
    assert!(
        wait_until(WAIT, || refusal(&coord.log_text(), "old", "mdns").is_some()),
        "no refusal logged for the worker of protocol {other}; coordinator log:\n{}\navahi:\n{}",
        coord.log_text(),
        std::fs::read_to_string(dir.path().join("avahi.err")).unwrap_or_default()
    );
    let log = coord.log_text();
    let line = refusal(&log, "old", "mdns").expect("refusal");
    assert!(
        line.contains(&format!("it speaks {other}"))
            && line.contains(&format!("this coordinator speaks {PROTOCOL_VERSION}"))
            && line.contains("run the same hybridgrid release on both"),
        "the refusal does not say what is wrong and what to do: {line}"
    );
    assert!(
        state_of(&lan, http, "old").is_none(),
        "refused worker listed: {:?}",
        workers(&lan, http)
    );

    // A compile sent to the farm now stays local: the refused worker gets nothing.
    let client_tls = tls_env(&farm.issue(Role::Client, "ci"));
    compile_in(&lan, 0, dir.path(), &coord_grpc, &client_tls);
    assert_eq!(worker_tasks(&lan, 1), 0, "the refused worker ran a task");
    assert!(
        state_of(&lan, http, "old").is_none(),
        "{:?}",
        workers(&lan, http)
    );
    assert!(
        !coord
            .log_text()
            .lines()
            .any(|l| l.contains("worker registered") && l.contains("worker_id=old")),
        "refused worker registered:\n{log}"
    );

    // The same worker, announced with this build's version, is registered and gets the work:
    // nothing but the version kept it out.
    writeln!(avahi.stdin.as_mut().expect("avahi stdin"), "switch").expect("switch announcement");
    assert!(
        wait_until(WAIT, || state_of(&lan, http, "old")
            .is_some_and(|(s, w)| s == "up" && w["source"] == "mdns")),
        "worker not registered once it announced protocol {PROTOCOL_VERSION}: {:?}\ncoordinator log:\n{}",
        workers(&lan, http),
        coord.log_text()
    );
    compile_in(&lan, 0, dir.path(), &coord_grpc, &client_tls);
    assert_eq!(
        worker_tasks(&lan, 1),
        1,
        "the accepted worker did not run the compile; worker log:\n{}",
        worker.log_text()
    );
    lan.kill_all(1);
    let _ = avahi.wait();
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

#[test]
fn a_worker_registering_with_another_protocol_version_is_refused_and_gets_no_work() {
    let dir = TempDir::new("register-version");
    let coord = Daemon::coordinator(dir.path(), &[]);
    let other = PROTOCOL_VERSION + 1;
    block_on(async {
        // A worker that would do any work it is given, counting the calls.
        let old = fake_worker("old", Behaviour::Good, None).await;
        let mut c = coordinator_client(&coord.grpc, &Default::default(), None)
            .await
            .expect("dial coordinator");

        // The request's version, then the version inside the worker's description.
        let mut info = worker_info("old", &old.addr, 2, vec![gcc()]);
        let mut req = register(info.clone());
        req.protocol_version = other;
        let err = c.register(req).await.expect_err("registered at protocol 2");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
        assert!(
            err.message().contains(&format!(
                "worker speaks version {other}, this side speaks version {PROTOCOL_VERSION}"
            )),
            "{err:?}"
        );
        info.protocol_version = other;
        let err = c
            .register(register(info))
            .await
            .expect_err("registered with a worker of protocol 2");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

        // A client of another version is refused at Hello as well.
        let err = c
            .hello(pb::InfoRequest {
                protocol_version: other,
            })
            .await
            .expect_err("hello at protocol 2");
        assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");

        // Work sent to the coordinator never reaches the refused worker.
        let resp = c
            .compile(compile_request("t-version", gcc()))
            .await
            .expect("compile answered")
            .into_inner();
        assert!(fallback_reason(&resp).is_some(), "not a fallback: {resp:?}");
        assert_eq!(
            old.calls.load(Ordering::Relaxed),
            0,
            "refused worker got work"
        );
    });
    let log = coord.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| refusal(l, "old", "registration").is_some())
        .collect();
    assert_eq!(
        lines.len(),
        2,
        "one refusal line per refused Register:\n{log}"
    );
    assert!(
        lines[0].contains(&format!("it speaks {other}"))
            && lines[0].contains("run the same hybridgrid release on both"),
        "{}",
        lines[0]
    );
    let s = stats(&coord.http);
    let listed = s["workers"].as_array().is_some_and(|w| !w.is_empty());
    assert!(!listed, "refused worker listed: {s}");
    assert!(!log.contains("worker registered"), "{log}");
}
