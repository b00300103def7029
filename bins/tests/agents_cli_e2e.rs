//! End-to-end with a real coding-agent CLI as the executor: a mention on the fake Hub → the real
//! `hg-agents coordinator` → a private real Redis → the real `hg-agents runner` → the real
//! claude-code CLI (`@anthropic-ai/claude-code`, installed by `scripts/ci-deps/agents.sh`) → the
//! fake Anthropic provider (Messages API over HTTP, streaming) with scripted tool calls through
//! real MCP servers (the Hub's own rmcp server and `mcp-server-time` from PyPI) → exactly one reply
//! posted to the fake Hub.
//!
//! claude-code tries to reach the internet at start, so the test runs inside a network namespace
//! with loopback only (`unshare -n`); the shared Redis is not reachable there, hence the private one.
#![allow(clippy::unwrap_used)]

mod agents_common;

use agents_common::{PrivateRedis, Proc, dep, in_netns, path_with_deps, wait_for_up_to};
use hybridgrid_agents_hub::FakeHub;
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, WireFormat};
use serde_json::{Value, json};
use std::time::Duration;

/// claude-code (node) starting on a loaded 2-core machine is slow.
const CLI_T: Duration = Duration::from_secs(180);

/// The `tool_result` texts of an Anthropic request.
fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn mention_is_answered_by_claude_code_through_mcp_tools_with_one_reply() {
    if !in_netns("mention_is_answered_by_claude_code_through_mcp_tools_with_one_reply") {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let rdir = dir.path().join("redis");
        std::fs::create_dir_all(&rdir).unwrap();
        let redis = PrivateRedis::start(&rdir);
        let hub = FakeHub::start().await.unwrap();
        let llm = FakeLlm::start().await;
        // claude-code's side requests without tools (titles, quota checks) get a plain answer and
        // leave the script alone.
        llm.set_untooled_reply(Some(FakeReply::text("ok")));
        llm.push(FakeReply::tool_call(
            "mcp__time__get_current_time",
            json!({"timezone": "UTC"}),
        ));
        llm.push(FakeReply::tool_call(
            "mcp__hub__hub_search",
            json!({"query": "teapot"}),
        ));
        llm.push(FakeReply::text("The teapot is on the shelf."));

        let agent = format!(
            "name: coder\ntype: claude-code\nbrain: {{provider: anthropic, model: fake-model}}\n\
             system_prompt: You answer questions on the Hub.\ncapabilities:\n  grants: [hub:read, hub:write]\n  \
             mcp_servers:\n    - hub\n    - name: time\n      command: {}\n      args: [--local-timezone, UTC]\n",
            dep("py-time/bin/mcp-server-time")
        );
        std::fs::create_dir_all(dir.path().join("agents/coder")).unwrap();
        std::fs::write(dir.path().join("agents/coder/config.yaml"), agent).unwrap();
        dep("npm/node_modules/.bin/claude");

        let env: Vec<(String, String)> = [
            ("HUB_URL", hub.url()),
            ("HUB_API_KEY", hub.api_key().to_owned()),
            ("VALKEY_URL", redis.url()),
            ("AGENTS_REDIS_PREFIX", "cli-e2e:".to_owned()),
            ("AGENT_DEFINITIONS_PATH", dir.path().display().to_string()),
            ("ANTHROPIC_BASE_URL", llm.base_url()),
            ("ANTHROPIC_API_KEY", "sk-ant-cli-e2e".to_owned()),
            ("PATH", path_with_deps()),
            ("LONG_POLL_SECONDS", "1".to_owned()),
            ("POLL_INTERVAL", "300ms".to_owned()),
            ("LEADER_LEASE", "2s".to_owned()),
            ("WORK_LEASE", "10s".to_owned()),
            ("ACTIVATION_TIMEOUT", "170".to_owned()),
            ("ADMIN_ADDR", "127.0.0.1:0".to_owned()),
            ("HG_LOG_LEVEL", "debug".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect();
        let coord = Proc::spawn("coord-cli", &["coordinator"], &env, dir.path());
        let runner = Proc::spawn("runner-cli", &["runner", "--mode=notification"], &env, dir.path());
        coord.wait_log("became_leader");
        runner.wait_log("runner_started");

        let nid = hub.mention("coder", "alice", "@coder where is the teapot?");
        let post = hub.notification(&nid).unwrap().post_id;
        wait_for_up_to("the reply", CLI_T, || !hub.replies_to(&post).is_empty()).await;
        runner.wait_log("activation_completed");
        wait_for_up_to("notification read", CLI_T, || {
            hub.notification(&nid).unwrap().read
        })
        .await;
        assert!(coord.log().contains("work_enqueued"), "{}", coord.log());
        assert!(runner.log().contains("activation_duration="), "{}", runner.log());

        let replies = hub.replies_to(&post);
        assert_eq!(replies.len(), 1, "{replies:?}");
        assert_eq!(replies[0].content, "The teapot is on the shelf.");
        assert_eq!(replies[0].author, "coder");
        assert_eq!(llm.remaining(), 0, "the whole script was played");

        // Every scripted turn went to claude-code over the Anthropic Messages API, streamed, with
        // the key the runner injected; the MCP tools were offered under claude's names.
        let tooled: Vec<_> = llm
            .requests()
            .into_iter()
            .filter(|r| !r.tool_names().is_empty())
            .collect();
        assert!(tooled.len() >= 3, "{} tooled requests", tooled.len());
        assert!(tooled.iter().all(|r| r.format == WireFormat::Anthropic
            && r.stream
            && r.api_key.as_deref() == Some("sk-ant-cli-e2e")));
        let names: Vec<String> = tooled.iter().flat_map(|r| r.tool_names()).collect();
        for t in ["mcp__hub__hub_search", "mcp__hub__hub_reply", "mcp__time__get_current_time"] {
            assert!(names.contains(&t.to_owned()), "{t} not offered: {names:?}");
        }
        // The prompt carried the mention; the real servers answered the tool calls: the time
        // server with a UTC time, our Hub MCP server with the Hub's search result.
        let first = tooled[0].body.to_string();
        assert!(first.contains("where is the teapot?"), "{first}");
        let results = tool_results(&tooled.last().unwrap().body);
        assert!(
            results.iter().any(|r| r.contains("\"timezone\"") && r.contains("UTC")),
            "{results:?}"
        );
        assert!(
            results.iter().any(|r| r.contains(&post) && r.contains("teapot")),
            "{results:?}"
        );
        // Nothing else is posted later (the reply is the runner's, once).
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(hub.replies_to(&post).len(), 1);
        assert_eq!(hub.posts_by("coder").len(), 1, "{:?}", hub.posts_by("coder"));
        drop(runner);
        drop(coord);
    });
}
