//! End-to-end: the real `hg-agents` binaries (coordinator, runners) against real Redis, a fake
//! Hub and a fake LLM in this test process, and a real MCP server; runners SIGKILLed
//! mid-activation, coordinators competing and killed.
#![allow(clippy::unwrap_used)]

mod agents_common;

use agents_common::{PrivateRedis, Proc, dep, wait_for};
use hybridgrid_agents_hub::FakeHub;
use hybridgrid_agents_protocol::{Backends, BackoffEntry};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, WireFormat};
use std::time::Duration;

struct World {
    hub: FakeHub,
    llm: FakeLlm,
    dir: tempfile::TempDir,
    prefix: String,
}

impl World {
    async fn new(tag: &str) -> World {
        let w = World {
            hub: FakeHub::start().await.unwrap(),
            llm: FakeLlm::start().await,
            dir: tempfile::tempdir().unwrap(),
            prefix: format!("{}:", hybridgrid_testkit::unique_prefix(tag)),
        };
        let mem = w.dir.path().join("memory.json");
        let agent = format!(
            "name: helper\ntype: native\nbrain: {{provider: anthropic, model: fake}}\nsystem_prompt: You help.\ncapabilities:\n  grants: [hub:read, hub:write]\n  mcp_servers:\n    - name: memory\n      command: {}\n      args: [{}]\n      env: {{MEMORY_FILE_PATH: {}}}\n",
            dep("npm/node_modules/.bin/node"),
            dep("npm/node_modules/@modelcontextprotocol/server-memory/dist/index.js"),
            mem.display()
        );
        std::fs::create_dir_all(w.dir.path().join("agents/helper")).unwrap();
        std::fs::write(w.dir.path().join("agents/helper/config.yaml"), &agent).unwrap();
        // The same agent on an OpenAI-compatible model.
        let oai = agent
            .replace("name: helper", "name: oai")
            .replace("provider: anthropic", "provider: openai");
        std::fs::create_dir_all(w.dir.path().join("agents/oai")).unwrap();
        std::fs::write(w.dir.path().join("agents/oai/config.yaml"), oai).unwrap();
        w
    }

