//! The engine end to end with real native agents (tiny shell scripts), on SQLite and on
//! PostgreSQL (a schema per test; a missing server fails the test).
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hybridgrid_flow_engine::{FlowError, TriggerOptions};
use hybridgrid_flow_model::{
    ApprovalStatus, Decision, DecisionRequest, FlowRunStatus, NodeStatus, TriggerSource,
};
use serde_json::json;
use std::time::Duration;

macro_rules! both {
    ($name:ident) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                super::$name("sqlite").await
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                super::$name("postgres").await
            }
        }
    };
}

both!(fan_out_fan_in);
async fn fan_out_fan_in(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    let wf = workflow(&engine, json!({
        "name": "fan", "nodes": [
            {"id": "src", "agent": "ok", "action": "run", "inputs": {"sev": "{{ context.alert.labels.severity }}"}},
            {"id": "a", "agent": "ok", "action": "run", "dependsOn": ["src"], "inputs": {"from": "{{ nodes.src.output.input.sev }}"}},
            {"id": "b", "agent": "ok", "action": "run", "dependsOn": ["src"]},
            {"id": "c", "agent": "ok", "action": "run", "dependsOn": ["src"]},
            {"id": "join", "agent": "ok", "action": "run",
             "inputs": {"a": "{{ nodes.a.output.input.from }}", "text": "b said {{ nodes.b.output.node }} \"quoted\"", "c": "{{ nodes.c.output }}"}}],
        "edges": [{"from": "a", "to": "join"}, {"from": "b", "to": "join"}, {"from": "c", "to": "join"}]
    })).await;
    let run = trigger(
        &engine,
        &wf,
        json!({"alert": {"labels": {"severity": "critical"}}}),
    )
    .await;
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    assert!(r.nodes.iter().all(|n| n.status == NodeStatus::Succeeded));
    let agent_runs = engine.agent_runs(&run).await.unwrap();
    let join = agent_runs.iter().find(|a| a.node_id == "join").unwrap();
    let out = join.output.as_ref().unwrap();
    assert_eq!(out["input"]["a"], json!("critical"));
    assert_eq!(out["input"]["text"], json!("b said b \"quoted\""));
    assert_eq!(out["input"]["c"]["node"], json!("c"));
    assert!(
        agent_runs
            .iter()
            .find(|a| a.node_id == "src")
            .unwrap()
            .stderr
            .as_deref()
            .unwrap()
            .contains("ok agent running src")
    );
    // Runs of the workflow list it; a second trigger with the same key is the same run.
    assert_eq!(engine.runs(&wf, 10).await.unwrap()[0].id, run);
    let k = TriggerOptions {
        idempotency_key: Some("fp-1".into()),
    };
    let t1 = engine
        .trigger(&wf, json!({}), TriggerSource::Alert, k.clone())
        .await
        .unwrap();
    let t2 = engine
        .trigger(&wf, json!({}), TriggerSource::Alert, k)
        .await
        .unwrap();
    assert!(!t1.duplicate && t2.duplicate && t1.run_id == t2.run_id);
    finished(&engine, &t1.run_id).await;
    engine.shutdown().await;
    env.cleanup().await;
}

