//! Two `hg-flow serve` processes on one PostgreSQL schema and one NATS JetStream (a private
//! `nats-server`) share a run's steps; one is killed with SIGKILL while both run steps. The other
//! finishes the run: steps that had completed, and steps the survivor was running, never run
//! again; only the steps the killed process held run once more (after their lease lapses), on the
//! survivor; every step's result is accepted exactly once.
#![allow(clippy::unwrap_used)]

#[path = "../../crates/flow/api/tests/support/mod.rs"]
mod flow_support;

use flow_support::*;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const HG_FLOW: &str = env!("CARGO_BIN_EXE_hg-flow");

fn serve(dir: &Path, name: &str, db: &str, nats: &str, stream: &str) -> (Proc, SocketAddr) {
    let port = free_port();
    let config = dir.join(format!("{name}.yaml"));
    std::fs::write(
        &config,
        "engine: { lease: 2s, poll_interval: 100ms, max_parallel: 3 }\nlogging: { level: info }\n",
    )
    .unwrap();
    let mut c = Command::new(HG_FLOW);
    c.arg("serve")
        .env("HG_CONFIG", &config)
        .env("DATABASE_URL", db)
        .env("NATS_URL", nats)
        .env("HG_EVENTS_STREAM", stream)
        .env("HG_SERVER_ADDR", format!("127.0.0.1:{port}"));
    let p = Proc::spawn(c, dir.join(format!("{name}.log")));
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for(Duration::from_secs(60), "hg-flow serve to listen", || {
        std::net::TcpStream::connect(addr).ok().map(|_| ())
    });
    (p, addr)
}

/// `(event, node, pid of the orchestrator that ran it)` lines of the agents' log.
fn log_lines(log: &Path) -> Vec<(String, String, u32)> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((
                it.next()?.to_owned(),
                it.next()?.to_owned(),
                it.next()?.parse().ok()?,
            ))
        })
        .collect()
}

/// Nodes started (and not yet done) by the orchestrator `pid`.
fn in_flight(lines: &[(String, String, u32)], pid: u32) -> BTreeSet<String> {
    let mut open = BTreeSet::new();
    for (ev, node, p) in lines {
        if *p == pid {
            match ev.as_str() {
                "start" => {
                    open.insert(node.clone());
                }
                "done" => {
                    open.remove(node);
                }
                _ => {}
            }
        }
    }
    open
}

#[test]
fn two_orchestrators_one_killed_mid_run_each_step_accepted_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = PrivateNats::start(&dir.path().join("js"));
    let pg = pg_url();
    let schema = format!("hgtest_flow_fleet_{}", std::process::id());
    drop_pg_schema(&pg, &schema);
    let db = format!("{pg}?schema={schema}");
    let stream = "HGTEST_FLOW_FLEET";
    let (a, addr_a) = serve(dir.path(), "a", &db, &nats.url(), stream);
    let (b, addr_b) = serve(dir.path(), "b", &db, &nats.url(), stream);
    let (pid_a, pid_b) = (a.child.id(), b.child.id());
    let log = dir.path().join("agents.log");
    // $PPID: the orchestrator process that started the agent.
    for (name, sleep) in [("mark", 0), ("slow", 3)] {
        let script = format!(
            "echo \"start $AGENT_NODE_ID $PPID\" >> '{log}'; sleep {sleep}; echo \"done $AGENT_NODE_ID $PPID\" >> '{log}'; echo '{{}}'",
            log = log.display()
        );
        let r = post(
            addr_a,
            "/api/agents",
            &json!({"name": name, "kind": "native", "command": ["/bin/sh", "-c", script],
                "capabilities": [{"name": "run"}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
    }
    let mut nodes = vec![json!({"id": "root", "agent": "mark", "action": "run"})];
    let fan: Vec<String> = (0..6).map(|i| format!("n{i}")).collect();
    for n in &fan {
        nodes.push(json!({"id": n, "agent": "slow", "action": "run", "dependsOn": ["root"]}));
    }
    nodes.push(json!({"id": "join", "agent": "mark", "action": "run", "dependsOn": fan}));
    let r = post(
        addr_a,
        "/api/workflows",
        &json!({"name": "fleet", "nodes": nodes}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let wf = r.json()["id"].as_str().unwrap().to_owned();
    let r = post(addr_a, &format!("/api/workflows/{wf}/trigger"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let run = r.json()["runId"].as_str().unwrap().to_owned();

    // Both orchestrators are running steps (3 slots each for 6 slow steps): kill A now.
    let held = wait_for(
        Duration::from_secs(60),
        "both orchestrators to run steps",
        || {
            let lines = log_lines(&log);
            let (fa, fb) = (in_flight(&lines, pid_a), in_flight(&lines, pid_b));
            (!fa.is_empty() && !fb.is_empty()).then_some(fa)
        },
    );
    drop(a); // SIGKILL
    let before = log_lines(&log);
    // A may have started more before it died: everything it had open is what it held.
    let held: BTreeSet<String> = in_flight(&before, pid_a).union(&held).cloned().collect();
    let ran_before: BTreeSet<String> = before.iter().map(|(_, n, _)| n.clone()).collect();

    let done = wait_for(Duration::from_secs(90), "the run to finish on B", || {
        let v = get(addr_b, &format!("/api/workflows/{wf}/runs/{run}")).json();
        (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
    });
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}\n{}", b.log_text());
    let lines = log_lines(&log);
    let mut starts: BTreeMap<&str, Vec<u32>> = BTreeMap::new();
    for (ev, node, pid) in &lines {
        if ev == "start" {
            starts.entry(node.as_str()).or_default().push(*pid);
        }
    }
    assert_eq!(starts.len(), 8, "every step ran: {starts:?}");
    for (node, pids) in &starts {
        if held.contains(*node) {
            assert_eq!(
                pids,
                &vec![pid_a, pid_b],
                "{node} was cut off on A and ran once more, on B: {starts:?}"
            );
        } else {
            assert_eq!(pids.len(), 1, "{node} ran exactly once: {starts:?}");
            if !ran_before.contains(*node) {
                assert_eq!(pids[0], pid_b, "{node} started after the kill, on B");
            }
        }
    }
    // Each step's result was accepted once: one agent run per node, all succeeded.
    let ars = get(
        addr_b,
        &format!("/api/workflows/{wf}/runs/{run}/agent-runs"),
    )
    .json();
    let ars = ars.as_array().unwrap();
    assert_eq!(ars.len(), 8, "{ars:#?}");
    let names: BTreeSet<&str> = ars.iter().map(|r| r["nodeId"].as_str().unwrap()).collect();
    assert_eq!(names.len(), 8, "one accepted result per step: {ars:#?}");
    assert!(ars.iter().all(|r| r["status"] == "SUCCEEDED"), "{ars:#?}");
    for r in ars {
        // A step A held is at its second attempt; one that ran before the kill and was not
        // held at its first. (A step A had claimed but not yet started is at its second too.)
        let n = r["nodeId"].as_str().unwrap();
        if held.contains(n) {
            assert_eq!(r["attempt"], 2, "{n}: {r:#}");
        } else if ran_before.contains(n) {
            assert_eq!(r["attempt"], 1, "{n}: {r:#}");
        }
    }
    drop(b);
    drop_pg_schema(&pg, &schema);
}
