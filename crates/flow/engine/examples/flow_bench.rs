//! Engine throughput and latency, printed as a table (no assertions):
//! - node executions/s with the in-process no-op executor (so the engine is measured, not process
//!   start-up), every transition committed before it is acknowledged or acted on, for one
//!   1,000-node DAG and for 400 small runs (5 nodes each) triggered at once and one after
//!   another, on a SQLite file and on PostgreSQL;
//! - the engine's own cost per step: the time per step of a 200-step chain (each step waits for
//!   the one before: claim, run, commit, in series) and the CPU time of this process per node
//!   execution (for PostgreSQL the server's CPU is not in it);
//! - trigger → first native agent start, p50/p99 over 100 runs (a real process per step).
//!
//! Each row carries the 1-minute load average when it ended (other work on the machine lowers
//! the figures).
//!
//! `cargo run --release -p hybridgrid-flow-engine --example flow_bench` (PostgreSQL at
//! `HG_TEST_DATABASE_URL`, default `postgres://postgres@127.0.0.1:5432/test`, with
//! `HG_BENCH_PG_WRITERS` write transactions in flight, default 4; `--sqlite-only` skips it,
//! `--postgres-only` skips SQLite).
#![allow(clippy::unwrap_used, missing_docs)]

use async_trait::async_trait;
use hybridgrid_core::{CancellationToken, ExecError, Store, TaskOutput};
use hybridgrid_flow_engine::{
    AgentCall, AgentExecutor, Executors, FlowChange, FlowConfig, FlowEngine, TriggerOptions,
};
use hybridgrid_flow_model::{AgentKind, FlowRunStatus, TriggerSource};
use parking_lot::Mutex;
use serde_json::json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::broadcast;

