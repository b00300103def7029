//! Simulated farm at scale (issue 10): WORKERS in-process workers × 4 slots whose executor sleeps
//! 100 ms (no process spawn) and returns an object, TASKS compile requests through the real
//! coordinator (gRPC, admission, placement, breakers) and the real worker service. The coordinator
//! runs on its own runtime thread, so its CPU time is read from /proc for that thread alone.
//!
//! Run: cargo bench -p hybridgrid-benches --bench farm_sim [-- WORKERS TASKS]

use hybridgrid_core::{
    CancellationToken, ExecError, Executor, OutputFile, PROTOCOL_VERSION, TaskId, TaskOutput,
    TaskSpec, Toolchain,
};
use hybridgrid_farm_protocol::PREPROCESSED_INPUT;
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_worker::LocalToolchain;
use hybridgrid_transport::pb;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

const TASK_TIME: Duration = Duration::from_millis(100);

/// hg-coord's allocator (bins/hg-coord/main.rs), so the coordinator is measured as it ships. The
/// in-process workers and client share it (one process has one allocator).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct SleepExecutor;

#[async_trait::async_trait]
impl Executor for SleepExecutor {
    fn kind(&self) -> &'static str {
        "sleep"
    }
    async fn execute(
        &self,
        spec: TaskSpec,
        _cancel: CancellationToken,
    ) -> Result<TaskOutput, ExecError> {
        tokio::time::sleep(TASK_TIME).await;
        Ok(TaskOutput {
            exit_code: 0,
            stdout: Default::default(),
            stderr: Default::default(),
            truncated: false,
            files: spec
                .outputs
                .iter()
                .map(|p| OutputFile {
                    path: p.clone(),
                    contents: vec![0x7f, b'E', b'L', b'F'].into(),
                })
                .collect(),
            duration: TASK_TIME,
        })
    }
    fn work_dir_for(&self, task: &TaskId) -> Option<PathBuf> {
        Some(PathBuf::from(format!("/sim/hg-{task}")))
    }
}

fn thread_cpu_ticks(prefix: &str) -> u64 {
    let mut total = 0;
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    for t in tasks.flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.trim().starts_with(prefix) {
            continue;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).unwrap_or_default();
        // Fields after the ")" of the comm: state is field 3; utime 14, stime 15.
        if let Some(rest) = stat.rsplit_once(')').map(|(_, r)| r) {
            let f: Vec<&str> = rest.split_whitespace().collect();
            total += f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
            total += f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        }
    }
    total
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

