//! Dagger agents through the API: `dagger: {port, token}` in the config enables the SDK's
//! `DaggerExecutor`, which drives the engine's GraphQL session API. No Dagger engine can run on
//! this machine (its CLI downloads the engine image), so the engine is `testkit::fake_dagger`: a
//! local HTTP server that parses and checks every query it receives and answers as the engine
//! does. The agent I/O contract holds: input JSON as the last argument and in `AGENT_INPUT`, one
//! JSON document on stdout, stderr kept, a non-zero exit fails the step and the run.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{App, Config};
use hybridgrid_testkit::fake_dagger::{FakeDagger, Reply};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dagger_agent_runs_through_the_graphql_api() {
    let fake = FakeDagger::start(|call| {
        let input = call
            .env
            .iter()
            .find(|(k, _)| k == "AGENT_INPUT")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        let node = call
            .env
            .iter()
            .find(|(k, _)| k == "AGENT_NODE_ID")
            .map(|(_, v)| v.clone())
            .unwrap_or_default();
        if node == "broken" {
            return Reply::exit(2, "", "dagger step failed: no such file\n");
        }
        Reply::exit(
            0,
            format!(
                "{{\"image\": {:?}, \"args\": {}, \"input\": {input}}}\n",
                call.image,
                serde_json::to_string(&call.args).unwrap()
            ),
            format!("pipeline log for {node}\n"),
        )
    })
    .await;
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.path().join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.path().join("work"));
    cfg.dagger = Some(hybridgrid_executors::DaggerConfig {
        port: fake.port(),
        token: fake.token().to_owned(),
        work_root: dir.path().join("dagger-work"),
        ..Default::default()
    });
    let handle = App::build(cfg, &BTreeMap::new())
        .await
        .unwrap()
        .serve()
        .await
        .unwrap();
    let a = handle.addr();
    std::thread::spawn(move || {
        let r = post(
            a,
            "/api/agents",
            &json!({"name": "piped", "kind": "dagger", "image": "alpine:3.20",
            "command": ["/bin/scan", "--all"],
            "capabilities": [{"name": "run", "outputSchema": {"type": "object", "required": ["input"]}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "piped-wf", "nodes": [
            {"id": "first", "agent": "piped", "action": "run", "inputs": {"path": "/src", "n": 2}},
            {"id": "second", "agent": "piped", "action": "run", "dependsOn": ["first"],
             "inputs": {"from": "{{ nodes.first.output.input.path }}"}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let wf = r.json()["id"].as_str().unwrap().to_owned();
        let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = wait_for(Duration::from_secs(60), "the dagger run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
            (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
        });
        assert_eq!(v["status"], "SUCCEEDED", "{v:#}");
        let first = &v["agentRuns"][0];
        assert_eq!(first["output"]["image"], "alpine:3.20", "{first}");
        // The command with the input JSON as the last argument.
        let args = first["output"]["args"].as_array().unwrap();
        assert_eq!(args[0], "/bin/scan");
        assert_eq!(args[1], "--all");
        let last: serde_json::Value = serde_json::from_str(args[2].as_str().unwrap()).unwrap();
        assert_eq!(last, json!({"path": "/src", "n": 2}));
        assert_eq!(first["output"]["input"], json!({"path": "/src", "n": 2}));
        assert!(first["stderr"].as_str().unwrap().contains("pipeline log for first"));
        assert_eq!(v["agentRuns"][1]["output"]["input"]["from"], "/src");

        // A failing pipeline fails its step and the run.
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "piped-broken", "nodes": [
            {"id": "broken", "agent": "piped", "action": "run"},
            {"id": "after", "agent": "piped", "action": "run", "dependsOn": ["broken"]}]}),
        );
        let wf = r.json()["id"].as_str().unwrap().to_owned();
        let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = wait_for(Duration::from_secs(60), "the broken run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
            (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
        });
        assert_eq!(v["status"], "FAILED", "{v:#}");
        assert!(
            v["error"].as_str().unwrap().contains("exited with code 2"),
            "{v:#}"
        );
        assert_eq!(v["nodes"][1]["status"], "SKIPPED", "{v:#}");
    })
    .join()
    .unwrap();
    // The executor spoke the engine's API: images from the agent, execs with the contract's env.
    let calls = fake.calls();
    assert_eq!(calls.len(), 3, "{calls:#?}");
    assert!(calls.iter().all(|c| c.image == "alpine:3.20"));
    assert!(
        calls
            .iter()
            .all(|c| c.env.iter().any(|(k, v)| k == "AGENT_ACTION" && v == "run"))
    );
    assert!(
        fake.queries()
            .iter()
            .any(|q| q.contains("withExec") && q.contains("from")),
        "{:?}",
        fake.queries()
    );
    handle.shutdown().await;
}