async fn engine(
    store: Arc<dyn Store>,
    executors: Executors,
    parallel: usize,
    writers: usize,
) -> FlowEngine {
    let config = FlowConfig {
        max_parallel: parallel,
        writers: Some(writers),
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

/// When the last of `n` runs finished here, from the engine's own changes (so the figure is not
/// the time of reading every run back); `None` if changes were lost (the caller then times its
/// read-back instead).
async fn finished(rx: &mut broadcast::Receiver<FlowChange>, n: usize) -> Option<Instant> {
    let mut left = n;
    while left > 0 {
        match rx.recv().await {
            Ok(FlowChange::RunFinished { .. }) => left -= 1,
            Ok(_) => {}
            Err(_) => return None,
        }
    }
    Some(Instant::now())
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

/// `(scenario, node executions/s, runs/s, CPU µs per node, wall time, load average)`.
type Row = (String, f64, Option<f64>, Option<f64>, Duration, String);

/// One store's figures, for the table at the end.
#[derive(Default)]
struct Figures {
    store: String,
    writers: usize,
    rows: Vec<Row>,
    overhead: Option<Duration>,
    /// Trigger -> first native agent start: p50, p99.
    latency: Option<(Duration, Duration)>,
}

/// The 1-minute load average, as `uptime` prints it.
fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}

const RUNS: usize = 400;

async fn throughput(f: &mut Figures, store: Arc<dyn Store>) {
    let label = f.store.clone();
    let e = engine(store, Executors::noop(), 64, f.writers).await;
    agent(&e, "noop", "native", &["noop"]).await;
    let big = e
        .create_workflow(serde_json::from_value(big_dag("big")).unwrap())
        .await
        .unwrap();
    let mut changes = e.watch();
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
    let end = finished(&mut changes, 1).await;
    let cpu = cpu_time().saturating_sub(cpu);
    wait_all(&e, &[run.run_id]).await;
    let dt = end.unwrap_or_else(Instant::now) - t;
    f.rows.push((
        "1,000-node DAG".into(),
        1000.0 / dt.as_secs_f64(),
        None,
        Some(cpu.as_secs_f64() * 1e6 / 1000.0),
        dt,
        load(),
    ));
    eprintln!("{label}: 1,000-node DAG done in {dt:.2?}");

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
    // Submitted at once (as webhooks and events arrive), then one after another (each trigger
    // waits for the one before to be committed; the runs themselves overlap).
    let mut changes = e.watch();
    let (t, cpu) = (Instant::now(), cpu_time());
    let runs = futures::future::join_all((0..RUNS).map(|_| {
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
    let end = finished(&mut changes, RUNS).await;
    let cpu = cpu_time().saturating_sub(cpu);
    wait_all(&e, &runs).await;
    let dt = end.unwrap_or_else(Instant::now) - t;
    f.rows.push((
        format!("{RUNS} runs x 5 nodes, triggered at once"),
        (RUNS * 5) as f64 / dt.as_secs_f64(),
        Some(RUNS as f64 / dt.as_secs_f64()),
        Some(cpu.as_secs_f64() * 1e6 / (RUNS * 5) as f64),
        dt,
        load(),
    ));
    eprintln!("{label}: runs at once done in {dt:.2?}");
    let mut changes = e.watch();
    let (t, cpu) = (Instant::now(), cpu_time());
    let mut runs = Vec::new();
    for _ in 0..RUNS {
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
    let end = finished(&mut changes, RUNS).await;
    let cpu = cpu_time().saturating_sub(cpu);
    wait_all(&e, &runs).await;
    let dt = end.unwrap_or_else(Instant::now) - t;
    f.rows.push((
        format!("{RUNS} runs x 5 nodes, one after another"),
        (RUNS * 5) as f64 / dt.as_secs_f64(),
        Some(RUNS as f64 / dt.as_secs_f64()),
        Some(cpu.as_secs_f64() * 1e6 / (RUNS * 5) as f64),
        dt,
        load(),
    ));
    eprintln!("{label}: runs one after another done in {dt:.2?}");
    // The engine's own time per step, in series: each step of the chain starts only once the
    // one before it is committed (claimed in the same transaction), with a no-op executor.
    let n = 200;
    let ch = e
        .create_workflow(serde_json::from_value(chain("chain", n)).unwrap())
        .await
        .unwrap();
    let mut per_step = Vec::new();
    for _ in 0..3 {
        let mut changes = e.watch();
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
        let end = finished(&mut changes, 1).await;
        wait_all(&e, &[r.run_id]).await;
        per_step.push((end.unwrap_or_else(Instant::now) - t) / n as u32);
    }
    per_step.sort();
    f.overhead = Some(per_step[1]);
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

async fn latency(f: &mut Figures, store: Arc<dyn Store>, work: &std::path::Path) {
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
    let e = engine(store, stamped, 8, f.writers).await;
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
    for _ in 0..100 {
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
        to_start.push(at.lock()[0] - t);
    }
    to_start.sort();
    let p = |q: usize| to_start[(to_start.len() * q / 100).min(to_start.len() - 1)];
    f.latency = Some((p(50), p(99)));
    e.shutdown().await;
}

fn print_table(all: &[Figures]) {
    println!();
    println!(
        "== flow engine, no-op executor (every transition committed before it is acknowledged) =="
    );
    println!(
        "{:<13} {:<38} {:>14} {:>9} {:>12} {:>9} {:>5}",
        "store", "scenario", "node execs/s", "runs/s", "CPU µs/node", "wall", "load"
    );
    for f in all {
        let store = format!("{} w={}", f.store, f.writers);
        for (scenario, rate, runs, cpu, wall, load) in &f.rows {
            println!(
                "{:<13} {:<38} {:>14.0} {:>9} {:>12} {:>9.2?} {:>5}",
                store,
                scenario,
                rate,
                runs.map(|r| format!("{r:.0}"))
                    .unwrap_or_else(|| "-".into()),
                cpu.map(|c| format!("{c:.0}")).unwrap_or_else(|| "-".into()),
                wall,
                load
            );
        }
    }
    println!();
    println!(
        "{:<13} {:>44} {:>36}",
        "store", "engine overhead per step (200-step chain)", "trigger -> 1st native start p50/p99"
    );
    for f in all {
        let store = format!("{} w={}", f.store, f.writers);
        let lat = f
            .latency
            .map(|(a, b)| format!("{a:.2?} / {b:.2?}"))
            .unwrap_or_else(|| "-".into());
        let over = f
            .overhead
            .map(|o| format!("{o:.0?}"))
            .unwrap_or_else(|| "-".into());
        println!("{store:<13} {over:>44} {lat:>36}");
    }
    // Lines for scripts (one per figure).
    println!();
    for f in all {
        for (scenario, rate, ..) in &f.rows {
            println!("{}: {scenario}: {rate:.0} node executions/s", f.store);
        }
        if let Some(o) = f.overhead {
            println!("{}: engine overhead per step: {o:.0?}", f.store);
        }
        if let Some((a, b)) = f.latency {
            println!(
                "{}: trigger -> first native agent start: p50 {a:.2?}, p99 {b:.2?}",
                f.store
            );
        }
    }
}

#[tokio::main]
async fn main() {
    let writers: usize = std::env::var("HG_BENCH_PG_WRITERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(4);
    println!("load average at start: {}", load());
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let mut all = Vec::new();
    if !std::env::args().any(|a| a == "--postgres-only") {
        let mut f = Figures {
            store: "sqlite file".into(),
            writers: 1,
            ..Figures::default()
        };
        let sqlite: Arc<dyn Store> = Arc::new(
            hybridgrid_store::SqliteStore::open(dir.path().join("bench.db"))
                .await
                .unwrap(),
        );
        throughput(&mut f, sqlite).await;
        let sqlite: Arc<dyn Store> = Arc::new(
            hybridgrid_store::SqliteStore::open(dir.path().join("lat.db"))
                .await
                .unwrap(),
        );
        latency(&mut f, sqlite, &work).await;
        all.push(f);
    }
    if !std::env::args().any(|a| a == "--sqlite-only") {
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
        let mut f = Figures {
            store: "postgres".into(),
            writers,
            ..Figures::default()
        };
        throughput(&mut f, pg.clone()).await;
        latency(&mut f, pg, &work).await;
        all.push(f);
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "DROP SCHEMA \"{schema}\" CASCADE"
        )))
        .execute(&mut c)
        .await
        .unwrap();
    }
    print_table(&all);
    println!("load average at end: {}", load());
}
