//! A container agent through the API: `docker: {}` in the config enables the Docker executor; the
//! agent's image (built locally by the testkit, never pulled) runs with `--network none`.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{App, Config};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn container_agent_runs_through_the_api() {
    let image = hybridgrid_testkit::docker::ensure_image_with(
        "flow-api-agent",
        &[(
            "/agent.sh",
            b"#!/bin/sh\necho 'in a container' >&2\nprintf '{\"got\": %s, \"net\": \"%s\"}\\n' \"$AGENT_INPUT\" \"$(ls /sys/class/net | tr '\\n' ' ')\"\n",
            0o755,
        )],
    )
    .expect("test image (is Docker running? bash /work/shared/services.sh docker)");
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.path().join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.path().join("work"));
    cfg.docker = Some(hybridgrid_executors::DockerConfig {
        work_root: dir.path().join("docker-work"),
        owner: format!("hgtest-flow-api-{}", std::process::id()),
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
        let r = post(a, "/api/agents", &json!({"name": "boxed", "kind": "container", "image": image,
            "command": ["/agent.sh"], "capabilities": [{"name": "run", "outputSchema": {"type": "object", "required": ["got"]}}]}));
        assert_eq!(r.status, 201, "{}", r.body);
        let r = post(a, "/api/workflows", &json!({"name": "boxed-wf", "nodes": [
            {"id": "a", "agent": "boxed", "action": "run", "inputs": {"n": 7}}]}));
        let wf = r.json()["id"].as_str().unwrap().to_owned();
        let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"].as_str().unwrap().to_owned();
        let v = wait_for(Duration::from_secs(60), "the container run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
            (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
        });
        assert_eq!(v["status"], "SUCCEEDED", "{v}");
        let ar = &v["agentRuns"][0];
        assert_eq!(ar["output"]["got"]["n"], 7, "{ar}");
        assert_eq!(ar["output"]["net"].as_str().unwrap().trim(), "lo", "no network granted: {ar}");
        assert!(ar["stderr"].as_str().unwrap().contains("in a container"));
    })
    .join()
    .unwrap();
    handle.shutdown().await;
}
