//! NatsQueue round trips against the real NATS JetStream server at 127.0.0.1:4222 (or
//! `HG_TEST_NATS_URL`). One element is `enqueue` + `claim` + `ack`: a publish with its stream
//! acknowledgement (plus a small core-NATS wake-up publish), one or more `no_wait` pull requests
//! (high, then normal lane) and an acknowledged `+ACK`.
//!
//! Measured with 1 claimer, and with 8 claimers either sharing one `NatsQueue` (one connection) or
//! each with its own (8 connections, as 8 worker processes would be). Each claimer enqueues, claims
//! and acks in turn, so it may claim another's item. Every sample uses a fresh queue (streams and
//! consumers), deleted afterwards outside the timing.
//!
//! After the criterion groups it prints items/s and p50 / p99 latencies of `claim` and of the whole
//! round trip over a fixed 3 s run per row.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench queue_nats`

use criterion::{Criterion, Throughput};
use hybridgrid_core::WorkerId;
use hybridgrid_queue::NatsQueue;
use hybridgrid_testkit::bench::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn url() -> String {
    std::env::var("HG_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".to_owned())
}

async fn open(name: &str) -> NatsQueue {
    NatsQueue::connect(&url(), name)
        .await
        .expect("NATS JetStream at 127.0.0.1:4222 (scripts/services.sh nats)")
}

/// `clients` handles on one fresh queue (the first creates it).
async fn fresh_queue(clients: usize) -> Vec<Arc<NatsQueue>> {
    let name = fresh_name("nats");
    let mut qs = Vec::with_capacity(clients);
    for _ in 0..clients {
        qs.push(Arc::new(open(&name).await));
    }
    qs
}

async fn destroy(handles: &[Arc<NatsQueue>]) {
    handles[0].destroy().await.expect("delete bench streams");
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_nats");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(10);

    let single = runtime(false);
    g.bench_function("enqueue_claim_ack/1_claimer", |b| {
        b.to_async(&single).iter_custom(|iters| async move {
            let qs = fresh_queue(1).await;
            let start = Instant::now();
            round_trips(qs[0].as_ref(), &WorkerId::new("bench-0"), iters, None).await;
            let took = start.elapsed();
            destroy(&qs).await;
            took
        })
    });

    let multi = runtime(true);
    for clients in [1usize, 8] {
        g.bench_function(
            format!("enqueue_claim_ack/8_claimers_{clients}_clients"),
            |b| {
                b.to_async(&multi).iter_custom(|iters| async move {
                    let qs = fresh_queue(clients).await;
                    let took = timed_round_trips(&qs, 8, iters).await;
                    destroy(&qs).await;
                    took
                })
            },
        );
    }
    g.finish();
}

/// Fixed-length runs that print throughput and latency percentiles.
fn latency_report() {
    let rt = runtime(true);
    println!("\nqueue_nats summary (3 s per row; enqueue + claim + ack per item)");
    println!(
        "{:>9} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "claimers", "clients", "items/s", "claim p50", "claim p99", "trip p50", "trip p99"
    );
    for (claimers, clients) in [(1usize, 1usize), (8, 1), (8, 8)] {
        rt.block_on(async {
            let qs = fresh_queue(clients).await;
            concurrent(&qs, claimers, 20, false).await; // warm up
            let start = Instant::now();
            let mut samples = Vec::new();
            while start.elapsed() < Duration::from_secs(3) {
                samples.extend(concurrent(&qs, claimers, 100, true).await);
            }
            let took = start.elapsed();
            let items = samples.len() as f64 / took.as_secs_f64();
            let mut claim: Vec<Duration> = samples.iter().map(|s| s.0).collect();
            let mut trip: Vec<Duration> = samples.iter().map(|s| s.1).collect();
            claim.sort();
            trip.sort();
            println!(
                "{claimers:>9} {clients:>8} {items:>10.0} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?}",
                percentile(&claim, 0.5),
                percentile(&claim, 0.99),
                percentile(&trip, 0.5),
                percentile(&trip, 0.99),
            );
            destroy(&qs).await;
        });
    }
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
    // `cargo test --benches` runs benches in test mode: skip the timed report there.
    if !std::env::args().any(|a| a == "--test" || a == "--list") {
        latency_report();
    }
}