    fn env(&self) -> Vec<(String, String)> {
        [
            ("HUB_URL", self.hub.url()),
            ("HUB_API_KEY", self.hub.api_key().to_owned()),
            (
                "VALKEY_URL",
                hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379"),
            ),
            ("AGENTS_REDIS_PREFIX", self.prefix.clone()),
            (
                "AGENT_DEFINITIONS_PATH",
                self.dir.path().display().to_string(),
            ),
            ("ANTHROPIC_BASE_URL", self.llm.base_url()),
            ("ANTHROPIC_API_KEY", "sk-ant-e2e".to_owned()),
            ("OPENAI_BASE_URL", self.llm.openai_base_url()),
            ("OPENAI_API_KEY", "sk-openai-e2e".to_owned()),
            ("LONG_POLL_SECONDS", "1".to_owned()),
            ("POLL_INTERVAL", "300ms".to_owned()),
            ("LEADER_LEASE", "2s".to_owned()),
            ("WORK_LEASE", "2s".to_owned()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
            ("HG_LOG_LEVEL", "debug".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }

    fn spawn(&self, name: &str, args: &[&str]) -> Proc {
        Proc::spawn(name, args, &self.env(), self.dir.path())
    }

    fn redis_url(&self) -> String {
        hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    }
}

/// Blocks on a future from a sync closure inside the multi-thread test runtime.
fn block<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mention_flows_hub_coordinator_queue_runner_llm_mcp_reply() {
    let w = World::new("e2e_flow").await;
    w.llm.push(FakeReply::tool_call(
        "memory__create_entities",
        serde_json::json!({"entities": [{"name": "alice", "entityType": "person", "observations": ["said hi"]}]}),
    ));
    w.llm.push(FakeReply::text("Hi alice!"));
    let coord = w.spawn("coord-1", &["coordinator"]);
    coord.wait_log("became_leader");
    let runner = w.spawn("runner-1", &["runner", "--mode=notification"]);
    runner.wait_log("runner_started");
    assert!(
        runner.log().contains("work:queue:high") && !runner.log().contains("discovery:work:queue")
    );
    let nid = w.hub.mention("helper", "alice", "@helper hi");
    let post = w.hub.notification(&nid).unwrap().post_id;
    wait_for("reply", || w.hub.replies_to(&post).len() == 1).await;
    runner.wait_log("activation_completed");
    assert!(
        runner.log().contains("activation_duration="),
        "{}",
        runner.log()
    );
    let second = w.llm.requests()[1].body.to_string();
    assert!(
        second.contains("tool_result") && second.contains("said hi"),
        "{second}"
    );
    wait_for("notification read", || {
        w.hub.notification(&nid).unwrap().read
    })
    .await;
    assert_eq!(w.hub.replies_to(&post)[0].content, "Hi alice!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn runner_sigkilled_mid_activation_work_is_done_once_by_another() {
    let w = World::new("e2e_kill").await;
    // The first model call hangs; the runner holding it is killed.
    w.llm.push_delayed(
        FakeReply::text("from the dead runner"),
        Duration::from_secs(30),
    );
    w.llm.push(FakeReply::text("from the second runner"));
    let _coord = w.spawn("coord-1", &["coordinator"]);
    let mut a = w.spawn("runner-a", &["runner"]);
    a.wait_log("runner_started");
    let nid = w.hub.mention("helper", "alice", "@helper do it");
    let post = w.hub.notification(&nid).unwrap().post_id;
    a.wait_log("activation_started");
    wait_for("the model call", || !w.llm.requests().is_empty()).await;
    a.kill(); // SIGKILL after the claim: the original lost this item
    let b = w.spawn("runner-b", &["runner"]);
    wait_for("reply by the second runner", || {
        w.hub.replies_to(&post).len() == 1
    })
    .await;
    b.wait_log("activation_completed");
    assert!(
        b.log().contains("attempt=2"),
        "redelivered after the lease: {}",
        b.log()
    );
    assert_eq!(w.hub.replies_to(&post)[0].content, "from the second runner");
    // The agent is not blocked by a leftover marker: new work for it runs.
    w.llm.push(FakeReply::text("next"));
    let nid2 = w.hub.mention("helper", "alice", "@helper again");
    let post2 = w.hub.notification(&nid2).unwrap().post_id;
    wait_for("the next reply", || w.hub.replies_to(&post2).len() == 1).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(w.hub.replies_to(&post).len(), 1, "exactly one reply");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_coordinators_one_poller_then_takeover_when_the_leader_dies() {
    let w = World::new("e2e_leader").await;
    let a = w.spawn("coord-a", &["coordinator"]);
    let b = w.spawn("coord-b", &["coordinator"]);
    wait_for("a leader", || {
        a.log().contains("became_leader") || b.log().contains("became_leader")
    })
    .await;
    // Several long-polls pass with both running: the Hub sees one poller.
    wait_for("polls", || w.hub.polls().len() >= 4).await;
    let pollers = w.hub.pollers();
    assert_eq!(pollers.len(), 1, "{pollers:?}");
    let leader = pollers.into_iter().next().unwrap();
    let (mut dead, alive) = if leader == "coord-a" { (a, b) } else { (b, a) };
    let old_token = w.hub.polls().last().unwrap().1;
    dead.kill();
    alive.wait_log("became_leader");
    wait_for("the new leader's polls", || {
        w.hub.pollers().contains(&alive.name)
    })
    .await;
    let new_token = w.hub.polls().last().unwrap().1;
    assert!(
        new_token > old_token,
        "fencing token grew: {old_token} -> {new_token}"
    );
    // Work still flows through the new leader.
    let nid = w.hub.mention("helper", "alice", "@helper after failover");
    let _ = nid;
    wait_for("enqueue by the new leader", || {
        alive.log().contains("work_enqueued")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restart_mid_run_coordinator_and_runner_resume() {
    let w = World::new("e2e_redis").await;
    let rdir = w.dir.path().join("redis");
    std::fs::create_dir_all(&rdir).unwrap();
    let mut redis = PrivateRedis::start(&rdir);
    let mut env = w.env();
    for (k, v) in env.iter_mut() {
        if k == "VALKEY_URL" {
            *v = redis.url();
        }
    }
    w.llm.set_fallback(Some(FakeReply::text("still here")));
    let coord = Proc::spawn("coord-r", &["coordinator"], &env, w.dir.path());
    let runner = Proc::spawn("runner-r", &["runner"], &env, w.dir.path());
    coord.wait_log("became_leader");
    runner.wait_log("runner_started");
    let n1 = w.hub.mention("helper", "alice", "@helper before");
    let p1 = w.hub.notification(&n1).unwrap().post_id;
    wait_for("reply before the restart", || {
        w.hub.replies_to(&p1).len() == 1
    })
    .await;
    redis.restart();
    let n2 = w.hub.mention("helper", "alice", "@helper after");
    let p2 = w.hub.notification(&n2).unwrap().post_id;
    wait_for("reply after the restart", || {
        w.hub.replies_to(&p2).len() == 1
    })
    .await;
    assert_eq!(w.hub.replies_to(&p1).len(), 1);
    drop(coord);
    drop(runner);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_mention_flows_hub_coordinator_queue_runner_llm_mcp_reply() {
    let w = World::new("e2e_openai").await;
    w.llm.push(FakeReply::tool_call(
        "memory__create_entities",
        serde_json::json!({"entities": [{"name": "bob", "entityType": "person", "observations": ["prefers GPT"]}]}),
    ));
    w.llm
        .push(FakeReply::text("Hi bob, from an OpenAI-compatible model."));
    let coord = w.spawn("coord-o", &["coordinator"]);
    coord.wait_log("became_leader");
    let runner = w.spawn("runner-o", &["runner", "--mode=notification"]);
    runner.wait_log("runner_started");
    let nid = w.hub.mention("oai", "bob", "@oai remember me");
    let post = w.hub.notification(&nid).unwrap().post_id;
    wait_for("reply", || w.hub.replies_to(&post).len() == 1).await;
    runner.wait_log("activation_completed");
    let reqs = w.llm.requests();
    assert_eq!(reqs.len(), 2, "tool call, then the final answer");
    assert!(
        reqs.iter().all(|r| r.format == WireFormat::OpenAi),
        "chat completions wire format"
    );
    assert!(
        reqs[0]
            .tool_names()
            .contains(&"memory__create_entities".to_owned()),
        "{:?}",
        reqs[0].tool_names()
    );
    // The real MCP server's result goes back as an OpenAI `tool` message.
    let second = reqs[1].body.to_string();
    assert!(
        second.contains("\"role\":\"tool\"") && second.contains("prefers GPT"),
        "{second}"
    );
    assert_eq!(
        w.hub.replies_to(&post)[0].content,
        "Hi bob, from an OpenAI-compatible model."
    );
    assert_eq!(w.hub.replies_to(&post)[0].author, "oai");
    wait_for("notification read", || {
        w.hub.notification(&nid).unwrap().read
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_agent_backs_off_is_not_enqueued_then_is_retried_and_cleared() {
    let w = World::new("e2e_backoff").await;
    for i in 0..5 {
        w.llm
            .push(FakeReply::error(400, format!("scripted failure {i}")));
    }
    w.llm.set_fallback(Some(FakeReply::text("back on my feet")));
    let mut env = w.env();
    env.push(("AGENT_BACKOFF_BASE".into(), "2s".into()));
    let coord = Proc::spawn("coord-b", &["coordinator"], &env, w.dir.path());
    let runner = Proc::spawn("runner-b", &["runner"], &env, w.dir.path());
    coord.wait_log("became_leader");
    runner.wait_log("runner_started");
    let b = Backends::connect(&w.redis_url(), &w.prefix).await.unwrap();
    let nid = w.hub.mention("helper", "alice", "@helper are you ok?");
    let post = w.hub.notification(&nid).unwrap().post_id;
    let backoff = || -> Option<BackoffEntry> { block(b.state.backoff("helper")).unwrap() };
    // The unread notification is offered again after each failure, until the 5th.
    wait_for("the backoff", || {
        backoff().is_some_and(|e| e.failures == 5 && e.active())
    })
    .await;
    let until = backoff().unwrap().until_ms.unwrap();
    let now = hybridgrid_agents_hub::now_secs() * 1000;
    assert!(
        until > now && until <= now + 3_000,
        "AGENT_BACKOFF_BASE=2s: {until} vs {now}"
    );
    // While it lasts the coordinator skips the agent: no activation, no model call.
    while backoff().is_some_and(|e| e.active()) {
        assert_eq!(
            w.llm.requests().len(),
            5,
            "no activation during the backoff"
        );
        assert!(!w.hub.notification(&nid).unwrap().read);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    coord.wait_log("agent_in_backoff");
    // Then it is retried, succeeds, and the success clears the failures.
    wait_for("the reply after the backoff", || {
        w.hub.replies_to(&post).len() == 1
    })
    .await;
    assert_eq!(w.hub.replies_to(&post)[0].content, "back on my feet");
    wait_for("backoff cleared", || backoff().is_none()).await;
    assert_eq!(w.llm.requests().len(), 6);
    let log = runner.log();
    assert_eq!(log.matches("activation_failed").count(), 5, "{log}");
    assert!(log.contains("consecutive_failures=5"), "{log}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doctor_names_a_down_redis_and_exits_non_zero() {
    let w = World::new("e2e_doctor").await;
    let port = agents_common::free_port();
    let out = std::process::Command::new(agents_common::BIN)
        .arg("doctor")
        .envs(w.env())
        .env("VALKEY_URL", format!("redis://127.0.0.1:{port}"))
        .env("PATH", agents_common::path_with_deps())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("[FAIL] Redis reachable") && stdout.contains(&format!("127.0.0.1:{port}")),
        "{stdout}"
    );
    assert!(stdout.contains("[ ok ] Hub reachable"), "{stdout}");
    assert!(
        stdout.contains("[ ok ] agent helper: MCP server memory"),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("check(s) failed"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
