//! The web UI in real headless Chromium: it renders a run waiting for approval (DAG, node states,
//! the reason it waits, Approve/Reject), and approving it in the page resumes the run.
//! Set HG_FLOW_UI_SCREENSHOT=path to keep the screenshot (docs/flow-ui.png was made so).
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{App, Config};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ui_approves_a_waiting_run_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.path().join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.path().join("work"));
    let handle = App::build(cfg, &BTreeMap::new())
        .await
        .unwrap()
        .serve()
        .await
        .unwrap();
    let a = handle.addr();
    let profile = dir.path().join("chromium-profile");
    std::thread::spawn(move || {
        let r = post(a, "/api/agents", &json!({"name": "deployer", "kind": "native",
            "command": ["/bin/sh", "-c", "echo 'deploying' >&2; echo '{\"deployed\": true}'"],
            "capabilities": [{"name": "deploy"}, {"name": "check"}]}));
        assert_eq!(r.status, 201, "{}", r.body);
        let r = post(a, "/api/workflows", &json!({"name": "release", "description": "check, then deploy after approval",
            "nodes": [
                {"id": "check", "agent": "deployer", "action": "check"},
                {"id": "lint", "agent": "deployer", "action": "check"},
                {"id": "deploy", "agent": "deployer", "action": "deploy", "dependsOn": ["check", "lint"], "approvalRequired": true},
                {"id": "announce", "agent": "deployer", "action": "check", "dependsOn": ["deploy"]}]}));
        assert_eq!(r.status, 201, "{}", r.body);
        let wf = r.json()["id"].as_str().unwrap().to_owned();
        let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({"release": "v1.2.3"})).json()["runId"].as_str().unwrap().to_owned();
        wait_for(Duration::from_secs(30), "the run to wait for approval", || {
            (get(a, &format!("/api/workflows/{wf}/runs/{run}")).json()["status"] == "WAITING_APPROVAL").then_some(())
        });
        let approval = get(a, &format!("/api/approvals?status=PENDING&runId={run}")).json()[0]["id"].as_str().unwrap().to_owned();
        let page = format!("http://{a}/#/workflows/{wf}/runs/{run}");

        // 1. It renders: the DAG with node states, why it waits, the buttons.
        let mut c = chromium_cmd(&profile);
        c.args(["--virtual-time-budget=8000", "--dump-dom", &page]);
        let dom = run_bounded(c, Duration::from_secs(60));
        assert!(dom.contains("id=\"node-deploy\"") && dom.contains("data-state=\"WAITING_APPROVAL\""), "{dom}");
        assert!(dom.contains("data-state=\"SUCCEEDED\""), "check and lint shown as done: {dom}");
        assert!(dom.contains("Waiting for approval of step “deploy”"), "{dom}");
        assert!(dom.contains(&format!("data-id=\"{approval}\"")) && dom.contains(">Approve<"), "{dom}");
        assert!(!dom.contains("Loading…"), "the page must not stay on its spinner: {dom}");

        let shot = dir_path_for_shot();
        let mut c = chromium_cmd(&profile);
        c.args(["--virtual-time-budget=8000", "--window-size=1280,900", &format!("--screenshot={}", shot.display()), &page]);
        run_bounded(c, Duration::from_secs(60));
        let png = std::fs::read(&shot).unwrap();
        assert!(png.starts_with(b"\x89PNG") && png.len() > 10_000, "screenshot is a real PNG");

        // 2. The page approves it (autoapprove clicks the Approve button once it shows).
        let mut c = chromium_cmd(&profile);
        c.args(["--virtual-time-budget=10000", "--dump-dom", &format!("http://{a}/?autoapprove={approval}#/workflows/{wf}/runs/{run}")]);
        let dom = run_bounded(c, Duration::from_secs(60));
        assert!(dom.contains(&format!("data-decided=\"{approval}:APPROVED\"")), "{dom}");
        let ap = get(a, "/api/approvals?status=APPROVED").json();
        let ap = ap.as_array().unwrap().iter().find(|x| x["id"] == approval.as_str()).cloned().expect("approved");
        assert_eq!(ap["decidedBy"], "web-ui");
        let done = wait_for(Duration::from_secs(30), "the approved run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
            (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
        });
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
    })
    .join()
    .unwrap();
    handle.shutdown().await;
}

fn dir_path_for_shot() -> std::path::PathBuf {
    match std::env::var("HG_FLOW_UI_SCREENSHOT") {
        Ok(p) if !p.is_empty() => std::path::PathBuf::from(p),
        _ => std::env::temp_dir().join(format!("flow-ui-{}.png", std::process::id())),
    }
}
