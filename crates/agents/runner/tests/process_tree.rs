//! ACTIVATION_TIMEOUT and operator cancel kill the executor's whole process tree; a CLI that is
//! not installed fails naming itself.
#![allow(clippy::unwrap_used)]

mod support;

use hybridgrid_agents_defs::parse_definition;
use hybridgrid_agents_protocol::TaskType;
use hybridgrid_agents_runner::{
    ActivationContext, AgentExecutor, PostGate, RunnerConfig, StandardExecutor,
};
use std::os::unix::fs::PermissionsExt;
use std::sync::Arc;
use std::time::Duration;
use support::*;

const T: Duration = Duration::from_secs(60);

/// A fake `aider` on PATH that starts a grandchild and waits, writing both pids.
fn fake_cli(env: &Env) -> (std::path::PathBuf, hybridgrid_agents_runner::ExecutorEnv) {
    let bin = env.defs_dir.path().join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let pids = env.defs_dir.path().join("pids");
    let script = format!(
        "#!/bin/sh\necho $$ >> {p}\nsleep 300 &\necho $! >> {p}\nwait\n",
        p = pids.display()
    );
    let prog = bin.join("aider");
    std::fs::write(&prog, script).unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut e = env.exec_env();
    e.extra_env.insert(
        "PATH".into(),
        format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        ),
    );
    (pids, e)
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => false,
        Ok(s) => !s
            .rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z'),
    }
}

fn pids(file: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

const CLI_AGENT: &str = "name: coder\ntype: aider\nbrain: {provider: openai, model: fake}\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activation_timeout_kills_the_process_tree() {
    let env = Env::new("ptree_timeout").await;
    env.agent("coder", CLI_AGENT);
    let (pidfile, exec_env) = fake_cli(&env);
    let (nid, post) = env.mention("coder", "@coder build it").await;
    let mut cfg = RunnerConfig::for_tests("r1");
    cfg.activation_timeout = Duration::from_secs(2);
    let runner = env.runner_with(cfg, exec_env).await;
    wait_until("the CLI and its child", T, || pids(&pidfile).len() == 2).await;
    let state = env.backends.state.clone();
    let deadline = std::time::Instant::now() + T;
    loop {
        let b = state.backoff("coder").await.unwrap();
        if b.is_some_and(|b| b.failures == 1) {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the timeout was not recorded as a failure"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    wait_until("the whole tree to die", T, || {
        pids(&pidfile).iter().all(|p| !alive(*p))
    })
    .await;
    assert!(env.hub.replies_to(&post).is_empty());
    assert!(
        !env.hub.notification(&nid).unwrap().read,
        "a failed activation stays unread"
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_cancel_stops_the_activation_and_its_tree() {
    let env = Env::new("ptree_cancel").await;
    env.agent("coder", CLI_AGENT);
    let (pidfile, exec_env) = fake_cli(&env);
    let (nid, post) = env.mention("coder", "@coder build it").await;
    let runner = env
        .runner_with(RunnerConfig::for_tests("r1"), exec_env)
        .await;
    wait_until("the CLI and its child", T, || pids(&pidfile).len() == 2).await;
    let running = env.backends.state.activations().await.unwrap();
    assert_eq!(running.len(), 1, "{running:?}");
    assert_eq!(running[0].agent, "coder");
    assert!(
        env.backends
            .state
            .request_cancel(&running[0].id)
            .await
            .unwrap()
    );
    wait_until("the whole tree to die", T, || {
        pids(&pidfile).iter().all(|p| !alive(*p))
    })
    .await;
    wait_until("cancelled work marked done", T, || {
        env.hub.notification(&nid).unwrap().read
    })
    .await;
    assert!(env.hub.replies_to(&post).is_empty());
    assert!(env.backends.state.activations().await.unwrap().is_empty());
    assert!(
        !env.backends
            .state
            .request_cancel("no-such-id")
            .await
            .unwrap()
    );
    runner.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn goose_is_not_available_and_says_how_to_fix_it() {
    let env = Env::new("ptree_goose").await;
    let def = Arc::new(
        parse_definition(
            "f",
            "name: g\ntype: goose\nbrain: {provider: openai, model: m}\n",
            None,
        )
        .unwrap(),
    );
    let dir = tempfile::tempdir().unwrap();
    let ctx = ActivationContext {
        activation_id: "a1".into(),
        task_type: TaskType::Inbox,
        definition: def.clone(),
        prompt: "hi".into(),
        work_dir: dir.path().to_owned(),
        credentials: Default::default(),
        hub: PostGate::new(env.client.clone(), env.backends.state.clone(), def),
        cancel: Default::default(),
        deadline: Duration::from_secs(10),
    };
    let err = StandardExecutor::new(env.exec_env())
        .run(ctx)
        .await
        .unwrap_err();
    assert!(err.starts_with("Executor 'goose' not available:"), "{err}");
}
