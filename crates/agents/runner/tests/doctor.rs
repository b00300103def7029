//! `hg-agents doctor`'s findings, each against the real thing: Redis down (named with its
//! address), Redis without an append-only file, no leader, the Hub unreachable or refusing the
//! key, invalid definitions (file and field), agents in backoff, runner modes that leave work
//! waiting, MCP servers that do not start (their stderr shown), coding-agent CLIs not installed.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::HubClient;
use hybridgrid_agents_protocol::{RunnerMode, WorkItem};
use hybridgrid_agents_runner::doctor::{Check, Doctor, Verdict};
use std::collections::BTreeMap;
use std::time::Duration;
use support::*;

fn doctor(env: &Env, valkey_url: &str, prefix: &str) -> Doctor {
    Doctor {
        valkey_url: valkey_url.to_owned(),
        prefix: prefix.to_owned(),
        hub: env.client.clone(),
        defs: Definitions::local(env.defs_dir.path()),
        modes: vec![RunnerMode::Hybrid],
        env: env.exec_env(),
        credentials: BTreeMap::new(),
    }
}

fn unique(tag: &str) -> String {
    format!("{}:", hybridgrid_testkit::unique_prefix(tag))
}

fn find<'a>(checks: &'a [Check], name: &str) -> &'a Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {checks:#?}"))
}

