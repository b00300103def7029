//! Every endpoint of the API, in process on loopback with a SQLite file and the in-process bus,
//! including bad input: malformed JSON, unknown ids, a cycle (named), an unknown dependency
//! (nothing created), input not matching the schema, a body over the limit, auth and rate limit.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{App, Config, ROUTES};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;
use support::*;

struct Server {
    addr: SocketAddr,
    handle: Option<hybridgrid_flow_api::Handle>,
    _dir: tempfile::TempDir,
}

async fn serve(tweak: impl FnOnce(&mut Config)) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.path().join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.path().join("work"));
    tweak(&mut cfg);
    let handle = App::build(cfg, &BTreeMap::new())
        .await
        .unwrap()
        .serve()
        .await
        .unwrap();
    Server {
        addr: handle.addr(),
        handle: Some(handle),
        _dir: dir,
    }
}

fn echo_agent(name: &str) -> Value {
    json!({
        "name": name, "kind": "native",
        "command": ["/bin/sh", "-c", "echo '{\"ok\": true, \"n\": 3}'"],
        "capabilities": [{"name": "run",
            "inputSchema": {"type": "object", "properties": {"n": {"type": "integer"}}},
            "outputSchema": {"type": "object", "required": ["ok"]}}]
    })
}

fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::spawn(f).join().unwrap()
}

