//! Real clients against the API: Debian's `prometheus-alertmanager` 0.25 posts its webhook (and
//! re-sends it) and the mapped workflow runs once per fingerprint; Debian's `prometheus` scrapes
//! `/metrics` and evaluates rules over `workflow_success_rate`; an event on `graph.file.updated`
//! starts a workflow whose trigger pattern is `graph.>`.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{AlertRule, App, Config, RuleOn};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;
use support::*;

async fn serve(dir: &std::path::Path) -> hybridgrid_flow_api::Handle {
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.server.rate_limit.per_second = 0.0;
    cfg.engine.work_dir = Some(dir.join("work"));
    cfg.alerts.rules = vec![AlertRule {
        matchers: BTreeMap::from([("alertname".to_string(), "DiskFull".to_string())]),
        workflow: "clean-disk".into(),
        on: RuleOn::Firing,
    }];
    App::build(cfg, &BTreeMap::new())
        .await
        .unwrap()
        .serve()
        .await
        .unwrap()
}

fn setup(a: SocketAddr) -> String {
    let r = post(
        a,
        "/api/agents",
        &json!({"name": "sh", "kind": "native",
        "command": ["/bin/sh", "-c", "echo '{\"ok\": true}'"], "capabilities": [{"name": "run"}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        post(
            a,
            "/api/agents",
            &json!({"name": "fail", "kind": "native",
        "command": ["/bin/sh", "-c", "echo broken >&2; exit 1"], "capabilities": [{"name": "run"}]})
        )
        .status,
        201
    );
    let r = post(
        a,
        "/api/workflows",
        &json!({"name": "clean-disk", "nodes": [
        {"id": "clean", "agent": "sh", "action": "run", "inputs": {"host": "{{ context.alert.labels.instance }}"}}]}),
    );
    assert_eq!(r.status, 201, "{}", r.body);
    r.json()["id"].as_str().unwrap().to_owned()
}

fn runs(a: SocketAddr, wf: &str) -> Vec<Value> {
    get(a, &format!("/api/workflows/{wf}/runs"))
        .json()
        .as_array()
        .unwrap()
        .clone()
}

fn metric(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_webhook_runs_once_per_fingerprint() {
    let dir = tempfile::tempdir().unwrap();
    let handle = serve(dir.path()).await;
    let a = handle.addr();
    let d = dir.path().to_owned();
    std::thread::spawn(move || {
        let wf = setup(a);
        let am_port = free_port();
        let cfg = d.join("am.yml");
        std::fs::write(
            &cfg,
            format!(
                "route:
  receiver: flow
  group_by: ['alertname']
  group_wait: 100ms
  group_interval: 1s
  repeat_interval: 1s
receivers:
  - name: flow
    webhook_configs:
      - url: http://{a}/api/webhooks/alertmanager
        send_resolved: true
"
            ),
        )
        .unwrap();
        let mut c = Command::new(require("prometheus-alertmanager"));
        c.arg(format!("--config.file={}", cfg.display()))
            .arg(format!("--storage.path={}", d.join("am-data").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{am_port}"))
            .arg("--cluster.listen-address=");
        let am = Proc::spawn(c, d.join("am.log"));
        let am_url = format!("http://127.0.0.1:{am_port}");
        wait_for(Duration::from_secs(30), "alertmanager to be ready", || {
            std::net::TcpStream::connect(("127.0.0.1", am_port))
                .ok()
                .and_then(|_| {
                    (get(format!("127.0.0.1:{am_port}").parse().unwrap(), "/-/ready").status == 200)
                        .then_some(())
                })
        });
        let st = Command::new(require("amtool"))
            .args([
                &format!("--alertmanager.url={am_url}"),
                "alert",
                "add",
                "DiskFull",
                "severity=critical",
                "instance=db-1",
            ])
            .status()
            .unwrap();
        assert!(st.success(), "amtool alert add failed: {}", am.log_text());
        // AlertManager re-sends the firing group every second: wait for at least 3 deliveries.
        wait_for(Duration::from_secs(30), "three webhook deliveries", || {
            let m = get(a, "/metrics").body;
            (metric(&m, "flow_webhook_deliveries_total{source=\"alertmanager\"}").unwrap_or(0.0)
                >= 3.0)
                .then_some(())
        });
        let list = runs(a, &wf);
        assert_eq!(
            list.len(),
            1,
            "one run per fingerprint and episode despite re-sends: {list:?}"
        );
        let run = &list[0];
        assert_eq!(run["trigger"], "alert");
        assert_eq!(run["context"]["alert"]["labels"]["instance"], "db-1");
        assert_eq!(run["context"]["alert"]["status"], "firing");
        assert!(
            run["context"]["alert"]["fingerprint"]
                .as_str()
                .unwrap()
                .len()
                >= 8
        );
        let id = run["id"].as_str().unwrap();
        let done = wait_for(Duration::from_secs(30), "the alert's run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{id}")).json();
            (v["status"] == "SUCCEEDED").then_some(v)
        });
        assert_eq!(done["agentRuns"][0]["input"]["host"], "db-1");
        // A second alert (another fingerprint) starts its own run.
        let st = Command::new(require("amtool"))
            .args([
                &format!("--alertmanager.url={am_url}"),
                "alert",
                "add",
                "DiskFull",
                "severity=critical",
                "instance=db-2",
            ])
            .status()
            .unwrap();
        assert!(st.success());
        wait_for(
            Duration::from_secs(30),
            "the second fingerprint's run",
            || (runs(a, &wf).len() == 2).then_some(()),
        );
        let before = metric(
            &get(a, "/metrics").body,
            "flow_webhook_deliveries_total{source=\"alertmanager\"}",
        )
        .unwrap();
        wait_for(Duration::from_secs(30), "more re-sends", || {
            (metric(
                &get(a, "/metrics").body,
                "flow_webhook_deliveries_total{source=\"alertmanager\"}",
            )
            .unwrap()
                >= before + 2.0)
                .then_some(())
        });
        assert_eq!(
            runs(a, &wf).len(),
            2,
            "re-sends of both alerts start nothing new"
        );
        drop(am);
    })
    .join()
    .unwrap();
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_scrapes_and_evaluates_success_rate() {
    let dir = tempfile::tempdir().unwrap();
    let handle = serve(dir.path()).await;
    let a = handle.addr();
    let d = dir.path().to_owned();
    std::thread::spawn(move || {
        setup(a);
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "fine", "nodes": [{"id": "x", "agent": "sh", "action": "run"}]}),
        );
        let ok = r.json()["id"].as_str().unwrap().to_owned();
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "broken", "nodes": [{"id": "x", "agent": "fail", "action": "run"}]}),
        );
        let bad = r.json()["id"].as_str().unwrap().to_owned();
        for wf in [&ok, &bad] {
            let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
                .as_str()
                .unwrap()
                .to_owned();
            wait_for(Duration::from_secs(30), "run to finish", || {
                let s = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json()["status"].clone();
                (s == "SUCCEEDED" || s == "FAILED").then_some(())
            });
        }
        let m = get(a, "/metrics").body;
        assert_eq!(metric(&m, "workflow_success_rate "), Some(0.5), "{m}");
        std::fs::write(
            d.join("rules.yml"),
            "groups:
  - name: flow
    interval: 1s
    rules:
      - record: flow:success_rate
        expr: workflow_success_rate
      - alert: WorkflowSuccessRateLow
        expr: workflow_success_rate < 0.9
        labels: { severity: warning }
",
        )
        .unwrap();
        std::fs::write(
            d.join("prom.yml"),
            format!(
                "global: {{ scrape_interval: 1s, evaluation_interval: 1s }}
rule_files: [ {} ]
scrape_configs:
  - job_name: hg-flow
    static_configs: [ {{ targets: ['{a}'] }} ]
",
                d.join("rules.yml").display()
            ),
        )
        .unwrap();
        let port = free_port();
        let mut c = Command::new(require("prometheus"));
        c.arg(format!("--config.file={}", d.join("prom.yml").display()))
            .arg(format!("--storage.tsdb.path={}", d.join("tsdb").display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"));
        let prom = Proc::spawn(c, d.join("prom.log"));
        let p: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let v = wait_for(
            Duration::from_secs(60),
            "prometheus to evaluate flow:success_rate",
            || {
                std::net::TcpStream::connect(p).ok()?;
                let r = get(p, "/api/v1/query?query=flow:success_rate");
                if r.status != 200 {
                    return None;
                }
                let j = r.json();
                let res = j["data"]["result"].as_array()?.first()?.clone();
                res["value"][1].as_str()?.parse::<f64>().ok()
            },
        );
        assert_eq!(v, 0.5, "{}", prom.log_text());
        let state = wait_for(Duration::from_secs(30), "the alert rule to fire", || {
            let j = get(p, "/api/v1/rules?type=alert").json();
            let rule = j["data"]["groups"][0]["rules"][0].clone();
            (rule["state"] == "firing").then_some(rule)
        });
        assert_eq!(state["name"], "WorkflowSuccessRateLow");
        let j = get(p, "/api/v1/query?query=workflow_runs_total").json();
        let series = j["data"]["result"].as_array().unwrap();
        assert!(
            series
                .iter()
                .any(|s| s["metric"]["status"] == "FAILED" && s["metric"]["trigger"] == "manual"),
            "{j}"
        );
        drop(prom);
    })
    .join()
    .unwrap();
    handle.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn graph_event_triggers_a_graph_workflow() {
    let dir = tempfile::tempdir().unwrap();
    let handle = serve(dir.path()).await;
    let a = handle.addr();
    let wf = std::thread::spawn(move || {
        setup(a);
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "on-graph", "trigger": {"type": "event", "pattern": "graph.>"},
            "nodes": [{"id": "x", "agent": "sh", "action": "run"}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        r.json()["id"].as_str().unwrap().to_owned()
    })
    .join()
    .unwrap();
    // Give the engine's event subscription a moment to see the new workflow, publishing until a
    // run appears (each message is its own trigger; only the first is counted below).
    let bus = handle.event_bus();
    let payload = bytes::Bytes::from_static(br#"{"file": "src/main.rs"}"#);
    let mut found = None;
    for _ in 0..100 {
        bus.publish("graph.file.updated", payload.clone())
            .await
            .unwrap();
        let list = {
            let wf = wf.clone();
            std::thread::spawn(move || runs(a, &wf)).join().unwrap()
        };
        if let Some(r) = list.first() {
            found = Some(r.clone());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = found.expect("no run started by graph.file.updated");
    assert_eq!(run["trigger"], "event");
    assert!(
        run["context"].to_string().contains("graph.file.updated")
            || run["context"].to_string().contains("src/main.rs"),
        "{run}"
    );
    handle.shutdown().await;
}
