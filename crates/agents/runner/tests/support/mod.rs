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

/// Node 22 of `scripts/ci-deps/llm.sh`.
pub fn node() -> String {
    dep("npm/node_modules/.bin/node")
}

/// Runs the official `@modelcontextprotocol/inspector --cli` with `args`; returns its exit
/// success and its stdout parsed as JSON (`Value::Null` when it printed none).
pub fn inspector(home: &std::path::Path, args: &[&str]) -> (bool, serde_json::Value, String) {
    let out = std::process::Command::new(node())
        .arg(dep(
            "npm/node_modules/@modelcontextprotocol/inspector/clients/launcher/build/index.js",
        ))
        .arg("--cli")
        .args(args)
        .env("HOME", home)
        .env("PATH", path_with_deps())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    let json = serde_json::from_str(stdout.trim()).unwrap_or(serde_json::Value::Null);
    (out.status.success(), json, format!("{stdout}\n{stderr}"))
}

/// Runs the calling test again inside `unshare -n` (loopback only, brought up) and asserts it
/// passed there. Returns `true` when the caller is already inside and should do the work.
pub fn in_netns(test_name: &str) -> bool {
    use std::process::{Command, Stdio};
    if std::env::var_os("HG_IN_NETNS").is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HG_IN_NETNS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare -n (needs root or user namespaces; apt-get install util-linux iproute2)");
    // Read the output while waiting (a full pipe would stall the inner test); bounded.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(170)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{test_name} inside the network namespace did not finish in 170 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed inside the network namespace ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}

/// A private `redis-server` on a free loopback port, killed on drop.
pub struct PrivateRedis {
    child: std::process::Child,
    pub port: u16,
}

impl PrivateRedis {
    /// Starts one with (`aof`) or without an append-only file, in `dir`.
    pub fn start(dir: &std::path::Path, aof: bool) -> PrivateRedis {
        let port = free_port();
        let child = std::process::Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &port.to_string(),
                "--save",
                "",
                "--appendonly",
                if aof { "yes" } else { "no" },
                "--dir",
            ])
            .arg(dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateRedis { child, port }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A free loopback port (nothing listens on it).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
