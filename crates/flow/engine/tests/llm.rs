//! `llm` agents: a flow node runs an agent-runner definition through the runners' executor against
//! the fake LLM provider (real Anthropic and OpenAI wire formats over HTTP on loopback); its JSON
//! answer is the node's output and feeds the next node; a non-JSON answer, one that misses the
//! output schema and a model that answers SKIP each fail the node and the run.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_flow_engine::{ExecutorEnv, Executors, FlowEngine, LlmAgents, StandardExecutor};
use hybridgrid_flow_model::{FlowRunStatus, NodeStatus};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, WireFormat};
use serde_json::json;
use std::sync::Arc;

struct Llm {
    env: Env,
    fake: FakeLlm,
    engine: FlowEngine,
    wf: String,
}

/// An engine with native and LLM agents: `triage` (LLM, definition `triager` on `provider`)
/// whose output feeds `notify` (the native `ok` agent).
async fn setup(provider: &str) -> Llm {
    let env = env("sqlite").await;
    let fake = FakeLlm::start().await;
    let defs = env.dir.path().join("defs");
    std::fs::create_dir_all(defs.join("agents/triager")).unwrap();
    std::fs::write(
        defs.join("agents/triager/config.yaml"),
        format!(
            "name: triager\ntype: native\nbrain: {{provider: {provider}, model: fake-model}}\n\
             system_prompt: You triage alerts.\n"
        ),
    )
    .unwrap();
    let work = env.dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let runner_env = ExecutorEnv {
        anthropic_base_url: Some(fake.base_url()),
        anthropic_api_key: Some("sk-ant-test".into()),
        openai_base_url: Some(fake.openai_base_url()),
        openai_api_key: Some("sk-oai-test".into()),
        mcp_start_timeout: std::time::Duration::from_secs(30),
        tool_call_timeout: std::time::Duration::from_secs(30),
        ..ExecutorEnv::default()
    };
    let llm = LlmAgents::new(
        Definitions::local(&defs),
        Arc::new(StandardExecutor::new(runner_env)),
        &work,
    );
    let executors = Executors::native(&work).llm(llm);
    let engine = FlowEngine::start(
        env.config("llm"),
        env.store.clone(),
        env.bus.clone(),
        executors,
    )
    .await
    .unwrap();
    env.agents(&engine).await;
    engine
        .create_agent(
            serde_json::from_value(json!({
                "name": "triage", "kind": "llm", "command": ["triager"],
                "capabilities": [{"name": "classify",
                    "inputSchema": {"type": "object", "required": ["alert"]},
                    "outputSchema": {"type": "object", "required": ["severity"],
                        "properties": {"severity": {"enum": ["low", "high"]}}}}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let wf = workflow(
        &engine,
        json!({"name": "triage-then-notify", "nodes": [
            {"id": "triage", "agent": "triage", "action": "classify",
             "inputs": {"alert": "{{ context.alert }}"}},
            {"id": "notify", "agent": "ok", "action": "run", "dependsOn": ["triage"],
             "inputs": {"severity": "{{ nodes.triage.output.severity }}"}}]}),
    )
    .await;
    Llm {
        env,
        fake,
        engine,
        wf,
    }
}

impl Llm {
    async fn run(&self) -> hybridgrid_flow_model::WorkflowRun {
        let run = trigger(
            &self.engine,
            &self.wf,
            json!({"alert": {"name": "DiskFull", "host": "db-1"}}),
        )
        .await;
        finished(&self.engine, &run).await
    }

    async fn done(self) {
        self.engine.shutdown().await;
        self.env.cleanup().await;
    }
}

fn node(r: &hybridgrid_flow_model::WorkflowRun, id: &str) -> NodeStatus {
    r.nodes.iter().find(|n| n.id == id).unwrap().status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_answer_is_the_output_and_feeds_the_next_node() {
    let t = setup("anthropic").await;
    t.fake.push(FakeReply::text(
        "```json\n{\"severity\": \"high\", \"reason\": \"disk full on a database\"}\n```",
    ));
    let r = t.run().await;
    assert_eq!(r.status, FlowRunStatus::Succeeded, "{r:#?}");
    let runs = t.engine.agent_runs(&r.id).await.unwrap();
    let triage = runs.iter().find(|a| a.node_id == "triage").unwrap();
    assert_eq!(
        triage.output.as_ref().unwrap(),
        &json!({"severity": "high", "reason": "disk full on a database"})
    );
    assert_eq!(triage.exit_code, Some(0));
    assert!(
        triage.stderr.as_deref().unwrap().contains("tokens: "),
        "{triage:?}"
    );
    let notify = runs.iter().find(|a| a.node_id == "notify").unwrap();
    assert_eq!(notify.output.as_ref().unwrap()["input"]["severity"], "high");
    // One model call, in the Anthropic format, with the key, the definition's system prompt,
    // the step's input and the action's output schema.
    let reqs = t.fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].format, WireFormat::Anthropic);
    assert_eq!(reqs[0].api_key.as_deref(), Some("sk-ant-test"));
    let body = reqs[0].body.to_string();
    assert!(body.contains("You triage alerts."), "{body}");
    assert!(body.contains("DiskFull") && body.contains("db-1"), "{body}");
    assert!(body.contains("Action: classify"), "{body}");
    assert!(body.contains("severity"), "{body}");
    t.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_answers_that_are_not_json_miss_the_schema_or_skip_fail_the_run() {
    let t = setup("openai").await;
    for (answer, why) in [
        ("I think this is fine.", "invalid output"),
        (
            "{\"severity\": \"catastrophic\"}",
            "output does not match the output schema of triage/classify",
        ),
        ("SKIP", "the model answered SKIP"),
    ] {
        t.fake.push(FakeReply::text(answer));
        let r = t.run().await;
        assert_eq!(r.status, FlowRunStatus::Failed, "{answer}: {r:#?}");
        assert_eq!(node(&r, "triage"), NodeStatus::Failed, "{answer}");
        assert_eq!(node(&r, "notify"), NodeStatus::Skipped, "{answer}");
        let runs = t.engine.agent_runs(&r.id).await.unwrap();
        let triage = runs.iter().find(|a| a.node_id == "triage").unwrap();
        let error = triage.error.as_deref().unwrap_or("");
        assert!(error.contains(why), "{answer}: {error}");
        assert!(
            r.error
                .as_deref()
                .unwrap_or("")
                .contains("node triage failed"),
            "{r:#?}"
        );
    }
    let reqs = t.fake.requests();
    assert_eq!(reqs.len(), 3);
    assert!(reqs.iter().all(|q| q.format == WireFormat::OpenAi));
    assert!(
        reqs.iter()
            .all(|q| q.api_key.as_deref() == Some("sk-oai-test"))
    );
    t.done().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknown_definition_fails_the_step_naming_it() {
    let t = setup("anthropic").await;
    t.engine
        .create_agent(
            serde_json::from_value(json!({
                "name": "ghost", "kind": "llm", "command": ["no-such-definition"],
                "capabilities": [{"name": "run"}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let wf = workflow(
        &t.engine,
        json!({"name": "ghostly", "nodes": [{"id": "g", "agent": "ghost", "action": "run"}]}),
    )
    .await;
    let run = trigger(&t.engine, &wf, json!({})).await;
    let r = finished(&t.engine, &run).await;
    assert_eq!(r.status, FlowRunStatus::Failed, "{r:#?}");
    let err = r.error.as_deref().unwrap_or("");
    assert!(err.contains("no-such-definition"), "{err}");
    assert!(t.fake.requests().is_empty());
    t.done().await;
}
