//! End to end through the HTTP API: a fan-out/fan-in workflow whose steps are real native
//! processes and real Docker containers (an image built locally, `--network none`), once on
//! PostgreSQL with NATS JetStream (a private `nats-server`) and once on a SQLite file with the
//! in-process bus. Every transition's event reaches the bus.
#![allow(clippy::unwrap_used)]

mod support;

use futures::StreamExt;
use hybridgrid_core::EventBus;
use hybridgrid_flow_api::{App, Config};
use hybridgrid_flow_model::{FlowEvent, FlowEventKind};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;
use support::*;

const NATIVE: &str = r#"echo "native $AGENT_NODE_ID" >&2; printf '{"where":"native","node":"%s","input":%s}\n' "$AGENT_NODE_ID" "$AGENT_INPUT""#;

fn container_image() -> String {
    hybridgrid_testkit::docker::ensure_image_with(
        "flow-fan-agent",
        &[(
            "/agent.sh",
            b"#!/bin/sh\necho \"container $AGENT_NODE_ID\" >&2\nprintf '{\"where\":\"container\",\"node\":\"%s\",\"net\":\"%s\",\"input\":%s}\\n' \"$AGENT_NODE_ID\" \"$(ls /sys/class/net | tr '\\n' ' ')\" \"$AGENT_INPUT\"\n",
            0o755,
        )],
    )
    .expect("test image (is Docker running? bash scripts/services.sh docker)")
}

async fn serve(
    dir: &std::path::Path,
    database_url: String,
    nats_url: String,
) -> hybridgrid_flow_api::Handle {
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = database_url;
    cfg.nats_url = nats_url;
    cfg.events.stream = "HGTEST_FLOW_FAN".into();
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.join("work"));
    cfg.docker = Some(hybridgrid_executors::DockerConfig {
        work_root: dir.join("docker-work"),
        owner: format!("hgtest-flow-fan-{}", std::process::id()),
        ..Default::default()
    });
    App::build(cfg, &BTreeMap::new())
        .await
        .unwrap()
        .serve()
        .await
        .unwrap()
}

