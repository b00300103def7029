//! `NatsQueue` across a NATS server crash: a private `nats-server -js` (own port, own store) is
//! killed with SIGKILL and restarted, twice, while producers enqueue and consumers claim and ack.
//! The same `NatsQueue` handles carry on (no process restart); nothing that was enqueued
//! successfully is lost.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

mod nats_common;

use hybridgrid_core::{NewWork, Queue, QueueError, WorkId, WorkerId};
use hybridgrid_queue::{NatsQueue, NatsQueueConfig};
use hybridgrid_testkit::eventually;
use nats_common::PrivateServer;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ITEMS: usize = 300;
const PRODUCERS: usize = 2;
const CONSUMERS: usize = 3;

#[derive(Default)]
struct Ledger {
    /// Payload -> the id its confirmed enqueue returned.
    enqueued: HashMap<String, WorkId>,
    /// Payload -> claims (deliveries to a consumer).
    claimed: HashMap<String, usize>,
    /// Payload -> confirmed acks.
    acked: HashMap<String, usize>,
    /// Enqueues that failed (the item may or may not have been stored).
    failed_enqueues: usize,
    /// Acks that failed or found the lease lost (the item comes back).
    failed_acks: usize,
}

type Shared = Arc<parking_lot::Mutex<Ledger>>;

async fn connect(url: &str, config: &NatsQueueConfig) -> NatsQueue {
    eventually(Duration::from_secs(15), || async {
        NatsQueue::connect_with(url, "restart", config.clone())
            .await
            .ok()
    })
    .await
    .expect("the private nats-server accepts JetStream requests")
}

async fn produce(q: NatsQueue, ledger: Shared, n: usize) {
    for i in (n..ITEMS).step_by(PRODUCERS) {
        let payload = format!("item-{i}");
        let mut work = NewWork::new(payload.clone().into_bytes());
        if i % 2 == 0 {
            work = work.idempotency_key(payload.clone());
        }
        // Paced, so that the crashes land in the middle of the production.
        tokio::time::sleep(Duration::from_millis(20)).await;
        loop {
            match q.enqueue(work.clone()).await {
                Ok(e) => {
                    let mut l = ledger.lock();
                    if let Some(before) = l.enqueued.insert(payload.clone(), e.id().clone()) {
                        panic!("{payload} confirmed twice ({before}, {e:?})");
                    }
                    break;
                }
                Err(e) => {
                    assert!(e.retry().is_retryable(), "{payload}: {e}");
                    ledger.lock().failed_enqueues += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

async fn consume(q: NatsQueue, ledger: Shared, n: usize, done: Arc<AtomicUsize>) {
    let worker = WorkerId::new(format!("consumer-{n}"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while done.load(Ordering::SeqCst) < ITEMS && Instant::now() < deadline {
        let claim = match q
            .claim(&worker, Duration::from_secs(20), Duration::from_millis(300))
            .await
        {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                assert!(e.retry().is_retryable(), "claim: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let payload = String::from_utf8_lossy(&claim.payload).into_owned();
        {
            let mut l = ledger.lock();
            let count = l.claimed.entry(payload.clone()).or_default();
            *count += 1;
            if *count == 1 {
                done.fetch_add(1, Ordering::SeqCst);
            }
        }
        loop {
            match q.ack(&claim.token).await {
                Ok(()) => {
                    *ledger.lock().acked.entry(payload.clone()).or_default() += 1;
                    break;
                }
                // The item comes back, unless the ack that failed had reached the server.
                Err(QueueError::LeaseLost { .. }) => {
                    ledger.lock().failed_acks += 1;
                    break;
                }
                Err(e) => {
                    assert!(e.retry().is_retryable(), "ack: {e}");
                    ledger.lock().failed_acks += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_killed_and_restarted_under_load_loses_nothing() {
    let mut server = PrivateServer::start();
    let url = server.url();
    let config = NatsQueueConfig {
        ack_wait: Duration::from_secs(2),
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    };
    let ledger: Shared = Arc::default();
    let done = Arc::new(AtomicUsize::new(0));
    let mut producers = Vec::new();
    for n in 0..PRODUCERS {
        let q = connect(&url, &config).await;
        producers.push(tokio::spawn(produce(q, Arc::clone(&ledger), n)));
    }
    let mut consumers = Vec::new();
    for n in 0..CONSUMERS {
        let q = connect(&url, &config).await;
        consumers.push(tokio::spawn(consume(
            q,
            Arc::clone(&ledger),
            n,
            Arc::clone(&done),
        )));
    }

    for third in [1, 2] {
        let target = ITEMS * third / 3;
        eventually(Duration::from_secs(60), || async {
            (ledger.lock().enqueued.len() >= target).then_some(())
        })
        .await
        .unwrap_or_else(|| panic!("{target} items were not enqueued before the crash"));
        server.kill();
        // Down longer than a request timeout: operations in flight fail, and are retried.
        tokio::time::sleep(Duration::from_millis(1500)).await;
        server.restart();
    }
    for p in producers {
        p.await.unwrap();
    }
    for c in consumers {
        c.await.unwrap();
    }
    // Whatever is still delivered after every item was acked once is a duplicate: count it too.
    // (And whatever the consumers left when they gave up: it is delivered and acked here.)
    let q = connect(&url, &config).await;
    let until = Instant::now() + config.ack_wait + Duration::from_secs(1);
    while Instant::now() < until {
        if let Some(c) = q
            .claim(
                &WorkerId::new("drain"),
                Duration::from_secs(20),
                Duration::from_millis(300),
            )
            .await
            .unwrap()
        {
            q.ack(&c.token).await.unwrap();
            let payload = String::from_utf8_lossy(&c.payload).into_owned();
            // Consumers give up after 60 s (a hang guard); on a loaded machine the last items
            // may be first delivered here, and this ack is as confirmed as theirs.
            let mut l = ledger.lock();
            *l.claimed.entry(payload.clone()).or_default() += 1;
            *l.acked.entry(payload).or_default() += 1;
        }
    }
    let depths = q.depths().await.unwrap();
    assert_eq!(
        (depths.ready_total(), depths.in_flight, depths.delayed),
        (0, 0, 0),
        "{depths:?}"
    );

    let l = ledger.lock();
    let enqueued: BTreeSet<&String> = l.enqueued.keys().collect();
    assert_eq!(
        enqueued.len(),
        ITEMS,
        "every enqueue was eventually confirmed"
    );
    // Lost: enqueued successfully, never delivered to a consumer. (An item whose ack failed may
    // never come back: that ack reached the server, and the item was processed.)
    let lost: Vec<&&String> = enqueued
        .iter()
        .filter(|p| !l.claimed.contains_key(**p))
        .collect();
    let duplicates: usize = l.claimed.values().map(|n| n - 1).sum();
    let unacked = enqueued
        .iter()
        .filter(|p| !l.acked.contains_key(**p))
        .count();
    println!(
        "{ITEMS} items, 2 server crashes: {} failed enqueues, {} failed acks, {duplicates} duplicate deliveries, {unacked} items with no confirmed ack",
        l.failed_enqueues, l.failed_acks
    );
    assert!(
        lost.is_empty(),
        "items enqueued successfully but never delivered: {lost:?}"
    );
    assert!(
        unacked <= l.failed_acks,
        "{unacked} items never acked, {} failed acks",
        l.failed_acks
    );
    // At least once: a duplicate needs an enqueue or an ack whose outcome was unknown.
    assert!(
        duplicates <= l.failed_enqueues + l.failed_acks,
        "{duplicates} duplicates, more than the {} uncertain operations",
        l.failed_enqueues + l.failed_acks
    );
}
