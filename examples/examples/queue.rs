//! A producer and two consumers on the in-memory queue: high priority work is claimed first, a
//! failed item is retried (`nack`), an item that keeps failing ends in the dead letters.
//!
//! Run: `cargo run -p hybridgrid-examples --example queue`

use anyhow::{Context, ensure};
use hybridgrid_core::{NewWork, Priority, Queue, WorkerId};
use hybridgrid_queue::MemoryQueue;
use std::sync::Arc;
use std::time::Duration;

const LEASE: Duration = Duration::from_secs(30);

/// Claims until the queue stays empty for 200 ms; returns what this consumer completed.
async fn consume(queue: Arc<dyn Queue>, name: &str) -> anyhow::Result<Vec<String>> {
    let worker = WorkerId::new(name);
    let mut done = Vec::new();
    while let Some(claim) = queue
        .claim(&worker, LEASE, Duration::from_millis(200))
        .await?
    {
        let job = String::from_utf8_lossy(&claim.payload).into_owned();
        if job.starts_with("flaky") {
            // Fails every time: back on the queue after 10 ms, dead after max_attempts.
            println!("{name}: {job} failed (attempt {})", claim.attempt);
            queue.nack(&claim.token, Duration::from_millis(10)).await?;
            continue;
        }
        println!("{name}: {job} done (attempt {})", claim.attempt);
        queue.ack(&claim.token).await?;
        done.push(job);
    }
    Ok(done)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let queue: Arc<dyn Queue> = Arc::new(MemoryQueue::new());

    // The producer.
    for i in 0..4 {
        queue
            .enqueue(NewWork::new(format!("compile {i}.c")))
            .await?;
    }
    queue
        .enqueue(NewWork::new("link app").priority(Priority::High))
        .await?;
    queue
        .enqueue(NewWork::new("flaky upload").max_attempts(2))
        .await?;
    // The same idempotency key twice is one item.
    let a = queue
        .enqueue(NewWork::new("docs").idempotency_key("docs@v1"))
        .await?;
    let b = queue
        .enqueue(NewWork::new("docs").idempotency_key("docs@v1"))
        .await?;
    ensure!(a.id() == b.id(), "a repeated idempotency key enqueues once");

    // Two consumers.
    let c1 = tokio::spawn(consume(queue.clone(), "consumer-1"));
    let c2 = tokio::spawn(consume(queue.clone(), "consumer-2"));
    let mut done = c1.await.context("consumer-1")??;
    done.extend(c2.await.context("consumer-2")??);
    done.sort();

    let dead = queue.dead_letters(10).await?;
    println!("done: {done:?}");
    println!(
        "dead letters: {:?}",
        dead.iter()
            .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
            .collect::<Vec<_>>()
    );
    ensure!(done.len() == 6, "every good job ran once, got {done:?}");
    ensure!(dead.len() == 1, "the flaky job is dead, got {}", dead.len());
    Ok(())
}
