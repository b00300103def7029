//! Shared pieces of the runner's integration tests: a fake Hub, a fake LLM, Redis backends under
//! a unique prefix, agent definitions in a temp dir, and the real MCP servers of
//! `scripts/ci-deps/llm.sh`.
#![allow(dead_code, clippy::unwrap_used)]

use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::{FakeHub, HubClient};
use hybridgrid_agents_protocol::{Backends, WorkItem};
use hybridgrid_agents_runner::{ExecutorEnv, Runner, RunnerConfig, StandardExecutor, start};
use hybridgrid_core::Priority;
use hybridgrid_testkit::fake_llm::FakeLlm;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

pub fn prefix_dir() -> PathBuf {
    PathBuf::from(std::env::var("HG_TEST_PREFIX").unwrap_or_else(|_| "/opt/hybridgrid-test".into()))
}

/// A program installed by `scripts/ci-deps/llm.sh`; panics naming the script when missing.
pub fn dep(rel: &str) -> String {
    let p = prefix_dir().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/ci-deps/llm.sh`",
        p.display()
    );
    p.display().to_string()
}

/// `PATH` with node 22 and the npm bins first.
pub fn path_with_deps() -> String {
    format!(
        "{}:{}",
        prefix_dir().join("npm/node_modules/.bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// YAML of the real `@modelcontextprotocol/server-memory` as an MCP server entry.
pub fn memory_server_yaml(file: &std::path::Path) -> String {
    format!(
        "    - name: memory\n      command: {}\n      args: [{}]\n      env: {{MEMORY_FILE_PATH: {}}}\n",
        dep("npm/node_modules/.bin/node"),
        dep("npm/node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
        file.display()
    )
}

pub async fn wait_until<F: Fn() -> bool>(what: &str, timeout: Duration, f: F) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

pub struct Env {
    pub hub: FakeHub,
    pub llm: FakeLlm,
    pub backends: Backends,
    pub defs_dir: tempfile::TempDir,
    pub client: HubClient,
}

pub fn redis_url() -> String {
    hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

impl Env {
    pub async fn new(tag: &str) -> Env {
        let hub = FakeHub::start().await.unwrap();
        let llm = FakeLlm::start().await;
        let prefix = format!("{}:", hybridgrid_testkit::unique_prefix(tag));
        let backends = Backends::connect(&redis_url(), &prefix)
            .await
            .expect("Redis at HG_TEST_REDIS_URL (default 127.0.0.1:6379) must be running");
        let client = HubClient::new(&hub.url(), Some(hub.api_key().to_owned())).unwrap();
        Env {
            hub,
            llm,
            backends,
            defs_dir: tempfile::tempdir().unwrap(),
            client,
        }
    }

    /// Writes `agents/NAME/config.yaml`.
    pub fn agent(&self, name: &str, yaml: &str) {
        let dir = self.defs_dir.path().join("agents").join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.yaml"), yaml).unwrap();
    }

    pub fn exec_env(&self) -> ExecutorEnv {
        ExecutorEnv {
            anthropic_base_url: Some(self.llm.base_url()),
            anthropic_api_key: Some("sk-ant-test".into()),
            openai_base_url: Some(self.llm.openai_base_url()),
            openai_api_key: Some("sk-openai-test".into()),
            extra_env: [("PATH".to_owned(), path_with_deps())].into(),
            mcp_start_timeout: Duration::from_secs(60),
            tool_call_timeout: Duration::from_secs(30),
        }
    }

    pub async fn runner(&self, cfg: RunnerConfig) -> Runner {
        self.runner_with(cfg, self.exec_env()).await
    }

    pub async fn runner_with(&self, cfg: RunnerConfig, env: ExecutorEnv) -> Runner {
        start(
            cfg,
            self.backends.clone(),
            self.client.clone(),
            Definitions::local(self.defs_dir.path()),
            Arc::new(StandardExecutor::new(env)),
        )
        .await
        .unwrap()
    }

    /// A mention on the Hub and its INBOX work item, enqueued as the coordinator would.
    pub async fn mention(&self, agent: &str, text: &str) -> (String, String) {
        let nid = self.hub.mention(agent, "alice", text);
        let n = self.hub.notification(&nid).unwrap();
        let item = WorkItem::inbox(agent, Priority::High, &nid, &n.post_id, "mention", text);
        self.backends.queues.enqueue(&item).await.unwrap();
        (nid, n.post_id)
    }
}
