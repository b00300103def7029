//! Two engines on one PostgreSQL share the work, each step once; NATS restarted mid-run loses no
//! transition (a private `nats-server -js` on a free port).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use futures::StreamExt;
use hybridgrid_core::EventBus;
use hybridgrid_flow_engine::{Executors, FlowChange, FlowEngine};
use hybridgrid_flow_model::{FlowEvent, FlowEventKind, FlowRunStatus, NodeStatus};
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

fn fan(name: &str, agent: &str, width: usize) -> serde_json::Value {
    let mut nodes = vec![json!({"id": "root", "agent": agent, "action": "run"})];
    for i in 0..width {
        nodes.push(
            json!({"id": format!("n{i}"), "agent": agent, "action": "run", "dependsOn": ["root"]}),
        );
    }
    let all: Vec<String> = (0..width).map(|i| format!("n{i}")).collect();
    nodes.push(json!({"id": "join", "agent": agent, "action": "run", "dependsOn": all}));
    json!({"name": name, "nodes": nodes})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_engines_on_one_postgres_run_each_step_once() {
    let env = env("postgres").await;
    let a = env.engine("engine-a").await;
    let b = env.engine("engine-b").await;
    env.agents(&a).await;
    let mut seen_a = a.watch();
    let mut seen_b = b.watch();
    let wf = workflow(&a, fan("shared", "count", 20)).await;
    let mut runs = Vec::new();
    for i in 0..4 {
        let eng = if i % 2 == 0 { &a } else { &b };
        runs.push(trigger(eng, &wf, json!({})).await);
    }
    for r in &runs {
        let done = finished(&b, r).await;
        assert_eq!(done.status, FlowRunStatus::Succeeded, "{done:#?}");
    }
    let lines = std::fs::read_to_string(env.count_file()).unwrap();
    let mut per: BTreeMap<&str, usize> = BTreeMap::new();
    for l in lines.lines() {
        *per.entry(l).or_default() += 1;
    }
    assert_eq!(per.len(), 4 * 22, "every (run, node) ran");
    assert!(per.values().all(|n| *n == 1), "a step ran twice: {per:?}");
    let count = |rx: &mut tokio::sync::broadcast::Receiver<FlowChange>| {
        let mut n = 0;
        while let Ok(c) = rx.try_recv() {
            n += usize::from(matches!(c, FlowChange::AgentRunFinished { .. }));
        }
        n
    };
    let (na, nb) = (count(&mut seen_a), count(&mut seen_b));
    assert_eq!(na + nb, 4 * 22);
    assert!(na > 0 && nb > 0, "both engines worked: a={na} b={nb}");

    // One engine stops mid-run: the other finishes everything, each step completed once.
    let wf2 = workflow(&a, fan("shared-slow", "slow", 6)).await;
    let run = trigger(&a, &wf2, json!({})).await;
    hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        let r = a.run(&run).await.unwrap();
        r.nodes
            .iter()
            .any(|n| n.id != "root" && n.status == NodeStatus::Running)
            .then_some(())
    })
    .await
    .unwrap();
    drop(a);
    let done = finished(&b, &run).await;
    assert_eq!(done.status, FlowRunStatus::Succeeded, "{done:#?}");
    assert!(done.nodes.iter().all(|n| n.status == NodeStatus::Succeeded));
    b.shutdown().await;
    env.cleanup().await;
}

struct Nats {
    child: std::process::Child,
    port: u16,
    dir: std::path::PathBuf,
}

impl Nats {
    fn start(port: u16, dir: &std::path::Path) -> Self {
        let child = std::process::Command::new("nats-server")
            .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nats-server is required (Debian package nats-server)");
        Self {
            child,
            port,
            dir: dir.to_owned(),
        }
    }
    async fn wait_up(&self) {
        hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
            tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .ok()
                .map(|_| ())
        })
        .await
        .expect("nats-server did not come up");
    }
    /// SIGKILL (`Child::kill`).
    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
    fn restart(&mut self) {
        self.kill();
        *self = Nats::start(self.port, &self.dir.clone());
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_restart_mid_run_loses_no_transition() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let env = env("sqlite").await;
    let mut nats = Nats::start(port, &env.dir.path().join("js"));
    nats.wait_up().await;
    let url = format!("nats://127.0.0.1:{port}");
    let bus: Arc<dyn EventBus> = Arc::new(
        hybridgrid_queue::NatsEventBus::connect(&url, "FLOWTEST", ["workflow.>", "graph.>"])
            .await
            .unwrap(),
    );
    std::fs::create_dir_all(env.dir.path().join("work")).unwrap();
    let engine = FlowEngine::start(
        env.config("e1"),
        env.store.clone(),
        bus.clone(),
        Executors::native(env.dir.path().join("work")),
    )
    .await
    .unwrap();
    env.agents(&engine).await;
    let wf = workflow(
        &engine,
        json!({"name": "chain", "nodes": [
        {"id": "s1", "agent": "slow", "action": "run"},
        {"id": "s2", "agent": "slow", "action": "run", "dependsOn": ["s1"]},
        {"id": "s3", "agent": "slow", "action": "run", "dependsOn": ["s2"]}]}),
    )
    .await;
    let run = trigger(&engine, &wf, json!({})).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    // SIGKILL the server mid-run and keep it down while a transition happens (s1 completes and
    // s2 starts with no NATS to publish to), then start it again on the same port and store.
    nats.kill();
    hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        let r = engine.run(&run).await.unwrap();
        (node(&r, "s1").status == NodeStatus::Succeeded).then_some(())
    })
    .await
    .expect("s1 never completed while NATS was down");
    nats.restart();
    nats.wait_up().await;
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    // Every transition reaches the (restarted, file-backed) stream.
    let want: BTreeSet<(FlowEventKind, Option<String>)> = [
        (FlowEventKind::RunStarted, None),
        (FlowEventKind::NodeCompleted, Some("s1".to_owned())),
        (FlowEventKind::NodeCompleted, Some("s2".to_owned())),
        (FlowEventKind::NodeCompleted, Some("s3".to_owned())),
        (FlowEventKind::RunCompleted, None),
    ]
    .into_iter()
    .collect();
    let reader = hybridgrid_queue::NatsEventBus::connect(&url, "FLOWTEST", ["workflow.>"])
        .await
        .unwrap();
    let got = hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
        let mut sub = reader.subscribe("workflow.>", true).await.ok()?;
        let mut got = BTreeSet::new();
        while let Ok(Some(Ok(m))) =
            tokio::time::timeout(Duration::from_millis(300), sub.next()).await
        {
            let ev: FlowEvent = serde_json::from_slice(&m.payload).unwrap();
            if ev.run_id == run {
                got.insert((ev.kind, ev.node_id));
            }
        }
        want.is_subset(&got).then_some(got)
    })
    .await;
    assert!(got.is_some(), "events missing after the NATS restart");
    engine.shutdown().await;
}
