//! MemoryQueue round trips: one `enqueue` + `claim` + `ack` is one element. Measured with a single
//! claimer on a current-thread runtime (the queue's own cost: lock, lanes, lease index, token),
//! and with 8 concurrent claimer tasks on a multi-thread runtime (contention on the one mutex),
//! each task enqueuing, claiming and acking in turn, so a task may claim another task's item.
//! A fresh queue per sample, so the lease index and maps start empty each time.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench queue_memory`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hybridgrid_core::{Queue, WorkerId};
use hybridgrid_queue::MemoryQueue;
use hybridgrid_testkit::bench::{round_trips, runtime, timed_round_trips};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_memory");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);

    let single = runtime(false);
    g.bench_function("enqueue_claim_ack/1_claimer", |b| {
        b.to_async(&single).iter_custom(|iters| async move {
            let q = MemoryQueue::new();
            let start = Instant::now();
            round_trips(&q, &WorkerId::new("bench-0"), iters, None).await;
            start.elapsed()
        })
    });

    let multi = runtime(true);
    g.bench_function("enqueue_claim_ack/8_claimers", |b| {
        b.to_async(&multi).iter_custom(|iters| async move {
            let q = Arc::new(MemoryQueue::new());
            let took = timed_round_trips(std::slice::from_ref(&q), 8, iters).await;
            let depths = q.depths().await.expect("depths");
            assert_eq!(depths.in_flight + depths.ready_total(), 0, "work left over");
            took
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
