//! Runner modes and priorities against real Redis: a `notification` runner never claims
//! DISCOVERY work, an `exploration` runner never claims INBOX work, a `hybrid` runner takes both;
//! within what a runner takes, high before normal before low.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_agents_protocol::{RunnerMode, WorkItem};
use hybridgrid_agents_runner::RunnerConfig;
use hybridgrid_core::Priority;
use hybridgrid_testkit::fake_llm::FakeReply;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(60);

/// What each model call was for, in order: the mention text, or `DISCOVERY`.
fn served(env: &Env) -> Vec<String> {
    env.llm
        .requests()
        .iter()
        .map(|r| {
            let body = r.body.to_string();
            if body.contains("Explore the Hub") {
                "DISCOVERY".to_owned()
            } else {
                ["high", "normal", "low", "late"]
                    .iter()
                    .find(|p| body.contains(&format!("@helper {p} priority")))
                    .map_or_else(|| format!("unknown: {body}"), |p| (*p).to_owned())
            }
        })
        .collect()
}

async fn inbox(env: &Env, priority: Priority, word: &str) -> String {
    let text = format!("@helper {word} priority");
    let nid = env.hub.mention("helper", "alice", &text);
    let post = env.hub.notification(&nid).unwrap().post_id;
    let item = WorkItem::inbox("helper", priority, &nid, &post, "mention", &text);
    env.backends.queues.enqueue(&item).await.unwrap();
    post
}

fn cfg(id: &str, mode: RunnerMode) -> RunnerConfig {
    RunnerConfig {
        mode,
        ..RunnerConfig::for_tests(id)
    }
}

/// Waits until no item of either queue is ready or leased.
async fn drained(env: &Env, inbox: u64, discovery: u64) {
    let deadline = std::time::Instant::now() + T;
    loop {
        let (i, d) = env.backends.queues.depths().await.unwrap();
        if i.ready_total() == inbox
            && i.in_flight == 0
            && d.ready_total() == discovery
            && d.in_flight == 0
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "queues never settled at INBOX {inbox} / DISCOVERY {discovery}: {i:?} {d:?}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn modes_take_only_their_task_types_and_priorities_are_respected() {
    let env = Env::new("modes").await;
    env.agent(
        "helper",
        "name: helper\ntype: native\nbrain: {provider: anthropic, model: fake-model}\nsystem_prompt: You help.\ncapabilities:\n  grants: [hub:read, hub:write]\nbehavior:\n  can_create_posts: false\n",
    );
    env.llm.set_fallback(Some(FakeReply::text("noted")));
    // Queued before any runner starts, lowest priority first and DISCOVERY first of all.
    env.backends
        .queues
        .enqueue(&WorkItem::discovery("helper", Some("100".into())))
        .await
        .unwrap();
    let low = inbox(&env, Priority::Low, "low").await;
    let normal = inbox(&env, Priority::Normal, "normal").await;
    let high = inbox(&env, Priority::High, "high").await;

    // notification: the three INBOX items, high → normal → low; DISCOVERY stays queued.
    let r = env
        .runner(cfg("r-notification", RunnerMode::Notification))
        .await;
    drained(&env, 0, 1).await;
    assert_eq!(served(&env), ["high", "normal", "low"]);
    for p in [&high, &normal, &low] {
        assert_eq!(env.hub.replies_to(p).len(), 1);
    }
    // It keeps claiming (several claim waits pass) and still leaves DISCOVERY alone.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(served(&env).len(), 3);
    r.shutdown().await;
    drained(&env, 0, 1).await;

    // exploration: DISCOVERY only, even with INBOX work of the highest priority waiting.
    let late = inbox(&env, Priority::High, "late").await;
    let r = env
        .runner(cfg("r-exploration", RunnerMode::Exploration))
        .await;
    drained(&env, 1, 0).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(served(&env), ["high", "normal", "low", "DISCOVERY"]);
    assert!(env.hub.replies_to(&late).is_empty());
    r.shutdown().await;

    // hybrid: both; the INBOX item (high) before the new DISCOVERY item (always low).
    env.backends
        .queues
        .enqueue(&WorkItem::discovery("helper", Some("200".into())))
        .await
        .unwrap();
    let r = env.runner(cfg("r-hybrid", RunnerMode::Hybrid)).await;
    drained(&env, 0, 0).await;
    assert_eq!(
        served(&env),
        ["high", "normal", "low", "DISCOVERY", "late", "DISCOVERY"]
    );
    assert_eq!(env.hub.replies_to(&late).len(), 1);
    r.shutdown().await;
}