both!(faults_fail_the_run_and_skip_downstream);
async fn faults_fail_the_run_and_skip_downstream(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    for (agent, reason) in [
        ("badjson", "invalid output"),
        (
            "exit1",
            "exited with code 1: boom: cannot reach the scanner",
        ),
        ("hang", "timed out"),
    ] {
        let wf = workflow(
            &engine,
            json!({
                "name": format!("fault-{agent}"), "nodes": [
                    {"id": "first", "agent": agent, "action": "run", "timeout": "1s"},
                    {"id": "after", "agent": "ok", "action": "run", "dependsOn": ["first"]},
                    {"id": "later", "agent": "ok", "action": "run", "dependsOn": ["after"]}]
            }),
        )
        .await;
        let run = trigger(&engine, &wf, json!({})).await;
        let r = finished(&engine, &run).await;
        assert_eq!(r.status, FlowRunStatus::Failed, "{agent}: {r:#?}");
        assert!(
            r.error.as_deref().unwrap().contains(reason),
            "{agent}: {:?}",
            r.error
        );
        assert_eq!(node(&r, "first").status, NodeStatus::Failed);
        assert!(node(&r, "first").error.as_deref().unwrap().contains(reason));
        assert_eq!(node(&r, "after").status, NodeStatus::Skipped);
        assert_eq!(node(&r, "later").status, NodeStatus::Skipped);
        assert!(r.nodes.iter().all(|n| n.status != NodeStatus::Running));
    }
    // mayFail: the failure is recorded and the dependents still run.
    let wf = workflow(&engine, json!({
        "name": "tolerant", "nodes": [
            {"id": "first", "agent": "exit1", "action": "run", "mayFail": true, "retry": {"maxAttempts": 2, "backoff": "50ms"}},
            {"id": "after", "agent": "ok", "action": "run", "dependsOn": ["first"]}]
    })).await;
    let r = finished(&engine, &trigger(&engine, &wf, json!({})).await).await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    assert_eq!(node(&r, "first").status, NodeStatus::Failed);
    assert_eq!(node(&r, "first").attempt, 2);
    assert_eq!(node(&r, "after").status, NodeStatus::Succeeded);
    // Retry of a failed run keeps what succeeded and runs the failed node again.
    let wf = workflow(
        &engine,
        json!({
            "name": "retry-me", "nodes": [
                {"id": "one", "agent": "count", "action": "run"},
                {"id": "two", "agent": "badjson", "action": "run", "dependsOn": ["one"]}]
        }),
    )
    .await;
    let failed = finished(&engine, &trigger(&engine, &wf, json!({})).await).await;
    assert_eq!(failed.status, FlowRunStatus::Failed);
    let again = engine.retry(&failed.id).await.unwrap();
    assert_eq!(again.retry_of.as_deref(), Some(failed.id.as_str()));
    let again = finished(&engine, &again.id).await;
    assert_eq!(node(&again, "one").status, NodeStatus::Succeeded);
    assert_eq!(node(&again, "two").status, NodeStatus::Failed);
    assert_eq!(
        env.counted(),
        vec!["one"],
        "the successful node is not run again"
    );
    assert!(matches!(
        engine.retry(&run_ok(&engine).await).await,
        Err(FlowError::Conflict { .. })
    ));
    engine.shutdown().await;
    env.cleanup().await;
}

async fn run_ok(engine: &hybridgrid_flow_engine::FlowEngine) -> String {
    let wf = workflow(
        engine,
        json!({"name": "plain", "nodes": [{"id": "x", "agent": "ok", "action": "run"}]}),
    )
    .await;
    let run = trigger(engine, &wf, json!({})).await;
    finished(engine, &run).await;
    run
}

both!(approvals_wait_resume_and_survive_a_restart);
async fn approvals_wait_resume_and_survive_a_restart(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    let wf = workflow(&engine, json!({
        "name": "gated", "nodes": [
            {"id": "scan", "agent": "count", "action": "run"},
            {"id": "fix", "agent": "count", "action": "run", "dependsOn": ["scan"], "approvalRequired": true, "inputs": {"f": "{{ nodes.scan.output.node }}"}}]
    })).await;
    let run = trigger(&engine, &wf, json!({})).await;
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::WaitingApproval, "{r:#?}");
    assert_eq!(node(&r, "fix").status, NodeStatus::WaitingApproval);
    let waiting = engine
        .approvals(Some(ApprovalStatus::Waiting))
        .await
        .unwrap();
    assert_eq!(waiting.len(), 1);
    assert_eq!(waiting[0].input, json!({"f": "scan"}));
    // Restart: the approval still waits.
    engine.shutdown().await;
    drop(engine);
    let engine = env.engine("e2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        engine.run(&run).await.unwrap().status,
        FlowRunStatus::WaitingApproval
    );
    let a = engine
        .decide(
            &waiting[0].id,
            DecisionRequest {
                decision: Decision::Approved,
                by: "alice".into(),
                notes: Some("ok".into()),
            },
        )
        .await
        .unwrap();
    assert_eq!(a.decided_by.as_deref(), Some("alice"));
    let again = engine
        .decide(
            &waiting[0].id,
            DecisionRequest {
                decision: Decision::Rejected,
                by: "bob".into(),
                notes: None,
            },
        )
        .await;
    assert!(
        matches!(again, Err(FlowError::Conflict { .. })),
        "{again:?}"
    );
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    assert_eq!(env.counted(), vec!["scan", "fix"]);
    // Rejected: the run fails, naming who.
    let run = trigger(&engine, &wf, json!({})).await;
    finished(&engine, &run).await;
    let id = format!("{run}.fix");
    engine
        .decide(
            &id,
            DecisionRequest {
                decision: Decision::Rejected,
                by: "bob".into(),
                notes: Some("too risky".into()),
            },
        )
        .await
        .unwrap();
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Failed);
    assert!(
        r.error
            .as_deref()
            .unwrap()
            .contains("rejected by bob: too risky"),
        "{:?}",
        r.error
    );
    // Timeout to the default decision.
    engine.shutdown().await;
    let mut cfg = env.config("e3");
    cfg.approval_timeout = hybridgrid_core::config::HumanDuration::from_millis(200);
    cfg.approval_default = Decision::Approved;
    let engine = env.engine_with(cfg).await;
    let run = trigger(&engine, &wf, json!({})).await;
    let r = engine
        .wait_run(&run, Duration::from_secs(30))
        .await
        .unwrap();
    let r = if r.status == FlowRunStatus::WaitingApproval {
        hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
            let r = engine.run(&run).await.unwrap();
            r.status.is_terminal().then_some(r)
        })
        .await
        .unwrap()
    } else {
        r
    };
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    let a = engine.approval(&format!("{run}.fix")).await.unwrap();
    assert_eq!(a.decided_by.as_deref(), Some("timeout"));
    engine.shutdown().await;
    env.cleanup().await;
}

