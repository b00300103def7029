//! Coordinator against real Redis: fencing refuses a deposed leader's enqueue, atomically even when
//! it races the new leader; agents in backoff are not enqueued; the same notification is queued
//! once; DISCOVERY for stale agents.
#![allow(clippy::unwrap_used)]

use hybridgrid_agents_coordinator::{CoordinatorConfig, fenced_enqueue, start};
use hybridgrid_agents_hub::{FakeHub, HubClient};
use hybridgrid_agents_protocol::{Backends, RunnerMode, WorkItem};
use hybridgrid_core::{Priority, QueueError, WorkerId};
use std::time::Duration;

fn redis_url() -> String {
    hybridgrid_testkit::service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

async fn backends(tag: &str) -> Backends {
    let prefix = format!("{}:", hybridgrid_testkit::unique_prefix(tag));
    Backends::connect(&redis_url(), &prefix)
        .await
        .expect("Redis must be running")
}

/// A TCP proxy to `upstream` that delays every byte by `delay` each way (order kept): the slow
/// link of a stalling leader. Returns its loopback port.
async fn slow_link(upstream: std::net::SocketAddr, delay: Duration) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    fn pipe(
        mut from: tokio::net::tcp::OwnedReadHalf,
        mut to: tokio::net::tcp::OwnedWriteHalf,
        delay: Duration,
    ) {
        let (tx, mut rx) =
            tokio::sync::mpsc::unbounded_channel::<(tokio::time::Instant, Vec<u8>)>();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 64 * 1024];
            while let Ok(n) = from.read(&mut buf).await {
                if n == 0
                    || tx
                        .send((tokio::time::Instant::now() + delay, buf[..n].to_vec()))
                        .is_err()
                {
                    break;
                }
            }
        });
        tokio::spawn(async move {
            while let Some((at, bytes)) = rx.recv().await {
                tokio::time::sleep_until(at).await;
                if to.write_all(&bytes).await.is_err() {
                    break;
                }
            }
        });
    }
    tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            let server = tokio::net::TcpStream::connect(upstream).await.unwrap();
            let (cr, cw) = client.into_split();
            let (sr, sw) = server.into_split();
            pipe(cr, sw, delay);
            pipe(sr, cw, delay);
        }
    });
    port
}

#[tokio::test]
async fn a_deposed_leader_cannot_enqueue() {
    let b = backends("fence").await;
    let ttl = Duration::from_millis(300);
    let old = b.election.try_acquire("a", ttl).await.unwrap().unwrap();
    let item = WorkItem::inbox("x", Priority::High, "n1", "p1", "mention", "hi");
    fenced_enqueue(&b, old.token, &item).await.unwrap();
    tokio::time::sleep(ttl * 2).await;
    let new = b.election.try_acquire("b", ttl).await.unwrap().unwrap();
    assert!(new.token > old.token);
    let item2 = WorkItem::inbox("x", Priority::High, "n2", "p2", "mention", "hi");
    match fenced_enqueue(&b, old.token, &item2).await {
        Err(QueueError::Fenced {
            presented, current, ..
        }) => {
            assert_eq!((presented, current), (old.token, new.token));
        }
        other => panic!("expected Fenced, got {other:?}"),
    }
    assert_eq!(b.queues.inbox.depths().await.unwrap().ready_total(), 1);
    fenced_enqueue(&b, new.token, &item2).await.unwrap();
    assert_eq!(b.queues.inbox.depths().await.unwrap().ready_total(), 2);
}

