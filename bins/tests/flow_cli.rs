//! `hg-flow` as a real process: `demo` (the README quick start), `serve` on SQLite + the
//! in-process bus and on PostgreSQL + NATS (migrations applied at start), and `doctor`.
#![allow(clippy::unwrap_used)]

#[path = "../../crates/flow/api/tests/support/mod.rs"]
mod flow_support;

use flow_support::*;
use serde_json::json;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

const HG_FLOW: &str = env!("CARGO_BIN_EXE_hg-flow");

#[test]
fn demo_runs_scan_then_notify() {
    let out = Command::new(HG_FLOW)
        .args(["demo", "--exit", "--addr", "127.0.0.1:0"])
        .env("HG_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "demo failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("SUCCEEDED"), "{stdout}");
    assert!(stdout.contains("findings: 3 in 4 files"), "{stdout}");
    assert!(stdout.contains("\"delivered\":true"), "{stdout}");
    assert!(stdout.contains("UI: http://127.0.0.1:"), "{stdout}");
    assert!(
        !stdout.contains("IOSFODNN7EXAMPLE"),
        "the demo must not print the secret: {stdout}"
    );
}

fn serve(dir: &std::path::Path, env: &[(&str, String)]) -> (Proc, SocketAddr) {
    let port = free_port();
    let mut c = Command::new(HG_FLOW);
    c.arg("serve")
        .env("HG_SERVER_ADDR", format!("127.0.0.1:{port}"));
    for (k, v) in env {
        c.env(k, v);
    }
    let p = Proc::spawn(c, dir.join(format!("serve-{port}.log")));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(60), "hg-flow serve to listen", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    (p, addr)
}

fn exercise(addr: SocketAddr) {
    assert_eq!(get(addr, "/health").json()["status"], "ok");
    assert_eq!(get(addr, "/health/db").json()["status"], "connected");
    assert_eq!(get(addr, "/health/nats").json()["status"], "connected");
    assert_eq!(
        post(
            addr,
            "/api/agents",
            &json!({"name": "sh", "kind": "native",
        "command": ["/bin/sh", "-c", "echo '{\"ok\": 1}'"], "capabilities": [{"name": "run"}]})
        )
        .status,
        201
    );
    let r = post(
        addr,
        "/api/workflows",
        &json!({"name": "one", "nodes": [{"id": "a", "agent": "sh", "action": "run"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let wf = r.json()["id"].as_str().unwrap().to_owned();
    let run = post(addr, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), "the run to succeed", || {
        (get(addr, &format!("/api/workflows/{wf}/runs/{run}")).json()["status"] == "SUCCEEDED")
            .then_some(())
    });
}

#[test]
fn serve_on_sqlite_then_doctor() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flow.db").display());
    let (p, addr) = serve(dir.path(), &[("DATABASE_URL", db.clone())]);
    exercise(addr);
    assert!(get(addr, "/").body.contains("hybridgrid flow"));
    drop(p);
    let out = Command::new(HG_FLOW)
        .arg("doctor")
        .env("DATABASE_URL", &db)
        .env("HG_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("[ ok ] database"), "{text}");
    assert!(text.contains("[ ok ] stuck runs"), "{text}");
    assert!(text.contains("[ ok ] agent sh"), "{text}");

    // A broken setup is named: an unreachable NATS and an agent whose command is missing.
    let (p, addr) = serve(dir.path(), &[("DATABASE_URL", db.clone())]);
    assert_eq!(
        post(
            addr,
            "/api/agents",
            &json!({"name": "ghost", "kind": "native",
        "command": ["/nonexistent/agent"], "capabilities": [{"name": "run"}]})
        )
        .status,
        201
    );
    // A run killed mid-step with a 1 s deadline: after SIGKILL nothing reaps it, so it is stuck.
    let slow = json!({"name": "slow", "kind": "native",
        "command": ["/bin/sh", "-c", "sleep 30"], "capabilities": [{"name": "run"}]});
    assert_eq!(post(addr, "/api/agents", &slow).status, 201);
    let r = post(
        addr,
        "/api/workflows",
        &json!({"name": "slow", "timeout": "1s",
        "nodes": [{"id": "a", "agent": "slow", "action": "run", "timeout": "1m"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let wf = r.json()["id"].as_str().unwrap().to_owned();
    let run = post(addr, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
        .as_str()
        .unwrap()
        .to_owned();
    wait_for(Duration::from_secs(30), "the slow step to run", || {
        let v = get(addr, &format!("/api/workflows/{wf}/runs/{run}")).json();
        (v["nodes"][0]["status"] == "RUNNING").then_some(())
    });
    drop(p);
    std::thread::sleep(Duration::from_millis(1500));
    let out = Command::new(HG_FLOW)
        .arg("doctor")
        .env("DATABASE_URL", &db)
        .env("NATS_URL", format!("nats://127.0.0.1:{}", free_port()))
        .env("HG_LOG_LEVEL", "warn")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("[FAIL] nats"), "{text}");
    assert!(
        text.contains("[FAIL] agent ghost") && text.contains("/nonexistent/agent"),
        "{text}"
    );
    assert!(
        text.contains("[FAIL] stuck runs") && text.contains(&run),
        "{text}"
    );
}

#[test]
fn serve_on_postgres_and_nats() {
    let dir = tempfile::tempdir().unwrap();
    let schema = format!("hgtest_flowapi_{}", std::process::id());
    let pg = std::env::var("HG_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let nats = std::env::var("HG_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into());
    let stream = format!("HGTEST_FLOWAPI_{}", std::process::id());
    let (p, addr) = serve(
        dir.path(),
        &[
            ("DATABASE_URL", format!("{pg}?schema={schema}")),
            ("NATS_URL", nats),
            ("HG_EVENTS_STREAM", stream.clone()),
            (
                "HG_EVENTS_SUBJECTS",
                format!("hgtest.flowapi.{}.>", std::process::id()),
            ),
        ],
    );
    let h = get(addr, "/health/db").json();
    assert_eq!(h["backend"], "postgres", "{h}\n{}", p.log_text());
    assert_eq!(get(addr, "/health/nats").json()["bus"], "nats");
    exercise(addr);
}