fn main() {
    let args: Vec<String> = std::env::args().filter(|a| !a.starts_with("--")).collect();
    let workers: usize = args.get(1).and_then(|v| v.parse().ok()).unwrap_or(200);
    let tasks: usize = args.get(2).and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let slots = 4usize;
    let coord_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hg-coord-rt")
        .enable_all()
        .build()
        .expect("coordinator runtime");
    let rest_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sim-rt")
        .enable_all()
        .build()
        .expect("simulation runtime");

    let mut cfg = FarmConfig::default();
    cfg.coordinator.grpc_addr = "127.0.0.1:0".into();
    cfg.coordinator.http_addr = "127.0.0.1:0".into();
    cfg.coordinator.max_concurrent_tasks = (workers * slots * 2) as u32;
    cfg.coordinator.heartbeat_interval = hybridgrid_core::config::HumanDuration::from_secs(2);
    cfg.coordinator.heartbeat_timeout = hybridgrid_core::config::HumanDuration::from_secs(30);
    let coord = coord_rt
        .block_on(hybridgrid_farm_coordinator::start_coordinator(&cfg, vec![]))
        .expect("coordinator");
    let coord_addr = coord.grpc_addr.to_string();
    let toolchain = Toolchain {
        name: "gcc".into(),
        version: "sim".into(),
        target: "sim-target".into(),
        // An exact toolchain needs a binary hash: the coordinator matches nothing without one.
        binary_hash: "sim-binary-hash".into(),
    };

    let handles = rest_rt.block_on(async {
        let mut hs = Vec::new();
        for i in 0..workers {
            let mut wc = cfg.clone();
            wc.worker.id = Some(format!("sim-{i:03}"));
            wc.worker.grpc_addr = "127.0.0.1:0".into();
            wc.worker.http_addr = "127.0.0.1:0".into();
            wc.worker.coordinator = Some(coord_addr.clone());
            wc.worker.max_concurrent_tasks = slots as u32;
            let tc = vec![LocalToolchain {
                toolchain: toolchain.clone(),
                path: "/bin/true".into(),
                image: None,
            }];
            hs.push(
                hybridgrid_farm_worker::start_worker(&wc, Arc::new(SleepExecutor), tc)
                    .await
                    .expect("worker"),
            );
        }
        hs
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    while coord.state.stats().workers.len() < workers {
        assert!(Instant::now() < deadline, "workers did not register");
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "farm_sim: {workers} workers x {slots} slots registered; running {tasks} tasks of {TASK_TIME:?}"
    );

    let (latencies, makespan, cpu_ticks) = rest_rt.block_on(async {
        // One connection per `hgbuild` process in a real build; here enough connections that
        // the coordinator's per-connection stream limit (coordinator.concurrency_per_connection)
        // never caps the tasks in flight below the farm's slots.
        let per_conn = (cfg.coordinator.concurrency_per_connection / 2).max(1);
        let conns = (workers * slots).div_ceil(per_conn).max(8);
        let channels: Vec<_> = {
            let mut v = Vec::new();
            for _ in 0..conns {
                let ch = tonic::transport::Endpoint::from_shared(format!("http://{coord_addr}"))
                    .expect("url")
                    .tcp_nodelay(true)
                    .connect()
                    .await
                    .expect("connect");
                v.push(pb::coordinator_client::CoordinatorClient::new(ch));
            }
            v
        };
        println!(
            "{conns} client connections, at most {} calls each",
            (workers * slots).div_ceil(conns)
        );
        let inflight = Arc::new(tokio::sync::Semaphore::new(workers * slots));
        let cpu0 = thread_cpu_ticks("hg-coord-rt");
        let t0 = Instant::now();
        let mut joins = Vec::with_capacity(tasks);
        for i in 0..tasks {
            let permit = inflight.clone().acquire_owned().await.expect("permit");
            let mut client = channels[i % channels.len()].clone();
            let tc = toolchain.clone();
            joins.push(tokio::spawn(async move {
                let start = Instant::now();
                let spec = pb::TaskSpec {
                    id: format!("t{i}"),
                    command: ["gcc", "-O2", "-c", "x.c", "-o", "x.o"]
                        .map(String::from)
                        .to_vec(),
                    inputs: vec![pb::InputFile {
                        path: PREPROCESSED_INPUT.into(),
                        contents: b"# 0 \"x.c\"\nint x;\n".to_vec(),
                        executable: false,
                    }],
                    timeout_ms: 60_000,
                    ..Default::default()
                };
                let r = client
                    .compile(pb::CompileRequest {
                        protocol_version: PROTOCOL_VERSION,
                        toolchain: Some(tc.into()),
                        spec: Some(spec),
                        client_id: String::new(),
                    })
                    .await;
                drop(permit);
                let ok = matches!(
                    r.map(|r| r.into_inner().result),
                    Ok(Some(pb::compile_response::Result::Completed(_)))
                );
                (ok, start.elapsed())
            }));
        }
        let mut lat = Vec::with_capacity(tasks);
        let mut failed = 0;
        for j in joins {
            let (ok, d) = j.await.expect("task");
            if ok { lat.push(d) } else { failed += 1 }
        }
        let makespan = t0.elapsed();
        let cpu = thread_cpu_ticks("hg-coord-rt") - cpu0;
        assert_eq!(failed, 0, "{failed} tasks did not complete remotely");
        (lat, makespan, cpu)
    });
    let clk_tck = 100.0; // Linux USER_HZ
    let total_task = tasks as f64 * TASK_TIME.as_secs_f64();
    let util = total_task / ((workers * slots) as f64 * makespan.as_secs_f64());
    let mut over: Vec<f64> = latencies
        .iter()
        .map(|d| (d.as_secs_f64() - TASK_TIME.as_secs_f64()) * 1000.0)
        .collect();
    over.sort_by(|a, b| a.total_cmp(b));
    let ideal = total_task / (workers * slots) as f64;
    println!(
        "makespan {:.2}s (ideal {:.2}s), throughput {:.0} tasks/s",
        makespan.as_secs_f64(),
        ideal,
        tasks as f64 / makespan.as_secs_f64()
    );
    println!("utilisation {:.1}%", util * 100.0);
    println!(
        "overhead per task beyond the 100 ms run (client-observed: scheduling + 2 gRPC hops): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        percentile(&over, 0.5),
        percentile(&over, 0.99),
        over.last().copied().unwrap_or(0.0)
    );
    println!(
        "coordinator CPU: {:.2}s total, {:.1} µs per placed task",
        cpu_ticks as f64 / clk_tck,
        cpu_ticks as f64 / clk_tck / tasks as f64 * 1e6
    );
    let stats = coord.state.stats();
    println!(
        "coordinator stats: done {}, fallbacks {}, free slots after {}",
        stats.tasks_done, stats.tasks_failed, stats.free_slots
    );
    rest_rt.block_on(async {
        for h in handles {
            h.shutdown().await;
        }
    });
    coord_rt.block_on(coord.shutdown());
}
