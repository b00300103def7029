//! MemoryQueue round trips: one `enqueue` + `claim` + `ack` is one element. Measured with a single
//! claimer on a current-thread runtime (the queue's own cost: lock, lanes, lease index, token),
//! and with 8 concurrent claimer tasks on a multi-thread runtime (contention on the one mutex),
//! each task enqueuing, claiming and acking in turn, so a task may claim another task's item.
//! A fresh queue per sample, so the lease index and maps start empty each time.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench queue_memory`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hybridgrid_core::{NewWork, Queue, WorkerId};
use hybridgrid_queue::MemoryQueue;
use std::sync::Arc;
use std::time::{Duration, Instant};

const LEASE: Duration = Duration::from_secs(30);
const CLAIMERS: u64 = 8;
const PAYLOAD: &[u8] = b"cc -c src/module_0042.c -o module_0042.o -O2 -fPIC -Iinclude";

/// `n` round trips by one claimer; returns how many claims came back with nothing.
async fn round_trips(q: &MemoryQueue, worker: &WorkerId, n: u64) -> u64 {
    let mut missed = 0;
    for _ in 0..n {
        q.enqueue(NewWork::new(PAYLOAD)).await.expect("enqueue");
        // Our own item (or an earlier one) is ready: wait is a safety net, never used alone.
        match q
            .claim(worker, LEASE, Duration::from_secs(1))
            .await
            .expect("claim")
        {
            Some(c) => q.ack(&c.token).await.expect("ack"),
            None => missed += 1,
        }
    }
    missed
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_memory");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);

    let single = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    g.bench_function("enqueue_claim_ack/1_claimer", |b| {
        b.to_async(&single).iter_custom(|iters| async move {
            let q = MemoryQueue::new();
            let worker = WorkerId::new("bench-0");
            let start = Instant::now();
            let missed = round_trips(&q, &worker, iters).await;
            let took = start.elapsed();
            assert_eq!(missed, 0, "claims found nothing");
            took
        })
    });

    let multi = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    g.bench_function("enqueue_claim_ack/8_claimers", |b| {
        b.to_async(&multi).iter_custom(|iters| async move {
            let q = Arc::new(MemoryQueue::new());
            let start = Instant::now();
            let tasks: Vec<_> = (0..CLAIMERS)
                .map(|i| {
                    let q = Arc::clone(&q);
                    let n = iters / CLAIMERS + u64::from(i < iters % CLAIMERS);
                    tokio::spawn(async move {
                        round_trips(&q, &WorkerId::new(format!("bench-{i}")), n).await
                    })
                })
                .collect();
            let mut missed = 0;
            for t in tasks {
                missed += t.await.expect("claimer task");
            }
            let took = start.elapsed();
            assert_eq!(missed, 0, "claims found nothing");
            let depths = q.depths().await.expect("depths");
            assert_eq!(depths.in_flight + depths.ready_total(), 0, "work left over");
            took
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