const HELPER: &str = "name: helper\ntype: native\nbrain: {provider: anthropic, model: fake-model}\ncapabilities:\n  grants: [hub:read, hub:write]\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_is_named_and_the_hub_is_checked_for_reach_and_key() {
    let env = Env::new("doctor_down").await;
    env.agent("helper", HELPER);
    let port = free_port();
    let checks = doctor(&env, &format!("redis://127.0.0.1:{port}"), "")
        .diagnose()
        .await;
    let redis = find(&checks, "Redis reachable");
    assert_eq!(redis.verdict, Verdict::Fail, "{redis:?}");
    assert!(
        redis.detail.contains(&format!("127.0.0.1:{port}")),
        "names the address: {redis:?}"
    );
    assert!(
        checks.iter().all(|c| c.name != "leader present"),
        "Redis checks skipped"
    );
    // The rest still runs.
    assert_eq!(find(&checks, "Hub reachable").verdict, Verdict::Ok);
    assert_eq!(find(&checks, "Hub authorised").verdict, Verdict::Ok);
    assert_eq!(find(&checks, "agent helper: model").verdict, Verdict::Ok);

    // A wrong key: reachable, not authorised, and the error names HUB_API_KEY.
    let mut d = doctor(&env, &redis_url(), &unique("doctor_down"));
    d.hub = HubClient::new(&env.hub.url(), Some("wrong-key".into())).unwrap();
    let checks = d.diagnose().await;
    assert_eq!(find(&checks, "Hub reachable").verdict, Verdict::Ok);
    let auth = find(&checks, "Hub authorised");
    assert_eq!(auth.verdict, Verdict::Fail);
    assert!(
        auth.detail.contains("401") && auth.detail.contains("HUB_API_KEY"),
        "{auth:?}"
    );
    assert!(!auth.detail.contains("wrong-key"), "no secret: {auth:?}");

    // The Hub down: named with its address; authorisation not tried.
    let hub_port = free_port();
    d.hub = HubClient::new(&format!("http://127.0.0.1:{hub_port}"), None).unwrap();
    let checks = d.diagnose().await;
    let hub = find(&checks, "Hub reachable");
    assert_eq!(hub.verdict, Verdict::Fail);
    assert!(
        hub.detail.contains(&format!("127.0.0.1:{hub_port}")),
        "{hub:?}"
    );
    assert!(checks.iter().all(|c| c.name != "Hub authorised"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn persistence_leader_backoff_and_runner_modes() {
    let env = Env::new("doctor_redis").await;
    env.agent("helper", HELPER);
    let dir = tempfile::tempdir().unwrap();
    let volatile = PrivateRedis::start(dir.path(), false);
    let checks = doctor(&env, &volatile.url(), "").diagnose().await;
    assert_eq!(find(&checks, "Redis reachable").verdict, Verdict::Ok);
    let p = find(&checks, "Redis persistence");
    assert_eq!(p.verdict, Verdict::Warn, "{p:?}");
    assert!(
        p.detail.contains("appendonly") && p.detail.contains(&volatile.port.to_string()),
        "{p:?}"
    );
    let leader = find(&checks, "leader present");
    assert_eq!(leader.verdict, Verdict::Fail, "{leader:?}");
    assert!(
        leader.detail.contains("hg-agents coordinator"),
        "{leader:?}"
    );
    drop(volatile);

    let dir2 = tempfile::tempdir().unwrap();
    let durable = PrivateRedis::start(dir2.path(), true);
    let b = hybridgrid_agents_protocol::Backends::connect(&durable.url(), "")
        .await
        .unwrap();
    let lease = b
        .election
        .try_acquire("coord-1", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    for _ in 0..5 {
        b.state.record_failure("sick").await.unwrap();
    }
    b.queues
        .enqueue(&WorkItem::discovery("helper", None))
        .await
        .unwrap();
    let mut d = doctor(&env, &durable.url(), "");
    d.modes = vec![RunnerMode::Notification];
    let checks = d.diagnose().await;
    assert_eq!(find(&checks, "Redis persistence").verdict, Verdict::Ok);
    assert_eq!(find(&checks, "leader present").verdict, Verdict::Ok);
    let backoff = find(&checks, "agents in backoff");
    assert_eq!(backoff.verdict, Verdict::Warn);
    assert!(
        backoff.detail.contains("sick (5 consecutive failures")
            && backoff.detail.contains("clear-backoff"),
        "{backoff:?}"
    );
    let modes = find(&checks, "runner modes match the work");
    assert_eq!(modes.verdict, Verdict::Fail, "{modes:?}");
    assert!(
        modes.detail.contains("1 DISCOVERY item(s) wait"),
        "{modes:?}"
    );
    d.modes = vec![RunnerMode::Notification, RunnerMode::Exploration];
    let checks = d.diagnose().await;
    assert_eq!(
        find(&checks, "runner modes match the work").verdict,
        Verdict::Ok
    );
    b.election.release(&lease).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_executors_credentials_and_mcp_servers() {
    let env = Env::new("doctor_defs").await;
    let mem = env.defs_dir.path().join("memory.json");
    env.agent(
        "helper",
        &format!(
            "{HELPER}  mcp_servers:\n{}    - name: broken\n      command: {}\n      args: [\"-e\", \"console.error('boom: the server cannot start'); process.exit(3)\"]\n",
            memory_server_yaml(&mem),
            node()
        ),
    );
    env.agent(
        "bad",
        "name: bad\ntype: native\nbrain: {provider: anthropic, model: m, temperature: hot}\n",
    );
    env.agent(
        "coder",
        "name: coder\ntype: claude-code\nbrain: {provider: anthropic, model: m}\n",
    );
    env.agent(
        "pair",
        "name: pair\ntype: aider\nbrain: {provider: openai, model: m}\n",
    );
    env.agent(
        "goose",
        "name: goose\ntype: goose\nbrain: {provider: anthropic, model: m}\n",
    );
    env.agent(
        "gh",
        "name: gh\ntype: native\nbrain: {provider: anthropic, model: m}\ncapabilities:\n  grants: [github:read]\n  mcp_servers:\n    - name: github\n      command: /bin/true\n      grant: github:read\n",
    );
    let mut d = doctor(&env, &redis_url(), &unique("doctor_defs"));
    // Runners with node and claude on PATH, but no aider, and no OpenAI key.
    d.env.extra_env.insert(
        "PATH".into(),
        format!(
            "{}:/usr/bin:/bin",
            prefix_dir().join("npm/node_modules/.bin").display()
        ),
    );
    d.env.openai_api_key = None;
    let checks = d.diagnose().await;

    let bad = find(&checks, "agent bad");
    assert_eq!(bad.verdict, Verdict::Fail);
    assert!(
        bad.detail.contains("bad/config.yaml") && bad.detail.contains("brain.temperature"),
        "names file and field: {bad:?}"
    );
    let claude = find(&checks, "agent coder: executor claude-code");
    assert_eq!(claude.verdict, Verdict::Ok, "{claude:?}");
    let aider = find(&checks, "agent pair: executor aider");
    assert_eq!(aider.verdict, Verdict::Fail);
    assert!(
        aider
            .detail
            .starts_with("Executor 'aider' not available: install it with"),
        "{aider:?}"
    );
    let key = find(&checks, "agent pair: model");
    assert_eq!(key.verdict, Verdict::Fail);
    assert!(key.detail.contains("OPENAI_API_KEY"), "{key:?}");
    let goose = find(&checks, "agent goose: executor goose");
    assert_eq!(goose.verdict, Verdict::Fail);
    assert!(
        goose.detail.starts_with("Executor 'goose' not available: "),
        "{goose:?}"
    );
    let cred = find(&checks, "agent gh: credentials");
    assert_eq!(cred.verdict, Verdict::Fail);
    assert!(cred.detail.contains("GITHUB_PAT"), "{cred:?}");

    let memory = find(&checks, "agent helper: MCP server memory");
    assert_eq!(memory.verdict, Verdict::Ok, "{memory:?}");
    assert!(memory.detail.contains("tool(s)"), "{memory:?}");
    let broken = find(&checks, "agent helper: MCP server broken");
    assert_eq!(broken.verdict, Verdict::Fail);
    assert!(
        broken
            .detail
            .contains("MCP server 'broken' failed to start")
            && broken.detail.contains("boom: the server cannot start"),
        "its stderr is shown: {broken:?}"
    );
}
