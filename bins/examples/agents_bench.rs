//! Figures for issue 14's targets, in one process (memory queue, fake Hub on loopback):
//! 1. Hub notification → `activation_started` latency with long-poll (p50, p90);
//! 2. runner overhead per activation, model and MCP excluded (an executor that answers SKIP at once);
//! 3. one runner, `MAX_CONCURRENT_ACTIVATIONS=500`, a model answering after 1 s: activations/s, RSS.
//!
//! `cargo run --release -p hybridgrid-bins --example agents_bench`
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use hybridgrid_agents_coordinator::CoordinatorConfig;
use hybridgrid_agents_defs::Definitions;
use hybridgrid_agents_hub::{FakeHub, HubClient};
use hybridgrid_agents_protocol::{Backends, WorkItem};
use hybridgrid_agents_runner::{
    ActivationContext, AgentExecutor, AgentResult, AgentRun, RunnerConfig,
};
use hybridgrid_core::Priority;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

struct Exec {
    started: mpsc::UnboundedSender<Instant>,
    done: Arc<AtomicU64>,
    model_delay: Duration,
}

#[async_trait]
impl AgentExecutor for Exec {
    async fn run(&self, _ctx: ActivationContext) -> Result<AgentRun, String> {
        let _ = self.started.send(Instant::now());
        if !self.model_delay.is_zero() {
            tokio::time::sleep(self.model_delay).await;
        }
        self.done.fetch_add(1, Ordering::Relaxed);
        Ok(AgentRun {
            result: AgentResult::Skip,
            input_tokens: 0,
            output_tokens: 0,
        })
    }
}

fn rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .unwrap_or(0.0)
        / 1024.0
}

fn pct(v: &mut [f64], p: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

async fn setup(
    max: usize,
    delay: Duration,
) -> (
    FakeHub,
    Backends,
    mpsc::UnboundedReceiver<Instant>,
    Arc<AtomicU64>,
    hybridgrid_agents_runner::Runner,
    tempfile::TempDir,
) {
    let hub = FakeHub::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("agents/a")).unwrap();
    std::fs::write(dir.path().join("agents/a/config.yaml"), "name: a\ntype: native\nbrain: {provider: openai, model: m}\ncapabilities: {grants: [hub:read, hub:write]}\nbehavior: {max_daily_comments: 1000000}\n").unwrap();
    let backends = Backends::memory();
    let client = HubClient::new(&hub.url(), Some(hub.api_key().into())).unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    let done = Arc::new(AtomicU64::new(0));
    let mut cfg = RunnerConfig::for_tests("bench");
    cfg.max_concurrent = max;
    cfg.work_lease = Duration::from_secs(30);
    let runner = hybridgrid_agents_runner::start(
        cfg,
        backends.clone(),
        client,
        Definitions::local(dir.path()),
        Arc::new(Exec {
            started: tx,
            done: done.clone(),
            model_delay: delay,
        }),
    )
    .await
    .unwrap();
    (hub, backends, rx, done, runner, dir)
}

#[tokio::main]
async fn main() {
    // 1. Latency through the coordinator's long-poll.
    {
        let (hub, backends, mut rx, _done, runner, _dir) = setup(1, Duration::ZERO).await;
        let client = HubClient::new(&hub.url(), Some(hub.api_key().into())).unwrap();
        let mut cc = CoordinatorConfig::for_tests("bench-coord");
        cc.long_poll = Duration::from_secs(20);
        cc.poll_interval = Duration::from_secs(3600);
        let coord = hybridgrid_agents_coordinator::start(cc, backends, client, None)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut lat = Vec::new();
        for i in 0..100 {
            let t0 = Instant::now();
            hub.mention("a", "bench", &format!("@a {i}"));
            let started = tokio::time::timeout(Duration::from_secs(10), rx.recv())
                .await
                .unwrap()
                .unwrap();
            lat.push(started.duration_since(t0).as_secs_f64() * 1000.0);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        println!(
            "notification -> activation_started (long-poll, 100 mentions): p50 {:.2} ms, p90 {:.2} ms (target p50 <= 50 ms)",
            pct(&mut lat, 0.5),
            pct(&mut lat, 0.9)
        );
        coord.shutdown().await;
        runner.shutdown().await;
    }
    // 2. Runner overhead per activation (claim, definition, marker, lease, mark read, ack).
    {
        let (_hub, backends, _rx, done, runner, _dir) = setup(1, Duration::ZERO).await;
        let n = 2000u64;
        for i in 0..n {
            backends
                .queues
                .enqueue(&WorkItem::inbox(
                    "a",
                    Priority::Normal,
                    &format!("n{i}"),
                    "p",
                    "mention",
                    "x",
                ))
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        while done.load(Ordering::Relaxed) < n {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let per = t0.elapsed().as_secs_f64() * 1000.0 / n as f64;
        println!(
            "runner overhead per activation (model and MCP excluded, {n} sequential, incl. Hub mark-read over HTTP): {per:.3} ms (target <= 2 ms p50)"
        );
        runner.shutdown().await;
    }
    // 3. Throughput with 500 concurrent activations and a 1 s model.
    {
        let (_hub, backends, _rx, done, runner, _dir) = setup(500, Duration::from_secs(1)).await;
        let n = 5000u64;
        for i in 0..n {
            backends
                .queues
                .enqueue(&WorkItem::inbox(
                    "a",
                    Priority::Normal,
                    &format!("m{i}"),
                    "p",
                    "mention",
                    "x",
                ))
                .await
                .unwrap();
        }
        let t0 = Instant::now();
        let mut peak = 0f64;
        while done.load(Ordering::Relaxed) < n {
            peak = peak.max(rss_mb());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let secs = t0.elapsed().as_secs_f64();
        println!(
            "MAX_CONCURRENT_ACTIVATIONS=500, model 1 s: {:.0} activations/s over {n}, peak RSS {peak:.0} MB (targets >= 450/s, <= 200 MB)",
            n as f64 / secs
        );
        runner.shutdown().await;
    }
}
