//! Per-call cost of the keyed circuit breaker through the `dyn CircuitBreaker` seam, on the real
//! clock: `try_acquire` + `record` on closed circuits (1 key, and 1,000 keys round-robin), and
//! `try_acquire` alone on a closed and on an open key.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench breaker`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hybridgrid_core::clock::SystemClock;
use hybridgrid_core::{CircuitBreaker, Outcome};
use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker};
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

fn breaker() -> Arc<dyn CircuitBreaker> {
    Arc::new(
        KeyedBreaker::new(BreakerConfig::default(), Arc::new(SystemClock))
            .expect("default config is valid"),
    )
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("breaker");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_secs(1));

    let b = breaker();
    g.bench_function("acquire_record/1_key", |bench| {
        bench.iter(|| {
            b.try_acquire(black_box("worker-0001")).expect("closed");
            b.record(black_box("worker-0001"), Outcome::Success);
        })
    });

    let b = breaker();
    let keys: Vec<String> = (0..1000).map(|i| format!("worker-{i:04}")).collect();
    // One failure in ten keeps every circuit closed (rate 0.1 < 0.5) but exercises the failure path.
    let mut n = 0usize;
    g.bench_function("acquire_record/1000_keys", |bench| {
        bench.iter(|| {
            n = n.wrapping_add(1);
            let key = keys[n % keys.len()].as_str();
            b.try_acquire(black_box(key)).expect("closed");
            // Each key's every tenth call fails.
            let outcome = if (n / keys.len()).is_multiple_of(10) {
                Outcome::Failure
            } else {
                Outcome::Success
            };
            b.record(black_box(key), outcome);
        })
    });

    let b = breaker();
    b.record("worker-0001", Outcome::Success);
    g.bench_function("try_acquire/closed_key", |bench| {
        bench.iter(|| b.try_acquire(black_box("worker-0001")).expect("closed"))
    });

    let b = breaker();
    b.trip("worker-open", "output_mismatch");
    g.bench_function("try_acquire/open_key_refused", |bench| {
        bench.iter(|| black_box(b.try_acquire(black_box("worker-open")).is_err()))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
