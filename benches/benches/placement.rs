//! Placement throughput: `place` + `complete` with 1,000 simulated workers × 4 slots.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench placement` (figures are placements/s, "elem/s").
//! - `idle`: every slot free before each placement;
//! - `half_busy`: 2 of 4 slots held on every worker, so the scan sees real load;
//! - `excluding_3`: as `idle`, with three excluded workers in the request (a retry);
//! - `mixed_toolchains`: workers spread over 4 toolchains, the request matching one (250 workers).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hybridgrid_core::clock::SystemClock;
use hybridgrid_core::{Capabilities, DiscoverySource, Outcome, Toolchain, WorkerId, WorkerInfo};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker, Placement, PlacementRequest, Registry};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

const WORKERS: usize = 1000;
const SLOTS: u32 = 4;

fn gcc(version: &str) -> Toolchain {
    Toolchain {
        name: "gcc".into(),
        version: version.into(),
        target: "x86_64-linux-gnu".into(),
        binary_hash: String::new(),
    }
}

fn registry(versions: &[&str]) -> Registry {
    let breaker =
        KeyedBreaker::new(BreakerConfig::default(), Arc::new(SystemClock)).expect("valid");
    let r = Registry::new(Arc::new(breaker));
    for i in 0..WORKERS {
        r.upsert_worker(WorkerInfo {
            id: WorkerId::new(format!("worker-{i:04}")),
            addr: format!("10.0.{}.{}:50052", i / 256, i % 256),
            capabilities: Capabilities {
                arch: "x86_64".into(),
                os: "linux".into(),
                cpus: SLOTS,
                slots: SLOTS,
                toolchains: vec![gcc(versions[i % versions.len()])],
                executors: vec!["native".into()],
            },
            protocol_version: 1,
            source: DiscoverySource::Static,
        });
    }
    // Give every worker a measured speed (1–50 ms) so the speed term is exercised.
    let all = PlacementRequest::default();
    for i in 0..WORKERS * SLOTS as usize {
        let p = r.place(&all).expect("a free slot");
        p.complete(Outcome::Success, Duration::from_millis(1 + (i % 50) as u64));
    }
    r
}

fn req(version: &str) -> PlacementRequest {
    PlacementRequest::new("x86_64", "linux").toolchain(gcc(version))
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("placement");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    let r = registry(&["12.2.0"]);
    let q = req("12.2.0");
    let mut d = 0u64;
    g.bench_function("place_complete/1000x4/idle", |b| {
        b.iter(|| {
            d = (d + 1) % 50;
            let p = r.place(black_box(&q)).expect("placed");
            p.complete(Outcome::Success, Duration::from_millis(1 + d));
        })
    });

    let held: Vec<Placement> = (0..WORKERS * 2)
        .map(|_| r.place(&q).expect("placed"))
        .collect();
    g.bench_function("place_complete/1000x4/half_busy", |b| {
        b.iter(|| {
            d = (d + 1) % 50;
            let p = r.place(black_box(&q)).expect("placed");
            p.complete(Outcome::Success, Duration::from_millis(1 + d));
        })
    });
    drop(held);

    let retry = req("12.2.0")
        .exclude(WorkerId::new("worker-0001"))
        .exclude(WorkerId::new("worker-0500"))
        .exclude(WorkerId::new("worker-0999"));
    g.bench_function("place_complete/1000x4/excluding_3", |b| {
        b.iter(|| {
            d = (d + 1) % 50;
            let p = r.place(black_box(&retry)).expect("placed");
            p.complete(Outcome::Success, Duration::from_millis(1 + d));
        })
    });

    let mixed = registry(&["11.4.0", "12.2.0", "13.1.0", "14.2.0"]);
    let q13 = req("13.1.0");
    g.bench_function("place_complete/1000x4/mixed_toolchains", |b| {
        b.iter(|| {
            d = (d + 1) % 50;
            let p = mixed.place(black_box(&q13)).expect("placed");
            p.complete(Outcome::Success, Duration::from_millis(1 + d));
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
