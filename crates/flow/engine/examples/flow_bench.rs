//! Engine throughput and latency, printed as figures (no assertions):
//! - node executions/s with the in-process no-op executor (so the engine is measured, not process
//!   start-up), every transition durable, for one 1,000-node DAG and for many small runs, on a
//!   SQLite file and on PostgreSQL;
//! - trigger → first native agent start, p50/p90 (a real process per step);
//! - the engine's own cost per step: the time per step of a 200-step chain (each step waits for
//!   the one before: claim, run, commit, in series) and the CPU time of this process per node
//!   execution in the runs above (for PostgreSQL the server's CPU is not in it).
//!
//! `cargo run --release -p hybridgrid-flow-engine --example flow_bench` (PostgreSQL at
//! `HG_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`; `--sqlite-only` skips it).
#![allow(clippy::unwrap_used, missing_docs)]

use async_trait::async_trait;
use hybridgrid_core::{CancellationToken, ExecError, Store, TaskOutput};
use hybridgrid_flow_engine::{
    AgentCall, AgentExecutor, Executors, FlowConfig, FlowEngine, TriggerOptions,
};
use hybridgrid_flow_model::{AgentKind, FlowRunStatus, TriggerSource};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};

async fn engine(store: Arc<dyn Store>, executors: Executors, parallel: usize) -> FlowEngine {
    let config = FlowConfig {
        max_parallel: parallel,
        poll_interval: hybridgrid_core::config::HumanDuration::from_millis(100),
        ..FlowConfig::default()
    };
    let bus = Arc::new(hybridgrid_queue::MemoryEventBus::new(1 << 16));
    FlowEngine::start(config, store, bus, executors)
        .await
        .unwrap()
}

async fn agent(engine: &FlowEngine, name: &str, kind: &str, command: &[&str]) {
    engine
        .create_agent(
            serde_json::from_value(json!({"name": name, "kind": kind, "command": command,
            "capabilities": [{"name": "run"}]}))
            .unwrap(),
        )
        .await
        .unwrap();
}

async fn wait_all(engine: &FlowEngine, runs: &[String]) {
    for r in runs {
        let done = engine.wait_run(r, Duration::from_secs(600)).await.unwrap();
        assert_eq!(done.status, FlowRunStatus::Succeeded, "{done:?}");
    }
}

/// A 1,000-node DAG: a root, 998 middle nodes in layers of ~100 each depending on one node of the
/// layer before, and a join of the last layer.
fn big_dag(name: &str) -> serde_json::Value {
    let mut nodes = vec![json!({"id": "root", "agent": "noop", "action": "run"})];
    let mut prev: Vec<String> = vec!["root".into()];
    let mut made = 1;
    let mut layer = 0;
    while made < 999 {
        let width = 100.min(999 - made);
        let mut cur = Vec::new();
        for i in 0..width {
            let id = format!("l{layer}n{i}");
            let dep = prev[i % prev.len()].clone();
            nodes.push(json!({"id": id, "agent": "noop", "action": "run", "dependsOn": [dep]}));
            cur.push(id);
        }
        made += width;
        prev = cur;
        layer += 1;
    }
    nodes.push(json!({"id": "join", "agent": "noop", "action": "run", "dependsOn": prev}));
    json!({"name": name, "nodes": nodes})
}

/// CPU time (user + system) of this process so far, from `/proc/self/stat` (clock ticks of 10 ms).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = rest
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

fn chain(name: &str, n: usize) -> serde_json::Value {
    let mut nodes = vec![json!({"id": "s0", "agent": "noop", "action": "run"})];
    for i in 1..n {
        nodes.push(
            json!({"id": format!("s{i}"), "agent": "noop", "action": "run",
            "dependsOn": [format!("s{}", i - 1)]}),
        );
    }
    json!({"name": name, "nodes": nodes})
}