/// Registers the agents, creates the workflow, triggers it, waits for it; returns the run.
fn run_fan(a: std::net::SocketAddr, image: String) -> (String, Value) {
    let r = post(
        a,
        "/api/agents",
        &json!({"name": "proc", "kind": "native", "command": ["/bin/sh", "-c", NATIVE],
            "capabilities": [{"name": "run", "outputSchema": {"type": "object", "required": ["where", "node"]}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        a,
        "/api/agents",
        &json!({"name": "boxed", "kind": "container", "image": image, "command": ["/agent.sh"],
            "resources": {"cpus": 0.5, "memoryMb": 64},
            "capabilities": [{"name": "run",
                "inputSchema": {"type": "object", "required": ["item"]},
                "outputSchema": {"type": "object", "required": ["where", "node"]}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let r = post(
        a,
        "/api/workflows",
        &json!({"name": "fan", "nodes": [
            {"id": "split", "agent": "proc", "action": "run", "inputs": {"files": ["a.rs", "b.rs", "c.rs"]}},
            {"id": "scan_a", "agent": "boxed", "action": "run", "inputs": {"item": "{{ nodes.split.output.input.files.0 }}"}},
            {"id": "scan_b", "agent": "proc", "action": "run", "inputs": {"item": "{{ nodes.split.output.input.files.1 }}"}},
            {"id": "scan_c", "agent": "boxed", "action": "run", "inputs": {"item": "{{ nodes.split.output.input.files.2 }}"}},
            {"id": "join", "agent": "proc", "action": "run", "inputs": {
                "a": "{{ nodes.scan_a.output }}", "b": "{{ nodes.scan_b.output }}", "c": "{{ nodes.scan_c.output }}",
                "summary": "scanned {{ nodes.scan_a.output.input.item }} in a {{ nodes.scan_a.output.where }}"}}],
            "edges": [{"from": "split", "to": "scan_a"}, {"from": "split", "to": "scan_b"},
                      {"from": "split", "to": "scan_c"}, {"from": "scan_a", "to": "join"},
                      {"from": "scan_b", "to": "join"}, {"from": "scan_c", "to": "join"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    let wf = r.json()["id"].as_str().unwrap().to_owned();
    let r = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({}));
    assert_eq!(r.status, 202, "{}", r.body);
    let run = r.json()["runId"].as_str().unwrap().to_owned();
    let done = wait_for(Duration::from_secs(120), "the fan run to finish", || {
        let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
        (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
    });
    assert_eq!(done["status"], "SUCCEEDED", "{done:#}");
    let nodes = done["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 5);
    assert!(nodes.iter().all(|n| n["status"] == "SUCCEEDED"), "{done:#}");
    let ars = get(a, &format!("/api/workflows/{wf}/runs/{run}/agent-runs")).json();
    let by: BTreeMap<String, Value> = ars
        .as_array()
        .unwrap()
        .iter()
        .map(|x| (x["nodeId"].as_str().unwrap().to_owned(), x.clone()))
        .collect();
    assert_eq!(by.len(), 5, "{ars:#}");
    for (n, want) in [
        ("scan_a", "container"),
        ("scan_b", "native"),
        ("scan_c", "container"),
    ] {
        assert_eq!(by[n]["output"]["where"], want, "{n}: {:#}", by[n]);
        assert!(
            by[n]["stderr"]
                .as_str()
                .unwrap()
                .contains(&format!("{want} {n}")),
            "{n}: {:#}",
            by[n]
        );
    }
    assert_eq!(by["scan_a"]["output"]["input"]["item"], "a.rs");
    assert_eq!(by["scan_c"]["output"]["input"]["item"], "c.rs");
    assert_eq!(
        by["scan_a"]["output"]["net"].as_str().unwrap().trim(),
        "lo",
        "--network none: {:#}",
        by["scan_a"]
    );
    let join = &by["join"]["output"]["input"];
    assert_eq!(join["a"]["node"], "scan_a", "{join:#}");
    assert_eq!(join["b"]["input"]["item"], "b.rs", "{join:#}");
    assert_eq!(join["c"]["where"], "container", "{join:#}");
    assert_eq!(join["summary"], "scanned a.rs in a container");
    (run, done)
}

/// Reads events of `run` from `sub` until every one in `want` arrived (or 30 s passed).
async fn events_of(
    mut sub: futures::stream::BoxStream<
        'static,
        Result<hybridgrid_core::BusMessage, hybridgrid_core::EventBusError>,
    >,
    run: &str,
    want: &BTreeSet<(FlowEventKind, Option<String>)>,
) -> BTreeSet<(FlowEventKind, Option<String>)> {
    let mut got = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !want.is_subset(&got) && tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(500), sub.next()).await {
            Ok(Some(Ok(m))) => {
                let ev: FlowEvent = serde_json::from_slice(&m.payload).unwrap();
                if ev.run_id == run {
                    got.insert((ev.kind, ev.node_id));
                }
            }
            Ok(None) => break,
            _ => {}
        }
    }
    got
}

fn expected() -> BTreeSet<(FlowEventKind, Option<String>)> {
    let mut want: BTreeSet<_> = ["split", "scan_a", "scan_b", "scan_c", "join"]
        .into_iter()
        .map(|n| (FlowEventKind::NodeCompleted, Some(n.to_owned())))
        .collect();
    want.insert((FlowEventKind::RunStarted, None));
    want.insert((FlowEventKind::RunCompleted, None));
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_processes_and_containers_on_postgres_and_nats() {
    let image = container_image();
    let dir = tempfile::tempdir().unwrap();
    let nats = PrivateNats::start(&dir.path().join("js"));
    let schema = format!("hgtest_flow_fan_{}", std::process::id());
    let pg = pg_url();
    drop_pg_schema(&pg, &schema);
    let handle = serve(dir.path(), format!("{pg}?schema={schema}"), nats.url()).await;
    let a = handle.addr();
    assert_eq!(get(a, "/health/db").json()["backend"], "postgres");
    assert_eq!(get(a, "/health/nats").json()["bus"], "nats");
    let (run, _) = std::thread::spawn(move || run_fan(a, image))
        .join()
        .unwrap();
    // Read the stream back from its start with a client of our own.
    let reader = hybridgrid_queue::NatsEventBus::connect(
        &nats.url(),
        "HGTEST_FLOW_FAN",
        ["workflow.>", "graph.>", "events.>"],
    )
    .await
    .unwrap();
    let want = expected();
    let got = events_of(
        reader.subscribe("workflow.>", true).await.unwrap(),
        &run,
        &want,
    )
    .await;
    assert!(
        want.is_subset(&got),
        "missing events: {:?}",
        want.difference(&got)
    );

    // A message on `graph.file.updated`, published on NATS by another client, starts the
    // workflow whose trigger is `graph.>`, with the message as its context.
    let wf = std::thread::spawn(move || {
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "on-graph", "trigger": {"type": "event", "pattern": "graph.>"},
                "nodes": [{"id": "x", "agent": "proc", "action": "run",
                           "inputs": {"file": "{{ context.event.payload.path }}"}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_str().unwrap().to_owned()
    })
    .join()
    .unwrap();
    let mut started = None;
    for _ in 0..100 {
        // Until the engine's subscription to the new pattern is made, messages start nothing.
        reader
            .publish(
                "graph.file.updated",
                br#"{"path": "src/lib.rs"}"#.to_vec().into(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let wf = wf.clone();
        let runs = std::thread::spawn(move || get(a, &format!("/api/workflows/{wf}/runs")).json())
            .join()
            .unwrap();
        if let Some(r) = runs.as_array().unwrap().first() {
            started = Some(r.clone());
            break;
        }
    }
    let r = started.expect("graph.file.updated on NATS started no run");
    assert_eq!(r["trigger"], "event", "{r}");
    assert_eq!(
        r["context"]["event"]["subject"], "graph.file.updated",
        "{r}"
    );
    let id = r["id"].as_str().unwrap().to_owned();
    let done = std::thread::spawn(move || {
        wait_for(Duration::from_secs(60), "the event's run", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{id}")).json();
            (v["status"] == "SUCCEEDED").then_some(v)
        })
    })
    .join()
    .unwrap();
    assert_eq!(
        done["agentRuns"][0]["input"]["file"], "src/lib.rs",
        "{done:#}"
    );
    handle.shutdown().await;
    drop_pg_schema(&pg, &schema);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fan_out_fan_in_processes_and_containers_on_sqlite_and_in_process_bus() {
    let image = container_image();
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("flow.db").display());
    let handle = serve(dir.path(), db, String::new()).await;
    let a = handle.addr();
    assert_eq!(get(a, "/health/db").json()["backend"], "sqlite");
    assert_eq!(get(a, "/health/nats").json()["bus"], "in-process");
    let bus: Arc<dyn EventBus> = handle.event_bus();
    let sub = bus.subscribe("workflow.>", false).await.unwrap();
    let (run, _) = std::thread::spawn(move || run_fan(a, image))
        .join()
        .unwrap();
    let want = expected();
    let got = events_of(sub, &run, &want).await;
    assert!(
        want.is_subset(&got),
        "missing events: {:?}",
        want.difference(&got)
    );
    handle.shutdown().await;
}
