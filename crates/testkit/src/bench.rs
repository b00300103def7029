//! The queue round-trip harness shared by the queue benches (`queue_memory`, `queue_redis`,
//! `queue_nats` in `benches/`): one element is one `enqueue` + `claim` + `ack`, run by one or many
//! claimer tasks, with optional latencies; plus the runtimes and percentiles they print.

use hybridgrid_core::{NewWork, Queue, WorkerId};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Lease taken by each claim (long: a bench claimer always acks).
pub const LEASE: Duration = Duration::from_secs(30);
/// A payload the size of a real compile request's summary.
pub const PAYLOAD: &[u8] = b"cc -c src/module_0042.c -o module_0042.o -O2 -fPIC -Iinclude";

/// Latencies of one round trip: (claim, enqueue + claim + ack).
pub type Sample = (Duration, Duration);

/// A name unique to this process and instant: `hgbench_<tag>_<pid>_<nanos>`.
pub fn fresh_name(tag: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("hgbench_{tag}_{}_{nanos}", std::process::id())
}

/// A current-thread runtime (1 claimer) or a multi-thread one (several).
pub fn runtime(multi_thread: bool) -> tokio::runtime::Runtime {
    if multi_thread {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    }
    .expect("tokio runtime")
}

/// `n` round trips by one claimer, recording latencies into `out` when given.
pub async fn round_trips<Q: Queue + ?Sized>(
    q: &Q,
    worker: &WorkerId,
    n: u64,
    mut out: Option<&mut Vec<Sample>>,
) {
    for _ in 0..n {
        let t0 = Instant::now();
        q.enqueue(NewWork::new(PAYLOAD)).await.expect("enqueue");
        let t1 = Instant::now();
        // An item is ready (ours or an earlier one); the wait is only a safety net.
        let c = q
            .claim(worker, LEASE, Duration::from_secs(5))
            .await
            .expect("claim")
            .expect("an item was ready");
        let t2 = Instant::now();
        q.ack(&c.token).await.expect("ack");
        if let Some(out) = out.as_deref_mut() {
            out.push((t2 - t1, t0.elapsed()));
        }
    }
}

/// `claimers` tasks, claimer `i` on handle `i % handles.len()`, `per_task` round trips each;
/// returns the latencies when `record`.
pub async fn concurrent<Q: Queue + ?Sized>(
    handles: &[Arc<Q>],
    claimers: usize,
    per_task: u64,
    record: bool,
) -> Vec<Sample> {
    let tasks: Vec<_> = (0..claimers)
        .map(|i| {
            let q = Arc::clone(&handles[i % handles.len()]);
            tokio::spawn(async move {
                let mut out = Vec::new();
                let worker = WorkerId::new(format!("bench-{i}"));
                round_trips(q.as_ref(), &worker, per_task, record.then_some(&mut out)).await;
                out
            })
        })
        .collect();
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("claimer task"));
    }
    all
}

/// Time for `iters` round trips by `claimers` tasks sharing `handles` (each task does
/// `ceil(iters / claimers)`, the total normalised back to `iters`), for criterion's `iter_custom`.
pub async fn timed_round_trips<Q: Queue + ?Sized>(
    handles: &[Arc<Q>],
    claimers: usize,
    iters: u64,
) -> Duration {
    let claimers = claimers.max(1);
    let per_task = iters.div_ceil(claimers as u64).max(1);
    let start = Instant::now();
    concurrent(handles, claimers, per_task, false).await;
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_task * claimers as u64) as f64)
}

/// The `p` quantile (0.0–1.0) of sorted durations.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles() {
        let d: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(percentile(&d, 0.5), Duration::from_millis(51));
        assert_eq!(percentile(&d, 0.99), Duration::from_millis(99));
        assert_eq!(percentile(&[], 0.5), Duration::ZERO);
    }
}