async fn throughput(label: &str, store: Arc<dyn Store>) {
    let e = engine(store, Executors::noop(), 64).await;
    agent(&e, "noop", "native", &["noop"]).await;
    let big = e
        .create_workflow(serde_json::from_value(big_dag("big")).unwrap())
        .await
        .unwrap();
    let (t, cpu) = (Instant::now(), cpu_time());
    let run = e
        .trigger(
            &big.id,
            json!({}),
            TriggerSource::Manual,
            TriggerOptions::default(),
        )
        .await
        .unwrap();
    wait_all(&e, &[run.run_id]).await;
    let (dt, cpu) = (t.elapsed(), cpu_time().saturating_sub(cpu));
    println!(
        "{label}: 1,000-node DAG: {:.0} node executions/s ({dt:.2?}; this process's CPU {:.0} µs per node)",
        1000.0 / dt.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / 1000.0
    );

    let small = e
        .create_workflow(
            serde_json::from_value(json!({"name": "small", "nodes": [
                {"id": "a", "agent": "noop", "action": "run"},
                {"id": "b", "agent": "noop", "action": "run", "dependsOn": ["a"]},
                {"id": "c", "agent": "noop", "action": "run", "dependsOn": ["a"]},
                {"id": "d", "agent": "noop", "action": "run", "dependsOn": ["b", "c"]},
                {"id": "e", "agent": "noop", "action": "run", "dependsOn": ["d"]}]}))
            .unwrap(),
        )
        .await
        .unwrap();
    let runs_n = 200;
    // Submitted at once (as webhooks and events arrive), then one after another.
    let (t, cpu) = (Instant::now(), cpu_time());
    let runs = futures::future::join_all((0..runs_n).map(|_| {
        e.trigger(
            &small.id,
            json!({}),
            TriggerSource::Manual,
            TriggerOptions::default(),
        )
    }))
    .await
    .into_iter()
    .map(|r| r.unwrap().run_id)
    .collect::<Vec<_>>();
    wait_all(&e, &runs).await;
    let (dt, cpu) = (t.elapsed(), cpu_time().saturating_sub(cpu));
    println!(
        "{label}: {runs_n} runs x 5 nodes, triggered at once: {:.0} node executions/s, {:.0} runs/s ({dt:.2?}; CPU {:.0} µs per node)",
        (runs_n * 5) as f64 / dt.as_secs_f64(),
        runs_n as f64 / dt.as_secs_f64(),
        cpu.as_secs_f64() * 1e6 / (runs_n * 5) as f64
    );
    let t = Instant::now();
    let mut runs = Vec::new();
    for _ in 0..runs_n {
        runs.push(
            e.trigger(
                &small.id,
                json!({}),
                TriggerSource::Manual,
                TriggerOptions::default(),
            )
            .await
            .unwrap()
            .run_id,
        );
    }
    wait_all(&e, &runs).await;
    let dt = t.elapsed();
    println!(
        "{label}: {runs_n} runs x 5 nodes, triggered one after another: {:.0} node executions/s, {:.0} runs/s ({dt:.2?})",
        (runs_n * 5) as f64 / dt.as_secs_f64(),
        runs_n as f64 / dt.as_secs_f64()
    );
    // The engine's own time per step, in series: each step of the chain starts only once the
    // one before it is committed (claimed in the same transaction), with a no-op executor.
    let n = 200;
    let ch = e
        .create_workflow(serde_json::from_value(chain("chain", n)).unwrap())
        .await
        .unwrap();
    let mut per_step = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let r = e
            .trigger(
                &ch.id,
                json!({}),
                TriggerSource::Manual,
                TriggerOptions::default(),
            )
            .await
            .unwrap();
        wait_all(&e, &[r.run_id]).await;
        per_step.push(t.elapsed() / n as u32);
    }
    per_step.sort();
    println!(
        "{label}: engine overhead per step ({n}-step chain, in series, no-op agent): {:.0?} (median of 3)",
        per_step[1]
    );
    e.shutdown().await;
}

/// Records when the executor is first called for a run, then runs the real native agent.
struct Stamp {
    inner: Arc<dyn AgentExecutor>,
    at: Arc<Mutex<Vec<Instant>>>,
}

#[async_trait]
impl AgentExecutor for Stamp {
    async fn run(
        &self,
        call: AgentCall,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        self.at.lock().push(Instant::now());
        self.inner.run(call, cancel).await
    }
}

async fn latency(label: &str, store: Arc<dyn Store>, work: &std::path::Path) {
    let native = Executors::native(work);
    let inner = native.get(AgentKind::Native).unwrap().clone();
    let at = Arc::new(Mutex::new(Vec::new()));
    let stamped = Executors::new().with(
        AgentKind::Native,
        Arc::new(Stamp {
            inner,
            at: at.clone(),
        }),
    );
    let e = engine(store, stamped, 8).await;
    let script = work.join("agent.sh");
    std::fs::write(&script, "#!/bin/sh\necho '{}'\n").unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    agent(&e, "sh", "native", &[script.to_str().unwrap()]).await;
    let wf = e
        .create_workflow(
            serde_json::from_value(
                json!({"name": "one", "nodes": [{"id": "a", "agent": "sh", "action": "run"}]}),
            )
            .unwrap(),
        )
        .await
        .unwrap();
    let mut to_start = Vec::new();
    let mut to_done = Vec::new();
    for _ in 0..50 {
        at.lock().clear();
        let t = Instant::now();
        let r = e
            .trigger(
                &wf.id,
                json!({}),
                TriggerSource::Manual,
                TriggerOptions::default(),
            )
            .await
            .unwrap();
        wait_all(&e, &[r.run_id]).await;
        to_done.push(t.elapsed());
        to_start.push(at.lock()[0] - t);
    }
    to_start.sort();
    to_done.sort();
    println!(
        "{label}: trigger -> first native agent start: p50 {:.2?}, p90 {:.2?}; trigger -> run SUCCEEDED (shell agent): p50 {:.2?}",
        to_start[to_start.len() / 2],
        to_start[to_start.len() * 9 / 10],
        to_done[to_done.len() / 2]
    );
    e.shutdown().await;
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn Store> = Arc::new(
        hybridgrid_store::SqliteStore::open(dir.path().join("bench.db"))
            .await
            .unwrap(),
    );
    throughput("sqlite file", sqlite).await;
    let sqlite: Arc<dyn Store> = Arc::new(
        hybridgrid_store::SqliteStore::open(dir.path().join("lat.db"))
            .await
            .unwrap(),
    );
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    latency("sqlite file", sqlite, &work).await;
    if std::env::args().any(|a| a == "--sqlite-only") {
        return;
    }
    let url = std::env::var("HG_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let schema = format!("hgbench_{}", uuid::Uuid::new_v4().simple());
    let pool = hybridgrid_store::PoolOptions {
        max_connections: 16,
        ..Default::default()
    };
    let pg: Arc<dyn Store> = Arc::new(
        hybridgrid_store::PostgresStore::connect(&url, Some(&schema), pool)
            .await
            .unwrap(),
    );
    throughput("postgres", pg.clone()).await;
    latency("postgres", pg, &work).await;
    use sqlx::Connection;
    let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP SCHEMA \"{schema}\" CASCADE"
    )))
    .execute(&mut c)
    .await
    .unwrap();
}
