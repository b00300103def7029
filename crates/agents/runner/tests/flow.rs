//! A mention flows queue → runner → LLM (fake provider, real wire formats) → a tool call through a
//! real MCP server → one reply on the fake Hub; grants, limits, loop stops and backoff.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_agents_runner::RunnerConfig;
use hybridgrid_testkit::fake_llm::{FakeReply, WireFormat};
use serde_json::json;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(60);

fn native(name: &str, provider: &str, grants: &str, extra: &str) -> String {
    format!(
        "name: {name}\ntype: native\nbrain: {{provider: {provider}, model: fake-model}}\nsystem_prompt: You help.\ncapabilities:\n  grants: [{grants}]\n{extra}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_mention_calls_a_real_mcp_server_and_replies_once() {
    let env = Env::new("flow_anthropic").await;
    let mem = env.defs_dir.path().join("memory.json");
    env.agent(
        "helper",
        &native(
            "helper",
            "anthropic",
            "hub:read, hub:write",
            &format!("  mcp_servers:\n{}", memory_server_yaml(&mem)),
        ),
    );
    env.llm.push(FakeReply::tool_call(
        "memory__create_entities",
        json!({"entities": [{"name": "alice", "entityType": "person", "observations": ["asked for help"]}]}),
    ));
    env.llm.push(FakeReply::text("Hello alice, noted."));
    let (nid, post) = env.mention("helper", "@helper please remember me").await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("the reply", T, || env.hub.replies_to(&post).len() == 1).await;
    wait_until("mark read", T, || env.hub.notification(&nid).unwrap().read).await;
    let reqs = env.llm.requests();
    assert!(reqs.iter().all(|r| r.format == WireFormat::Anthropic));
    assert!(
        reqs[0]
            .tool_names()
            .contains(&"memory__create_entities".to_owned()),
        "{:?}",
        reqs[0].tool_names()
    );
    assert!(reqs[0].tool_names().contains(&"hub_reply".to_owned()));
    // The second model call carries the real server's tool result.
    let second = reqs[1].body.to_string();
    assert!(
        second.contains("tool_result") && second.contains("alice"),
        "{second}"
    );
    let stored = std::fs::read_to_string(&mem).unwrap();
    assert!(stored.contains("asked for help"), "{stored}");
    assert_eq!(env.hub.replies_to(&post)[0].content, "Hello alice, noted.");
    assert_eq!(env.hub.replies_to(&post)[0].author, "helper");
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_mention_uses_a_hub_tool_and_replies() {
    let env = Env::new("flow_openai").await;
    env.agent(
        "searcher",
        &native("searcher", "openai", "hub:read, hub:write", ""),
    );
    env.llm
        .push(FakeReply::tool_call("hub_search", json!({"query": "rust"})));
    env.llm.push(FakeReply::text("Found the rust thread."));
    let (_, post) = env
        .mention("searcher", "@searcher anything about rust?")
        .await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("the reply", T, || env.hub.replies_to(&post).len() == 1).await;
    let reqs = env.llm.requests();
    assert!(reqs.iter().all(|r| r.format == WireFormat::OpenAi));
    let second = reqs[1].body.to_string();
    assert!(
        second.contains("\"tool\"") && second.contains("anything about rust"),
        "{second}"
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_grant_hides_and_refuses_write_tools() {
    let env = Env::new("flow_grant").await;
    env.agent("reader", &native("reader", "anthropic", "hub:read", ""));
    env.llm.push(FakeReply::tool_call(
        "hub_reply",
        json!({"post_id": "post-1", "content": "sneaky"}),
    ));
    env.llm.push(FakeReply::text("I would reply, but cannot."));
    let (nid, post) = env.mention("reader", "@reader hi").await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("the activation to finish", T, || {
        env.hub.notification(&nid).unwrap().read
    })
    .await;
    let reqs = env.llm.requests();
    let tools = reqs[0].tool_names();
    assert!(tools.contains(&"hub_search".to_owned()), "{tools:?}");
    assert!(
        !tools.iter().any(|t| t == "hub_reply" || t == "hub_post"),
        "{tools:?}"
    );
    let fed_back = reqs[1].body.to_string();
    // Hidden tools are not routable: the call is refused without reaching the Hub.
    assert!(
        fed_back.contains("\"is_error\":true") && fed_back.contains("hub_reply"),
        "{fed_back}"
    );
    assert!(
        env.hub.replies_to(&post).is_empty(),
        "no reply without hub:write"
    );
    assert!(env.hub.posts_by("reader").is_empty());
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daily_comment_limit_blocks_the_second_reply() {
    let env = Env::new("flow_limit").await;
    env.agent(
        "chatty",
        &native(
            "chatty",
            "anthropic",
            "hub:read, hub:write",
            "behavior:\n  max_daily_comments: 1\n",
        ),
    );
    env.llm.set_fallback(Some(FakeReply::text("a reply")));
    let (n1, p1) = env.mention("chatty", "@chatty one").await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("first reply", T, || env.hub.replies_to(&p1).len() == 1).await;
    wait_until("first read", T, || env.hub.notification(&n1).unwrap().read).await;
    let (n2, p2) = env.mention("chatty", "@chatty two").await;
    wait_until("second activation", T, || {
        env.hub.notification(&n2).unwrap().read
    })
    .await;
    assert!(
        env.hub.replies_to(&p2).is_empty(),
        "the daily limit blocked the post"
    );
    assert_eq!(
        env.backends
            .state
            .daily_count("chatty", "comments")
            .await
            .unwrap(),
        1
    );
    // A refusal is policy, not a failure: no backoff.
    assert_eq!(env.backends.state.backoff("chatty").await.unwrap(), None);
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unhealthy_budget_blocks_posting() {
    let env = Env::new("flow_budget").await;
    env.agent(
        "spender",
        &native("spender", "anthropic", "hub:read, hub:write", ""),
    );
    env.hub.set_budget(false, Some("daily spend over limit"));
    env.llm.set_fallback(Some(FakeReply::text("a reply")));
    let (nid, post) = env.mention("spender", "@spender hi").await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("activation", T, || env.hub.notification(&nid).unwrap().read).await;
    assert!(env.hub.replies_to(&post).is_empty());
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn looping_agents_stop_at_max_iterations_and_on_repeated_calls() {
    let env = Env::new("flow_loop").await;
    env.agent(
        "looper",
        &native(
            "looper",
            "anthropic",
            "hub:read, hub:write",
            "behavior:\n  max_iterations: 3\n",
        ),
    );
    // Different arguments every time: only max_iterations stops it.
    for i in 0..3 {
        env.llm.push(FakeReply::tool_call(
            "hub_search",
            json!({"query": format!("q{i}")}),
        ));
    }
    let (n1, p1) = env.mention("looper", "@looper loop").await;
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    wait_until("first activation", T, || {
        env.hub.notification(&n1).unwrap().read
    })
    .await;
    assert_eq!(
        env.llm.requests().len(),
        3,
        "stopped after max_iterations model calls"
    );
    assert!(env.hub.replies_to(&p1).is_empty());
    // The same call again and again: the repeat detector stops it before max_iterations.
    env.agent(
        "looper",
        &native(
            "looper",
            "anthropic",
            "hub:read, hub:write",
            "behavior:\n  max_iterations: 9\n",
        ),
    );
    env.llm.set_fallback(Some(FakeReply::tool_call(
        "hub_search",
        json!({"query": "same"}),
    )));
    let (n2, p2) = env.mention("looper", "@looper loop again").await;
    wait_until("second activation", T, || {
        env.hub.notification(&n2).unwrap().read
    })
    .await;
    let second = env.llm.requests().len() - 3;
    assert!(
        second < 9,
        "repeat detector stopped it after {second} calls"
    );
    assert!(env.hub.replies_to(&p2).is_empty());
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_failures_put_an_agent_into_backoff_and_success_clears_it() {
    let env = Env::new("flow_backoff").await;
    env.agent(
        "broken",
        &native("broken", "anthropic", "hub:read, hub:write", ""),
    );
    env.llm
        .set_fallback(Some(FakeReply::error(400, "bad request from the fake")));
    let runner = env.runner(RunnerConfig::for_tests("r1")).await;
    for i in 0..5 {
        env.mention("broken", &format!("@broken {i}")).await;
    }
    let state = env.backends.state.clone();
    let deadline = std::time::Instant::now() + T;
    loop {
        let b = state.backoff("broken").await.unwrap();
        if b.as_ref().is_some_and(|b| b.failures >= 5) {
            let b = b.unwrap();
            assert!(b.active(), "{b:?}");
            let until = b.until_ms.unwrap();
            let now = hybridgrid_agents_hub::now_secs() * 1000;
            assert!(
                until > now + 50_000 && until <= now + 61_000,
                "60 s backoff, got {until} vs {now}"
            );
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no backoff: {b:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The notifications stay unread (the coordinator will offer them again after the backoff).
    assert!(env.hub.posts_by("broken").is_empty());
    // Work claimed while the agent is in backoff (queued before it began) is not run.
    env.llm.set_fallback(Some(FakeReply::text("fixed")));
    let (held_back, _) = env.mention("broken", "@broken during the backoff").await;
    let queues = env.backends.queues.clone();
    wait_until("the deferred item to leave the queue", T, || {
        let d = futures_lite_block_any(queues.inbox.depths()).unwrap();
        d.ready_total() == 0 && d.in_flight == 0
    })
    .await;
    assert_eq!(
        env.llm.requests().len(),
        5,
        "no model call during the backoff"
    );
    assert!(
        !env.hub.notification(&held_back).unwrap().read,
        "left unread for later"
    );
    // An operator clears it (`hg-agents clear-backoff`); one more failure, then a success clears it.
    assert!(state.clear_backoff("broken").await.unwrap());
    env.llm.push(FakeReply::error(400, "still broken once"));
    env.mention("broken", "@broken once more").await;
    wait_until("one failure counted", T, || {
        futures_lite_block(state.backoff("broken")).is_some_and(|b| b.failures == 1 && !b.active())
    })
    .await;
    let (_, post) = env.mention("broken", "@broken again").await;
    wait_until("success reply", T, || env.hub.replies_to(&post).len() == 1).await;
    wait_until("backoff cleared", T, || {
        futures_lite_block(state.backoff("broken")).is_none()
    })
    .await;
    runner.shutdown().await;
}

/// Blocks on a future from a sync closure inside the multi-thread test runtime.
fn futures_lite_block_any<T, F: std::future::Future<Output = T>>(f: F) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

fn futures_lite_block<
    F: std::future::Future<
            Output = Result<
                Option<hybridgrid_agents_protocol::BackoffEntry>,
                hybridgrid_agents_protocol::StateError,
            >,
        >,
>(
    f: F,
) -> Option<hybridgrid_agents_protocol::BackoffEntry> {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f)).unwrap()
}
