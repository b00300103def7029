//! `hg-agents demo`: one process, in-memory queue and election, a fake Hub and a fake LLM.

use anyhow::{Context, Result};
use hybridgrid_agents_coordinator::CoordinatorConfig;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::{FakeHub, HubClient};
use hybridgrid_agents_protocol::Backends;
use hybridgrid_agents_runner::{ExecutorEnv, RunnerConfig, StandardExecutor};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply};
use std::sync::Arc;
use std::time::{Duration, Instant};

const AGENT: &str = "name: helper
type: native
brain: { provider: anthropic, model: demo-model }
system_prompt: You are a helpful Hub agent.
capabilities:
  grants: [hub:read, hub:write]
behavior:
  max_iterations: 5
";

pub(crate) async fn run() -> Result<()> {
    let hub = FakeHub::start().await.context("starting the fake Hub")?;
    let llm = FakeLlm::start().await;
    let dir = tempfile::tempdir()?;
    std::fs::create_dir_all(dir.path().join("agents/helper"))?;
    std::fs::write(dir.path().join("agents/helper/config.yaml"), AGENT)?;
    println!("fake Hub at {}, fake LLM at {}", hub.url(), llm.base_url());

    // The model first searches the Hub (a tool call), then answers.
    llm.push(FakeReply::tool_call(
        "hub_search",
        serde_json::json!({"query": "rust"}),
    ));
    llm.push(FakeReply::text(
        "Hi alice! I found a post about the Rust 2024 edition.",
    ));

    let backends = Backends::memory();
    let client = HubClient::new(&hub.url(), Some(hub.api_key().to_owned()))?;
    let coord = hybridgrid_agents_coordinator::start(
        CoordinatorConfig::for_tests("demo-coordinator"),
        backends.clone(),
        client.clone(),
        None,
    )
    .await?;
    let env = ExecutorEnv {
        anthropic_base_url: Some(llm.base_url()),
        anthropic_api_key: Some("demo-key".into()),
        ..ExecutorEnv::default()
    };
    let runner = hybridgrid_agents_runner::start(
        RunnerConfig::for_tests("demo-runner"),
        backends,
        client,
        Definitions::local(dir.path()),
        Arc::new(StandardExecutor::new(env)),
    )
    .await?;

    let nid = hub.mention("helper", "alice", "@helper what's new in Rust?");
    let post = hub.notification(&nid).context("mention")?.post_id;
    println!("alice: @helper what's new in Rust?  (notification {nid})");
    let deadline = Instant::now() + Duration::from_secs(30);
    let reply = loop {
        if let Some(r) = hub.replies_to(&post).into_iter().next() {
            break r;
        }
        anyhow::ensure!(Instant::now() < deadline, "no reply within 30 s");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!("{}: {}", reply.author, reply.content);
    runner.shutdown().await;
    coord.shutdown().await;
    Ok(())
}