/// A deposed leader (`old`, on a slow link) hammers the queue with its token from many tasks while
/// its lease expires and a successor (`new`, same keys) is elected and enqueues its first item.
/// Fencing is atomic when no old-token item lands after the successor's first one: every accepted
/// old enqueue was ordered before the new term began. (A check-then-enqueue fails this: on the
/// slow link an old item's check and its enqueue are tens of milliseconds apart, and the new term
/// begins in between.)
async fn deposed_leader_racing_the_new_one(old_b: Backends, b: Backends) {
    let ttl = Duration::from_millis(400);
    let old = old_b
        .election
        .try_acquire("old", ttl)
        .await
        .unwrap()
        .unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let b = old_b.clone();
        tasks.push(tokio::spawn(async move {
            let mut accepted = 0u32;
            for i in 0.. {
                let item = WorkItem::inbox(
                    "x",
                    Priority::High,
                    &format!("old-{t}-{i}"),
                    "p",
                    "mention",
                    "old",
                );
                match fenced_enqueue(&b, old.token, &item).await {
                    Ok(_) => accepted += 1,
                    Err(QueueError::Fenced { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            accepted
        }));
    }
    let new = loop {
        if let Some(l) = b.election.try_acquire("new", ttl * 10).await.unwrap() {
            break l;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let first = WorkItem::inbox("x", Priority::High, "new-first", "p", "mention", "new");
    fenced_enqueue(&b, new.token, &first).await.unwrap();
    let mut accepted = 0;
    for t in tasks {
        accepted += t.await.unwrap();
    }
    assert!(accepted > 0, "the old leader enqueued while it led");
    // Drain in queue order: nothing of the old term after the new term's first item.
    let w = WorkerId::new("drain");
    let mut order = Vec::new();
    while let Some(c) = b
        .queues
        .claim(
            RunnerMode::Notification,
            &w,
            Duration::from_secs(30),
            Duration::ZERO,
        )
        .await
        .unwrap()
    {
        order.push(c.item.notifications[0].id.clone());
    }
    assert_eq!(order.len() as u32, accepted + 1);
    let pos = order.iter().position(|id| id == "new-first").unwrap();
    let late: Vec<&String> = order[pos..]
        .iter()
        .filter(|id| id.starts_with("old-"))
        .collect();
    assert!(
        late.is_empty(),
        "old-token items after the new leader's first: {late:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_racing_the_new_one_cannot_enqueue_redis() {
    let prefix = format!("{}:", hybridgrid_testkit::unique_prefix("fence_race"));
    let url = redis_url();
    let addr = url
        .trim_start_matches("redis://")
        .split('/')
        .next()
        .unwrap()
        .to_owned();
    let upstream = tokio::net::lookup_host(addr).await.unwrap().next().unwrap();
    let port = slow_link(upstream, Duration::from_millis(15)).await;
    let old = Backends::connect(&format!("redis://127.0.0.1:{port}"), &prefix)
        .await
        .unwrap();
    let new = Backends::connect(&url, &prefix).await.unwrap();
    deposed_leader_racing_the_new_one(old, new).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_leader_racing_the_new_one_cannot_enqueue_memory() {
    let b = Backends::memory();
    deposed_leader_racing_the_new_one(b.clone(), b).await;
}

#[tokio::test]
async fn backoff_skips_agents_and_notifications_queue_once() {
    let hub = FakeHub::start().await.unwrap();
    let b = backends("coord").await;
    for _ in 0..5 {
        b.state.record_failure("sick").await.unwrap();
    }
    hub.mention("sick", "alice", "@sick hi");
    let n = hub.mention("well", "alice", "@well hi");
    hub.set_agent("stale", Some(1));
    let client = HubClient::new(&hub.url(), Some(hub.api_key().into())).unwrap();
    let c = start(CoordinatorConfig::for_tests("c1"), b.clone(), client, None)
        .await
        .unwrap();
    let w = WorkerId::new("r");
    let first = b
        .queues
        .claim(
            RunnerMode::Notification,
            &w,
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.item.agent, "well");
    assert_eq!(first.item.notifications[0].id, n);
    let d = b
        .queues
        .claim(
            RunnerMode::Exploration,
            &w,
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(d.item.agent, "stale");
    assert_eq!(d.item.priority, Priority::Low);
    // Several sweeps later: still unread, but queued (leased) once, and nothing for "sick".
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (inbox, _) = b.queues.depths().await.unwrap();
    assert_eq!(inbox.ready_total(), 0, "{inbox:?}");
    assert_eq!(inbox.in_flight, 1);
    b.state.clear_backoff("sick").await.unwrap();
    let sick = b
        .queues
        .claim(
            RunnerMode::Notification,
            &w,
            Duration::from_secs(30),
            Duration::from_secs(10),
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(sick.item.agent, "sick");
    c.shutdown().await;
}