both!(kill_and_resume_reruns_only_unfinished_steps);
async fn kill_and_resume_reruns_only_unfinished_steps(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    let wf = workflow(
        &engine,
        json!({
            "name": "long", "nodes": [
                {"id": "one", "agent": "count", "action": "run"},
                {"id": "two", "agent": "slow", "action": "run", "dependsOn": ["one"]},
                {"id": "three", "agent": "count", "action": "run", "dependsOn": ["two"]}]
        }),
    )
    .await;
    let run = trigger(&engine, &wf, json!({})).await;
    // Wait until `two` runs, then stop the engine mid-step.
    hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        let r = engine.run(&run).await.unwrap();
        (node(&r, "two").status == NodeStatus::Running).then_some(())
    })
    .await
    .expect("two never started");
    drop(engine);
    tokio::time::sleep(Duration::from_millis(200)).await;
    // A new engine on the same store (a different id: it waits for the lease to expire).
    let engine = env.engine("e-restarted").await;
    let r = finished(&engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    assert_eq!(
        env.counted(),
        vec!["one", "two", "three"],
        "one ran once, two completed once"
    );
    engine.shutdown().await;
    env.cleanup().await;
}

both!(cancel_stops_a_run);
async fn cancel_stops_a_run(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    let wf = workflow(
        &engine,
        json!({
            "name": "to-cancel", "nodes": [
                {"id": "wait", "agent": "hang", "action": "run", "timeout": "20s"},
                {"id": "after", "agent": "ok", "action": "run", "dependsOn": ["wait"]}]
        }),
    )
    .await;
    let run = trigger(&engine, &wf, json!({})).await;
    hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        (node(&engine.run(&run).await.unwrap(), "wait").status == NodeStatus::Running).then_some(())
    })
    .await
    .unwrap();
    let r = engine.cancel(&run).await.unwrap();
    assert_eq!(r.status, FlowRunStatus::Cancelled);
    assert!(
        r.nodes.iter().all(|n| n.status == NodeStatus::Skipped),
        "{r:#?}"
    );
    assert!(matches!(
        engine.cancel(&run).await,
        Err(FlowError::Conflict { .. })
    ));
    engine.shutdown().await;
    env.cleanup().await;
}

both!(event_trigger_starts_matching_workflow);
async fn event_trigger_starts_matching_workflow(backend: &str) {
    let env = env(backend).await;
    let engine = env.engine("e1").await;
    env.agents(&engine).await;
    let wf = workflow(&engine, json!({
        "name": "on-graph", "trigger": {"type": "event", "pattern": "graph.>"},
        "nodes": [{"id": "x", "agent": "ok", "action": "run", "inputs": {"file": "{{ context.event.payload.path }}"}}]
    })).await;
    // Give the subscription a moment to be made, then publish until a run appears.
    let run = hybridgrid_testkit::eventually(Duration::from_secs(20), || async {
        env.bus
            .publish(
                "graph.file.updated",
                br#"{"path":"src/lib.rs"}"#.to_vec().into(),
            )
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        engine.runs(&wf, 1).await.unwrap().into_iter().next()
    })
    .await
    .expect("no run started by the event");
    let r = finished(&engine, &run.id).await;
    assert_eq!(r.trigger, TriggerSource::Event);
    let ar = engine.agent_runs(&r.id).await.unwrap();
    assert_eq!(
        ar[0].output.as_ref().unwrap()["input"]["file"],
        json!("src/lib.rs")
    );
    engine.shutdown().await;
    env.cleanup().await;
}
