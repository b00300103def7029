//! RedisQueue round trips against the real server at 127.0.0.1:6379 (or `HG_TEST_REDIS_URL`): one
//! `enqueue` + `claim` + `ack` is one element, i.e. three `EVALSHA` round trips. Measured with one
//! claimer on a current-thread runtime and with 8 concurrent claimer tasks on a multi-thread
//! runtime (each enqueuing, claiming and acking in turn, so a task may claim another's item).
//! Every sample uses a fresh key prefix, deleted afterwards (outside the timing).
//!
//! After the criterion groups it prints, per claimer count, items/s, Redis calls/s and the p50 /
//! p99 latency of `claim` and of the whole round trip, over a fixed 3 s run.
//! `scripts/bench-redis-queue.sh` measures batch claims side by side with BullMQ instead.
//!
//! Run: `cargo bench -p hybridgrid-benches --bench queue_redis`

use criterion::{Criterion, Throughput};
use hybridgrid_core::WorkerId;
use hybridgrid_queue::RedisQueue;
use hybridgrid_testkit::bench::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn url() -> String {
    std::env::var("HG_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn fresh_queue() -> RedisQueue {
    RedisQueue::connect(&url(), format!("{}:", fresh_name("redis")))
        .await
        .expect("Redis at 127.0.0.1:6379 (scripts/services.sh redis)")
}

async fn delete_keys(prefix: &str) {
    hybridgrid_testkit::redis::delete_prefix(&url(), prefix).await;
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("queue_redis");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    g.warm_up_time(Duration::from_secs(1));
    g.sample_size(20);

    let single = runtime(false);
    g.bench_function("enqueue_claim_ack/1_claimer", |b| {
        b.to_async(&single).iter_custom(|iters| async move {
            let q = fresh_queue().await;
            let start = Instant::now();
            round_trips(&q, &WorkerId::new("bench-0"), iters, None).await;
            let took = start.elapsed();
            delete_keys(q.prefix()).await;
            took
        })
    });

    let multi = runtime(true);
    g.bench_function("enqueue_claim_ack/8_claimers", |b| {
        b.to_async(&multi).iter_custom(|iters| async move {
            let q = Arc::new(fresh_queue().await);
            let took = timed_round_trips(std::slice::from_ref(&q), 8, iters).await;
            delete_keys(q.prefix()).await;
            took
        })
    });
    g.finish();
}

/// Round trips by one claimer until `deadline`, recording latencies.
async fn round_trips_until(q: Arc<RedisQueue>, worker: WorkerId, deadline: Instant) -> Vec<Sample> {
    let mut out = Vec::new();
    while Instant::now() < deadline {
        round_trips(q.as_ref(), &worker, 1, Some(&mut out)).await;
    }
    out
}

/// The same client doing plain `LPUSH` + `RPOP` (one "item" = 2 commands) until `deadline`:
/// what redis-rs itself reaches on this machine, without scripts.
async fn plain_until(key: String, deadline: Instant) -> u64 {
    let client = redis::Client::open(url()).expect("redis url");
    let mut conn = redis::aio::ConnectionManager::new(client)
        .await
        .expect("redis connection");
    let mut n = 0;
    while Instant::now() < deadline {
        let _: () = redis::cmd("LPUSH")
            .arg(&key)
            .arg(PAYLOAD)
            .query_async(&mut conn)
            .await
            .expect("LPUSH");
        let _: Option<Vec<u8>> = redis::cmd("RPOP")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .expect("RPOP");
        n += 1;
    }
    n
}

/// Fixed-length runs (3 s per row, every task busy throughout) that print throughput and latency
/// percentiles; 1 task on a current-thread runtime, 8 on a multi-thread one, as in the groups.
fn latency_report() {
    const RUN: Duration = Duration::from_secs(3);
    println!("\nqueue_redis summary ({RUN:?} per row)");
    println!(
        "{:<34} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "items/s", "calls/s", "claim p50", "claim p99", "trip p50", "trip p99"
    );
    for tasks in [1u64, 8] {
        let rt = runtime(tasks > 1);
        rt.block_on(async {
            let q = Arc::new(fresh_queue().await);
            // Warm up: scripts loaded, connections made.
            concurrent(std::slice::from_ref(&q), tasks as usize, 50, false).await;
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|i| {
                    let worker = WorkerId::new(format!("bench-{i}"));
                    tokio::spawn(round_trips_until(q.clone(), worker, start + RUN))
                })
                .collect();
            let mut samples = Vec::new();
            for h in handles {
                samples.extend(h.await.expect("claimer task"));
            }
            let items = samples.len() as f64 / start.elapsed().as_secs_f64();
            let mut claim: Vec<Duration> = samples.iter().map(|s| s.0).collect();
            let mut trip: Vec<Duration> = samples.iter().map(|s| s.1).collect();
            claim.sort();
            trip.sort();
            println!(
                "{:<34} {items:>9.0} {:>10.0} {:>10.2?} {:>10.2?} {:>10.2?} {:>10.2?}",
                format!("RedisQueue, {tasks} claimer(s), 3 EVALSHA"),
                items * 3.0,
                percentile(&claim, 0.5),
                percentile(&claim, 0.99),
                percentile(&trip, 0.5),
                percentile(&trip, 0.99),
            );
            delete_keys(q.prefix()).await;

            let prefix = format!("{}:", fresh_name("redis"));
            let start = Instant::now();
            let handles: Vec<_> = (0..tasks)
                .map(|i| tokio::spawn(plain_until(format!("{prefix}plain{i}"), start + RUN)))
                .collect();
            let mut n = 0;
            for h in handles {
                n += h.await.expect("plain task");
            }
            let items = n as f64 / start.elapsed().as_secs_f64();
            println!(
                "{:<34} {items:>9.0} {:>10.0}",
                format!("redis-rs LPUSH+RPOP, {tasks} task(s)"),
                items * 2.0
            );
            delete_keys(&prefix).await;
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
