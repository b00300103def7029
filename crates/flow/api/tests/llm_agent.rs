//! LLM agents through the API: `llm: {definitions}` in the config runs agents of kind `llm` as
//! agent-runner definitions, the model reached through `ANTHROPIC_BASE_URL`/`ANTHROPIC_API_KEY`
//! from the injected environment; the model is `testkit::fake_llm` (the real Anthropic wire
//! format over HTTP on loopback). The answer's JSON is the node's output.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_flow_api::{App, Config, LlmConfig};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, WireFormat};
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn llm_agent_answers_through_the_configured_provider() {
    let fake = FakeLlm::start().await;
    fake.push(FakeReply::text("{\"verdict\": \"rotate the key\"}"));
    let dir = tempfile::tempdir().unwrap();
    let defs = dir.path().join("defs");
    std::fs::create_dir_all(defs.join("agents/advisor")).unwrap();
    std::fs::write(
        defs.join("agents/advisor/config.yaml"),
        "name: advisor\ntype: native\nbrain: {provider: anthropic, model: fake-model}\n\
         system_prompt: You advise on leaked secrets.\n",
    )
    .unwrap();
    let mut cfg = Config::load(None, &BTreeMap::new()).unwrap();
    cfg.database_url = format!("sqlite://{}", dir.path().join("flow.db").display());
    cfg.server.addr = "127.0.0.1:0".into();
    cfg.engine.work_dir = Some(dir.path().join("work"));
    std::fs::create_dir_all(dir.path().join("work")).unwrap();
    cfg.llm = Some(LlmConfig {
        definitions: defs,
        hub_url: None,
    });
    let env: BTreeMap<String, String> = [
        ("ANTHROPIC_BASE_URL".to_owned(), fake.base_url()),
        ("ANTHROPIC_API_KEY".to_owned(), "sk-ant-api-test".to_owned()),
    ]
    .into();
    let handle = App::build(cfg, &env).await.unwrap().serve().await.unwrap();
    let a = handle.addr();
    std::thread::spawn(move || {
        let r = post(
            a,
            "/api/agents",
            &json!({"name": "advice", "kind": "llm", "command": ["advisor"],
            "capabilities": [{"name": "advise", "outputSchema": {"type": "object", "required": ["verdict"]}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let r = post(
            a,
            "/api/workflows",
            &json!({"name": "advise-wf", "nodes": [
            {"id": "advise", "agent": "advice", "action": "advise", "inputs": {"finding": "AKIA in config.env"}}]}),
        );
        assert_eq!(r.status, 201, "{}", r.body);
        let wf = r.json()["id"].as_str().unwrap().to_owned();
        let run = post(a, &format!("/api/workflows/{wf}/trigger"), &json!({})).json()["runId"]
            .as_str()
            .unwrap()
            .to_owned();
        let v = wait_for(Duration::from_secs(60), "the llm run to finish", || {
            let v = get(a, &format!("/api/workflows/{wf}/runs/{run}")).json();
            (v["status"] == "SUCCEEDED" || v["status"] == "FAILED").then_some(v)
        });
        assert_eq!(v["status"], "SUCCEEDED", "{v:#}");
        assert_eq!(v["agentRuns"][0]["output"]["verdict"], "rotate the key", "{v:#}");
    })
    .join()
    .unwrap();
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].format, WireFormat::Anthropic);
    assert_eq!(reqs[0].api_key.as_deref(), Some("sk-ant-api-test"));
    assert!(reqs[0].body.to_string().contains("AKIA in config.env"));
    handle.shutdown().await;
}