fn wait_status(addr: SocketAddr, wf: &str, run: &str, want: &[&str]) -> Value {
    let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    let path = format!("/api/workflows/{wf}/runs/{run}");
    wait_for(
        Duration::from_secs(30),
        &format!("run {run} to reach {want:?}"),
        || {
            let r = get(addr, &path);
            let v = r.json();
            want.contains(&v["status"].as_str().unwrap_or("").to_string())
                .then_some(v)
        },
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_workflows_runs_and_bad_input() {
    let s = serve(|c| c.server.max_body_bytes = 64 * 1024).await;
    let a = s.addr;
    blocking(move || {
        // health
        let h = get(a, "/health").json();
        assert_eq!(h["status"], "ok");
        assert!(h["timestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(get(a, "/health/db").json()["status"], "connected");
        assert_eq!(get(a, "/health/nats").json()["status"], "connected");

        // agents CRUD
        let r = post(a, "/api/agents", &echo_agent("echo"));
        assert_eq!(r.status, 201, "{}", r.body);
        let agent = r.json();
        let r = post(a, "/api/agents", &echo_agent("echo"));
        assert_eq!(r.status, 409, "duplicate name: {}", r.body);
        assert_eq!(r.json()["error"], "conflict");
        assert_eq!(get(a, "/api/agents").json().as_array().unwrap().len(), 1);
        assert_eq!(
            get(a, &format!("/api/agents/{}", agent["id"].as_str().unwrap())).json()["name"],
            "echo"
        );
        let r = get(a, "/api/agents/nope");
        assert_eq!(r.status, 404);
        assert!(r.json()["message"].as_str().unwrap().contains("nope"));
        let mut updated = echo_agent("echo");
        updated["version"] = json!("2");
        let r = http(
            a,
            "PUT",
            &format!("/api/agents/{}", agent["id"].as_str().unwrap()),
            Some(updated.to_string().as_bytes()),
            &[],
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["version"], "2");
        assert_eq!(post(a, "/api/agents", &echo_agent("tmp")).status, 201);
        assert_eq!(http(a, "DELETE", "/api/agents/tmp", None, &[]).status, 204);

        // bad input
        let r = http(a, "POST", "/api/agents", Some(b"{\"name\": "), &[]);
        assert_eq!(r.status, 400);
        assert_eq!(r.json()["error"], "invalid_json");
        let r = post(a, "/api/agents", &json!({"name": "x"}));
        assert_eq!(r.status, 422, "{}", r.body);
        assert!(
            r.json()["message"].as_str().unwrap().contains("kind"),
            "{}",
            r.body
        );
        let big = format!("{{\"name\": \"{}\"}}", "x".repeat(100 * 1024));
        let r = http(a, "POST", "/api/agents", Some(big.as_bytes()), &[]);
        assert_eq!(r.status, 413, "{}", r.body);
        assert!(r.json()["message"].as_str().unwrap().contains("65536"));
        let r = http(
            a,
            "POST",
            "/api/agents",
            Some(b"name=x"),
            &["Content-Type: application/x-www-form-urlencoded"],
        );
        assert_eq!(r.status, 415);
        let r = get(a, "/api/nothing-here");
        assert_eq!(r.status, 404);
        assert_eq!(r.json()["error"], "not_found");
        let r = http(a, "DELETE", "/health", None, &[]);
        assert_eq!(r.status, 405);
        assert_eq!(r.json()["error"], "method_not_allowed");

        // workflows: a cycle is named, an unknown dependency creates nothing
        let cyc = json!({"name": "cyc", "nodes": [
            {"id": "A", "agent": "echo", "action": "run"},
            {"id": "B", "agent": "echo", "action": "run"},
            {"id": "C", "agent": "echo", "action": "run"}],
            "edges": [{"from": "A", "to": "B"}, {"from": "B", "to": "C"}, {"from": "C", "to": "A"}]});
        let r = post(a, "/api/workflows", &cyc);
        assert_eq!(r.status, 400, "{}", r.body);
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(msg.contains("A → B → C → A") || msg.contains("→"), "{msg}");
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "dangling", "nodes": [
            {"id": "a", "agent": "echo", "action": "run", "dependsOn": ["ghost"]}]}),
        );
        assert_eq!(r.status, 400);
        assert!(
            r.json()["message"].as_str().unwrap().contains("ghost"),
            "{}",
            r.body
        );
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "unknown-agent", "nodes": [
            {"id": "a", "agent": "nobody", "action": "run"}]}),
        );
        assert_eq!(r.status, 400);
        assert!(r.json()["message"].as_str().unwrap().contains("nobody"));
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "bad-input", "nodes": [
            {"id": "a", "agent": "echo", "action": "run", "inputs": {"n": "three"}}]}),
        );
        assert_eq!(
            r.status, 400,
            "static input not matching the schema: {}",
            r.body
        );
        assert_eq!(r.json()["error"], "schema_mismatch", "{}", r.body);
        let msg = r.json()["message"].as_str().unwrap().to_owned();
        assert!(
            msg.contains("node \"a\"") && msg.contains("echo/run"),
            "names the node and the action: {msg}"
        );
        assert_eq!(
            get(a, "/api/workflows").json().as_array().unwrap().len(),
            0,
            "nothing half-created"
        );

        // a fan-out/fan-in workflow runs
        let wf = json!({"name": "fan", "nodes": [
            {"id": "a", "agent": "echo", "action": "run"},
            {"id": "b", "agent": "echo", "action": "run", "dependsOn": ["a"], "inputs": {"n": "{{ nodes.a.output.n }}"}},
            {"id": "c", "agent": "echo", "action": "run", "dependsOn": ["a"]},
            {"id": "d", "agent": "echo", "action": "run"}],
            "edges": [{"from": "b", "to": "d"}, {"from": "c", "to": "d"}]});
        let r = post(a, "/api/workflows", &wf);
        assert_eq!(r.status, 201, "{}", r.body);
        let wf = r.json();
        let id = wf["id"].as_str().unwrap().to_owned();
        assert_eq!(
            get(a, &format!("/api/workflows/{id}")).json()["edges"]
                .as_array()
                .unwrap()
                .len(),
            4
        );
        let r = http(
            a,
            "POST",
            &format!("/api/workflows/{id}/trigger"),
            None,
            &[],
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let run_id = r.json()["runId"].as_str().unwrap().to_owned();
        let run = wait_status(a, &id, &run_id, &["SUCCEEDED", "FAILED"]);
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        let ars = run["agentRuns"].as_array().unwrap();
        assert_eq!(ars.len(), 4);
        assert!(
            ars.iter()
                .all(|x| x["agent"]["name"] == "echo" && x["durationMs"].is_u64()),
            "{run}"
        );
        let list = get(a, &format!("/api/workflows/{id}/runs/{run_id}/agent-runs")).json();
        let b = list
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["nodeId"] == "b")
            .unwrap();
        assert_eq!(b["input"]["n"], 3, "typed template substitution: {b}");
        assert_eq!(b["output"]["ok"], true);
        assert_eq!(
            get(a, &format!("/api/workflows/{id}/runs"))
                .json()
                .as_array()
                .unwrap()
                .len(),
            1
        );
        assert_eq!(
            get(a, &format!("/api/workflows/{id}/runs/nope")).status,
            404
        );
        assert_eq!(get(a, "/api/workflows/nope/runs").status, 404);
        let r = post(a, "/api/workflows/nope/trigger", &json!({}));
        assert_eq!(r.status, 404);
        let r = http(
            a,
            "POST",
            &format!("/api/workflows/{id}/trigger"),
            Some(b"[1,2]"),
            &[],
        );
        assert_eq!(r.status, 422);
        let r = http(
            a,
            "POST",
            &format!("/api/workflows/{id}/trigger"),
            Some(b"{oops"),
            &[],
        );
        assert_eq!(r.status, 400);
        // a finished run cannot be cancelled; a succeeded run cannot be retried
        assert_eq!(
            post(
                a,
                &format!("/api/workflows/runs/{run_id}/cancel"),
                &json!({})
            )
            .status,
            409
        );
        assert_eq!(
            post(
                a,
                &format!("/api/workflows/runs/{run_id}/retry"),
                &json!({})
            )
            .status,
            409
        );
        assert_eq!(
            post(a, "/api/workflows/runs/nope/retry", &json!({})).status,
            404
        );

        // input rendered at run time not matching the schema: the step fails before its agent
        // starts, naming the mismatch; the run fails; nothing is left RUNNING
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "late-bad-input", "nodes": [
            {"id": "a", "agent": "echo", "action": "run", "inputs": {"n": "{{ context.n }}"}},
            {"id": "b", "agent": "echo", "action": "run", "dependsOn": ["a"]}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let lid = r.json()["id"].as_str().unwrap().to_owned();
        let r = post(
            a,
            &format!("/api/workflows/{lid}/trigger"),
            &json!({"n": "three"}),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        let lrun = r.json()["runId"].as_str().unwrap().to_owned();
        let v = wait_status(a, &lid, &lrun, &["SUCCEEDED", "FAILED"]);
        assert_eq!(v["status"], "FAILED", "{v}");
        assert!(
            v["error"]
                .as_str()
                .unwrap()
                .contains("input does not match the input schema of echo/run"),
            "{v}"
        );
        let nodes = v["nodes"].as_array().unwrap();
        assert_eq!(nodes[0]["status"], "FAILED", "{v}");
        assert_eq!(nodes[1]["status"], "SKIPPED", "{v}");
        let ar = get(a, &format!("/api/workflows/{lid}/runs/{lrun}/agent-runs")).json();
        let first = ar
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["nodeId"] == "a")
            .unwrap()
            .clone();
        assert_eq!(
            first["input"]["n"], "three",
            "the rendered input is kept: {first}"
        );
        assert!(
            first["exitCode"].is_null() && first["stdout"].is_null(),
            "the agent never ran: {first}"
        );

        // approvals
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "gated", "nodes": [
            {"id": "check", "agent": "echo", "action": "run"},
            {"id": "apply", "agent": "echo", "action": "run", "dependsOn": ["check"], "approvalRequired": true}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let gid = r.json()["id"].as_str().unwrap().to_owned();
        let run_id = post(
            a,
            &format!("/api/workflows/{gid}/trigger"),
            &json!({"context": {"who": "test"}}),
        )
        .json()["runId"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_status(a, &gid, &run_id, &["WAITING_APPROVAL"]);
        let pending = get(a, &format!("/api/approvals?status=PENDING&runId={run_id}")).json();
        let ap = pending.as_array().unwrap()[0]["id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(get(a, "/api/approvals?status=bogus").status, 400);
        let r = post(
            a,
            &format!("/api/approvals/{ap}/decision"),
            &json!({"decision": "MAYBE", "by": "me"}),
        );
        assert_eq!(r.status, 422);
        let r = post(
            a,
            &format!("/api/approvals/{ap}/decision"),
            &json!({"decision": "APPROVED", "decidedBy": "alice", "notes": "ok"}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["decidedBy"], "alice");
        assert_eq!(
            post(
                a,
                &format!("/api/approvals/{ap}/decision"),
                &json!({"decision": "REJECTED", "by": "bob"})
            )
            .status,
            409
        );
        assert_eq!(
            wait_status(a, &gid, &run_id, &["SUCCEEDED", "FAILED"])["status"],
            "SUCCEEDED"
        );
        assert_eq!(
            post(
                a,
                "/api/approvals/nope/decision",
                &json!({"decision": "APPROVED", "by": "x"})
            )
            .status,
            404
        );

        // cancel a waiting run, then retry it
        let run_id = post(a, &format!("/api/workflows/{gid}/trigger"), &json!({})).json()["runId"]
            .as_str()
            .unwrap()
            .to_owned();
        wait_status(a, &gid, &run_id, &["WAITING_APPROVAL"]);
        let r = post(
            a,
            &format!("/api/workflows/runs/{run_id}/cancel"),
            &json!({}),
        );
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["status"], "CANCELLED");
        let r = post(
            a,
            &format!("/api/workflows/runs/{run_id}/retry"),
            &json!({}),
        );
        assert_eq!(r.status, 202, "{}", r.body);
        assert_eq!(r.json()["retryOf"], run_id.as_str());

        // archive
        let r = http(a, "DELETE", &format!("/api/workflows/{id}"), None, &[]);
        assert_eq!(r.status, 200);
        assert_eq!(r.json()["status"], "ARCHIVED");
        assert_eq!(
            post(a, &format!("/api/workflows/{id}/trigger"), &json!({})).status,
            409
        );

        // metrics
        let m = get(a, "/metrics").body;
        for name in [
            "workflow_runs_total{",
            "workflow_success_rate",
            "workflow_duration_seconds_bucket",
            "agent_runs_total{agent=\"echo\"",
            "agent_duration_seconds",
            "workflows_active",
            "approval_wait_seconds_count 1",
            "process_heap_size_bytes ",
            "process_resident_memory_bytes ",
        ] {
            assert!(m.contains(name), "missing {name} in\n{m}");
        }
    });
    s.handle.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_guards_writes_and_rate_limit_spares_health() {
    let s = serve(|c| {
        c.server.api_token = "s3cret-token".into();
        c.server.rate_limit.per_second = 1.0;
        c.server.rate_limit.burst = 3;
    })
    .await;
    let a = s.addr;
    blocking(move || {
        let r = post(a, "/api/agents", &echo_agent("e"));
        assert_eq!(r.status, 401);
        assert!(!r.body.contains("s3cret-token"));
        let r = http(
            a,
            "POST",
            "/api/agents",
            Some(echo_agent("e").to_string().as_bytes()),
            &["Authorization: Bearer wrong"],
        );
        assert_eq!(r.status, 401);
        let r = http(
            a,
            "POST",
            "/api/agents",
            Some(echo_agent("e").to_string().as_bytes()),
            &["Authorization: Bearer s3cret-token"],
        );
        assert_eq!(r.status, 201, "{}", r.body);
        // Reads need no token; the burst of 3 is now spent, the next /api request is limited.
        let mut limited = None;
        for _ in 0..5 {
            let r = get(a, "/api/agents");
            if r.status == 429 {
                limited = Some(r);
                break;
            }
        }
        let r = limited.expect("rate limit never applied");
        assert_eq!(r.json()["error"], "rate_limited");
        assert!(r.header("retry-after").is_some());
        for _ in 0..20 {
            assert_eq!(get(a, "/health").status, 200);
            assert_eq!(get(a, "/metrics").status, 200);
        }
    });
    s.handle.unwrap().shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_matches_the_router() {
    let s = serve(|_| {}).await;
    let a = s.addr;
    blocking(move || {
        let doc = get(a, "/api/openapi.json").json();
        let paths = doc["paths"].as_object().unwrap();
        let mut documented: Vec<(String, String)> = Vec::new();
        for (p, ops) in paths {
            for m in ops.as_object().unwrap().keys() {
                documented.push((m.clone(), p.clone()));
            }
        }
        let mut routed: Vec<(String, String)> = ROUTES
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        documented.sort();
        routed.sort();
        assert_eq!(documented, routed, "openapi.json and ROUTES disagree");
        // Every listed route is routed: never the router's "no such endpoint" 404 nor a 405.
        for (m, p) in ROUTES {
            let path = p.replace("{id}", "x").replace("{runId}", "y");
            let body = (*m != "get").then_some(&b"{}"[..]);
            let r = http(a, &m.to_ascii_uppercase(), &path, body, &[]);
            assert_ne!(r.status, 405, "{m} {path}: {}", r.body);
            assert!(
                !r.body.contains("no such endpoint"),
                "{m} {path} is not routed: {}",
                r.body
            );
        }
    });
    s.handle.unwrap().shutdown().await;
}
