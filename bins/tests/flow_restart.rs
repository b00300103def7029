//! `hg-flow serve` killed with SIGKILL and started again on the same SQLite file: a run killed in
//! the middle of a step, and a run waiting for an approval, both finish after the restart; steps
//! that had completed never run again, the step that was cut off runs once more, and each step's
//! result is accepted once.
#![allow(clippy::unwrap_used)]

#[path = "../../crates/flow/api/tests/support/mod.rs"]
mod flow_support;

use flow_support::*;
use serde_json::json;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HG_FLOW: &str = env!("CARGO_BIN_EXE_hg-flow");

/// `hg-flow serve` on `db` with a short lease, so a step held by the killed process is taken
/// over soon after the restart.
fn serve(dir: &Path, db: &str) -> (Proc, SocketAddr) {
    let port = free_port();
    let config = dir.join("hg-flow.yaml");
    std::fs::write(
        &config,
        "engine: { lease: 2s, poll_interval: 100ms }\nlogging: { level: info }\n",
    )
    .unwrap();
    let mut c = Command::new(HG_FLOW);
    c.arg("serve")
        .env("HG_CONFIG", &config)
        .env("DATABASE_URL", db)
        .env("HG_SERVER_ADDR", format!("127.0.0.1:{port}"));
    let p = Proc::spawn(c, dir.join(format!("serve-{port}.log")));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(60), "hg-flow serve to listen", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    (p, addr)
}

/// A native agent that appends `start <node>` and `done <node>` to `log` around `sleep` seconds.
fn agent(addr: SocketAddr, name: &str, log: &Path, sleep: u32) {
    let script = format!(
        "echo \"start $AGENT_NODE_ID\" >> '{log}'; sleep {sleep}; echo \"done $AGENT_NODE_ID\" >> '{log}'; echo '{{}}'",
        log = log.display()
    );
    let r = post(
        addr,
        "/api/agents",
        &json!({"name": name, "kind": "native", "command": ["/bin/sh", "-c", script],
            "capabilities": [{"name": "run"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
}

/// How often each node started, from the agents' log.
fn starts(log: &Path) -> BTreeMap<String, usize> {
    let mut n = BTreeMap::new();
    for line in std::fs::read_to_string(log).unwrap_or_default().lines() {
        if let Some(node) = line.strip_prefix("start ") {
            *n.entry(node.to_owned()).or_default() += 1;
        }
    }
    n
}

fn trigger(addr: SocketAddr, wf: &serde_json::Value) -> (String, String) {
    let r = post(addr, "/api/workflows", wf);
    assert_eq!(r.status, 201, "{}", r.body);
    let wf = r.json()["id"].as_str().unwrap().to_owned();
    let r = post(addr, &format!("/api/workflows/{wf}/trigger"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    (wf, r.json()["runId"].as_str().unwrap().to_owned())
}

fn run_doc(addr: SocketAddr, wf: &str, run: &str) -> serde_json::Value {
    get(addr, &format!("/api/workflows/{wf}/runs/{run}")).json()
}

fn node<'a>(run: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["nodeId"] == id || n["id"] == id)
        .unwrap_or_else(|| panic!("no node {id} in {run}"))
}

fn wait_status(addr: SocketAddr, wf: &str, run: &str, status: &str) -> serde_json::Value {
    wait_for(
        Duration::from_secs(60),
        &format!("run {run} {status}"),
        || {
            let v = run_doc(addr, wf, run);
            (v["status"] == status).then_some(v)
        },
    )
}

#[test]
fn sigkill_mid_step_then_restart_finishes_the_run() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flow.db").display());
    let log = dir.path().join("agents.log");
    let (p, addr) = serve(dir.path(), &db);
    agent(addr, "mark", &log, 0);
    agent(addr, "slow", &log, 3);
    // a → {b (slow), d}; b → c.
    let (wf, run) = trigger(
        addr,
        &json!({"name": "killed", "nodes": [
            {"id": "a", "agent": "mark", "action": "run"},
            {"id": "b", "agent": "slow", "action": "run", "dependsOn": ["a"]},
            {"id": "d", "agent": "mark", "action": "run", "dependsOn": ["a"]},
            {"id": "c", "agent": "mark", "action": "run", "dependsOn": ["b"]}]}),
    );
    wait_for(
        Duration::from_secs(30),
        "b to be running and d done",
        || {
            let v = run_doc(addr, &wf, &run);
            (node(&v, "b")["status"] == "RUNNING" && node(&v, "d")["status"] == "SUCCEEDED")
                .then_some(())
        },
    );
    drop(p); // SIGKILL (Child::kill), mid-step: b's attempt is cut off
    let before = starts(&log);
    assert_eq!(before.get("c"), None, "c cannot have started: {before:?}");

    let (p, addr) = serve(dir.path(), &db);
    let done = wait_status(addr, &wf, &run, "SUCCEEDED");
    let after = starts(&log);
    for n in ["a", "d", "c"] {
        assert_eq!(
            after.get(n),
            Some(&1),
            "{n} ran exactly once: {after:?}\n{}",
            p.log_text()
        );
    }
    // b ran again, once: its first attempt never completed.
    assert_eq!(after.get("b"), Some(&2), "{after:?}");
    for n in ["a", "b", "c", "d"] {
        assert_eq!(node(&done, n)["status"], "SUCCEEDED", "{done}");
    }
    let agent_runs = get(addr, &format!("/api/workflows/{wf}/runs/{run}/agent-runs")).json();
    let b_runs: Vec<_> = agent_runs
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["nodeId"] == "b")
        .collect();
    assert_eq!(b_runs.len(), 1, "one accepted result for b: {agent_runs}");
}

#[test]
fn sigkill_while_waiting_for_approval_then_restart_still_waits_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flow.db").display());
    let log = dir.path().join("agents.log");
    let (p, addr) = serve(dir.path(), &db);
    agent(addr, "mark", &log, 0);
    let (wf, run) = trigger(
        addr,
        &json!({"name": "gated", "nodes": [
            {"id": "a", "agent": "mark", "action": "run"},
            {"id": "gate", "agent": "mark", "action": "run", "dependsOn": ["a"], "approvalRequired": true},
            {"id": "c", "agent": "mark", "action": "run", "dependsOn": ["gate"]}]}),
    );
    wait_status(addr, &wf, &run, "WAITING_APPROVAL");
    drop(p); // SIGKILL while the run waits

    let (p, addr) = serve(dir.path(), &db);
    // Still waiting after the restart (past a lease and several reaper passes).
    std::thread::sleep(Duration::from_secs(3));
    let v = run_doc(addr, &wf, &run);
    assert_eq!(v["status"], "WAITING_APPROVAL", "{v}\n{}", p.log_text());
    let approvals = get(addr, "/api/approvals").json();
    let waiting = approvals
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["runId"] == run.as_str())
        .unwrap_or_else(|| panic!("the run's approval is listed: {approvals}"));
    assert!(waiting["decidedAt"].is_null(), "undecided: {waiting}");
    let id = waiting["id"].as_str().unwrap().to_owned();
    let r = post(
        addr,
        &format!("/api/approvals/{id}/decision"),
        &json!({"decision": "APPROVED", "by": "test", "notes": "after a restart"}),
    );
    assert!(r.status < 300, "{} {}", r.status, r.body);
    wait_status(addr, &wf, &run, "SUCCEEDED");
    let after = starts(&log);
    for n in ["a", "gate", "c"] {
        assert_eq!(after.get(n), Some(&1), "{n} ran exactly once: {after:?}");
    }
}
