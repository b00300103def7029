//! Processed jobs/s of `RedisQueue` on a real Redis, the figure `scripts/bench-redis-queue.sh`
//! prints beside BullMQ's on the same server.
//!
//! Enqueues `--jobs` items (in `enqueue_many` batches of 1000, timed separately), then starts
//! `--claimers` tasks that each loop on `ack_and_claim` (ack what they processed, claim up to
//! `--batch` more, one round trip) until every job is acked. "Processing" is a no-op, as in the
//! BullMQ run. Prints one line per run.
//!
//! ```sh
//! cargo run --release -p hybridgrid-queue --features redis --example bench_redis_queue -- \
//!     --url redis://127.0.0.1:6379 --jobs 50000 --claimers 8 --batch 50
//! ```

use hybridgrid_core::{LeaseToken, NewWork, Queue, WorkerId};
use hybridgrid_queue::RedisQueue;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

struct Args {
    url: String,
    jobs: usize,
    claimers: usize,
    batch: usize,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        url: "redis://127.0.0.1:6379".into(),
        jobs: 50_000,
        claimers: 1,
        batch: 1,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let num = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value:?}: {e}"))
        };
        match flag.as_str() {
            "--url" => a.url = value.clone(),
            "--jobs" => a.jobs = num()?,
            "--claimers" => a.claimers = num()?.max(1),
            "--batch" => a.batch = num()?.max(1),
            other => return Err(format!("unknown flag {other}")),
        }
    }
    Ok(a)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse()?;
    // One claimer: a current-thread runtime, like the one Node thread BullMQ runs on (no
    // cross-thread wake-ups per reply); more: a thread per core.
    let rt = if args.claimers == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    }
    .enable_all()
    .build()?;
    rt.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let prefix = format!("hgbench:{}:", uuid::Uuid::new_v4().simple());
    let q = Arc::new(RedisQueue::connect(&args.url, prefix.clone()).await?);

    let start = Instant::now();
    let mut left = args.jobs;
    let mut n = 0usize;
    while left > 0 {
        let take = left.min(1000);
        let work = (0..take)
            .map(|i| NewWork::new(format!("job-{}", n + i).into_bytes()))
            .collect();
        q.enqueue_many(work).await?;
        n += take;
        left -= take;
    }
    let enq = start.elapsed();

    let acked = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..args.claimers)
        .map(|c| {
            let (q, acked) = (q.clone(), acked.clone());
            let (jobs, batch) = (args.jobs, args.batch);
            tokio::spawn(async move {
                let worker = WorkerId::new(format!("bench-{c}"));
                let mut done: Vec<LeaseToken> = Vec::new();
                loop {
                    let finished = acked.load(Ordering::Relaxed) >= jobs;
                    let max = if finished { 0 } else { batch };
                    let out = q
                        .ack_and_claim(
                            &done,
                            &worker,
                            max,
                            Duration::from_secs(60),
                            Duration::from_millis(50),
                        )
                        .await?;
                    acked.fetch_add(done.len() - out.lost.len(), Ordering::Relaxed);
                    done = out.claims.into_iter().map(|c| c.token).collect();
                    if done.is_empty() && (finished || acked.load(Ordering::Relaxed) >= jobs) {
                        return Ok::<_, hybridgrid_core::QueueError>(());
                    }
                }
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    let took = start.elapsed();
    let total = acked.load(Ordering::Relaxed);
    println!(
        "RedisQueue  claimers={:<2} batch={:<3} jobs={total}  processed {:>8.0} jobs/s  (enqueue_many {:>8.0} jobs/s)",
        args.claimers,
        args.batch,
        total as f64 / took.as_secs_f64(),
        args.jobs as f64 / enq.as_secs_f64(),
    );
    hybridgrid_testkit::redis::delete_prefix(&args.url, &prefix).await;
    Ok(())
}
