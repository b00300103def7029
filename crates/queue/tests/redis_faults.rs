//! Fault tests for the Redis backends: dead claimers, killed connections, contending electors.
#![cfg(feature = "redis")]
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use hybridgrid_core::{
    ElectionError, Enqueued, FencingToken, LeaderElection, Leadership, NewWork, Queue, QueueError,
    WorkId, WorkerId,
};
use hybridgrid_queue::{Elector, RedisLeaderElection, RedisQueue};
use hybridgrid_testkit::{eventually, service_url, unique_prefix};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

fn redis_url() -> String {
    service_url("HG_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

async fn admin() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

async fn delete_prefix(prefix: &str) {
    hybridgrid_testkit::redis::delete_prefix(&redis_url(), prefix).await;
}

/// A claimer that takes work and dies (never acks) must not lose it: each item comes back once
/// per lease expiry, never before the lease ends, and never to two claimers at once.
#[tokio::test]
async fn dead_claimer_work_is_redelivered_once_per_expiry() {
    let prefix = format!("{}:", unique_prefix("deadclaimer"));
    let q = Arc::new(
        RedisQueue::connect(&redis_url(), prefix.clone())
            .await
            .unwrap(),
    );
    let lease = Duration::from_millis(400);
    let n = 20;
    for i in 0..n {
        q.enqueue(NewWork::new(format!("item-{i}")).max_attempts(5))
            .await
            .unwrap();
    }
    // Attempts 1 and 2 "die" (no ack, no nack); attempt 3 acks.
    type Seen = HashMap<WorkId, Vec<(u32, Instant)>>;
    let seen: Arc<parking_lot::Mutex<Seen>> = Arc::default();
    let acked = Arc::new(AtomicUsize::new(0));
    let mut claimers = Vec::new();
    for w in 0..4 {
        let (q, seen, acked) = (q.clone(), seen.clone(), acked.clone());
        claimers.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("claimer-{w}"));
            while acked.load(Ordering::SeqCst) < n {
                let Some(c) = q
                    .claim(&worker, lease, Duration::from_millis(200))
                    .await
                    .unwrap()
                else {
                    continue;
                };
                seen.lock()
                    .entry(c.id.clone())
                    .or_default()
                    .push((c.attempt, Instant::now()));
                if c.attempt == 3 {
                    q.ack(&c.token).await.unwrap();
                    acked.fetch_add(1, Ordering::SeqCst);
                }
            }
        }));
    }
    let all_done = tokio::time::timeout(Duration::from_secs(60), futures_join(claimers)).await;
    assert!(
        all_done.is_ok(),
        "claimers did not finish: acked {}",
        acked.load(Ordering::SeqCst)
    );
    let seen = std::mem::take(&mut *seen.lock());
    assert_eq!(seen.len(), n, "every item was delivered");
    for (id, deliveries) in seen.iter() {
        let attempts: Vec<u32> = deliveries.iter().map(|d| d.0).collect();
        assert_eq!(
            attempts,
            vec![1, 2, 3],
            "item {id}: one delivery per expiry"
        );
        for pair in deliveries.windows(2) {
            // Both stamps are taken right after a claim returned; a claimer stalled between
            // the reply and its stamp (a loaded machine) shortens the gap, hence the tolerance.
            // An early redelivery (a lease not honoured) shows up as a gap near zero.
            let gap = pair[1].1 - pair[0].1;
            assert!(
                gap + Duration::from_millis(100) >= lease,
                "item {id} redelivered after {gap:?}, lease {lease:?}"
            );
        }
    }
    assert_eq!(q.depths().await.unwrap(), Default::default());
    delete_prefix(&prefix).await;
}

async fn futures_join(handles: Vec<tokio::task::JoinHandle<()>>) {
    for h in handles {
        h.await.unwrap();
    }
}

/// Retries an operation while it fails with a retryable error, counting the failures.
async fn retrying<T, F, Fut>(errors: &AtomicUsize, mut op: F) -> Result<T, QueueError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, QueueError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match op().await {
            Err(e @ QueueError::Backend { .. }) if Instant::now() < deadline => {
                assert!(e.retry().is_retryable(), "{e}");
                assert!(matches!(
                    e,
                    QueueError::Backend {
                        backend: "redis",
                        ..
                    }
                ));
                errors.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            other => return other,
        }
    }
}

/// Kills the queue's connections (only them: they log in as a user of their own, and
/// `CLIENT KILL USER` leaves other tests' connections alone) while work flows. Operations fail
/// with a retryable error, then work again; every enqueued item is processed and acked.
#[tokio::test]
async fn killed_connections_lose_nothing() {
    let tag = unique_prefix("killconn");
    let (user, pass) = (tag.clone(), "hgtest-pass");
    let mut adm = admin().await;
    let _: () = redis::cmd("ACL")
        .arg(
            &[
                "SETUSER",
                &user,
                "on",
                &format!(">{pass}"),
                "~*",
                "&*",
                "+@all",
            ][..],
        )
        .query_async(&mut adm)
        .await
        .unwrap();
    let url = format!("redis://{user}:{pass}@127.0.0.1:6379")
        .replace("127.0.0.1:6379", redis_url().trim_start_matches("redis://"));
    let prefix = format!("{tag}:");
    let q = Arc::new(RedisQueue::connect(&url, prefix.clone()).await.unwrap());
    let errors = Arc::new(AtomicUsize::new(0));
    let n = 300;
    let stop = Arc::new(AtomicBool::new(false));

    let producer = {
        let (q, errors) = (q.clone(), errors.clone());
        tokio::spawn(async move {
            let mut ids = HashSet::new();
            for i in 0..n {
                // The key makes a retried enqueue safe when its reply was lost to a kill.
                let work = || NewWork::new(format!("job-{i}")).idempotency_key(format!("job-{i}"));
                let r = retrying(&errors, || q.enqueue(work())).await.unwrap();
                if matches!(r, Enqueued::Duplicate(_)) {
                    // Only a retry after a lost reply can see its own key.
                    assert!(errors.load(Ordering::SeqCst) > 0);
                }
                ids.insert(r.id().clone());
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            ids
        })
    };
    let processed: Arc<parking_lot::Mutex<HashSet<WorkId>>> = Arc::default();
    let mut consumers = Vec::new();
    for w in 0..2 {
        let (q, errors, processed, stop) =
            (q.clone(), errors.clone(), processed.clone(), stop.clone());
        consumers.push(tokio::spawn(async move {
            let worker = WorkerId::new(format!("consumer-{w}"));
            let lease = Duration::from_millis(800);
            while !stop.load(Ordering::SeqCst) {
                let claim = retrying(&errors, || {
                    q.claim(&worker, lease, Duration::from_millis(100))
                });
                let Some(c) = claim.await.unwrap() else {
                    continue;
                };
                match retrying(&errors, || q.ack(&c.token)).await {
                    Ok(()) => {}
                    // The first ack ran but its reply was lost; the retry finds the lease gone.
                    Err(QueueError::LeaseLost { .. }) => {}
                    Err(e) => panic!("ack failed: {e}"),
                }
                processed.lock().insert(c.id);
            }
        }));
    }
    let killer = {
        let user = user.clone();
        tokio::spawn(async move {
            let mut adm = admin().await;
            let mut killed = 0;
            for _ in 0..6 {
                tokio::time::sleep(Duration::from_millis(120)).await;
                let n: u64 = redis::cmd("CLIENT")
                    .arg(&["KILL", "USER", &user][..])
                    .query_async(&mut adm)
                    .await
                    .unwrap();
                killed += n;
            }
            killed
        })
    };
    let killed = killer.await.unwrap();
    let enqueued = producer.await.unwrap();
    let done = eventually(Duration::from_secs(30), || async {
        let d = q.depths().await.ok()?;
        (d == Default::default()).then_some(())
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    for c in consumers {
        c.await.unwrap();
    }
    let processed = processed.lock().clone();
    eprintln!(
        "killed {killed} connections, {} retryable errors, {} items processed",
        errors.load(Ordering::SeqCst),
        processed.len()
    );
    assert!(killed > 0, "the kills hit connections");
    assert!(
        errors.load(Ordering::SeqCst) > 0,
        "the kills surfaced as retryable errors"
    );
    assert!(done.is_some(), "queue drained: {:?}", q.depths().await);
    assert_eq!(enqueued.len(), n, "one item per idempotency key");
    let missing: Vec<_> = enqueued.difference(&processed).collect();
    assert!(
        missing.is_empty(),
        "enqueued but never processed: {missing:?}"
    );
    assert!(q.dead_letters(10).await.unwrap().is_empty());

    delete_prefix(&prefix).await;
    let _: () = redis::cmd("ACL")
        .arg(&["DELUSER", &user][..])
        .query_async(&mut adm)
        .await
        .unwrap();
}

/// A [`LeaderElection`] whose calls can be cut off, like a network partition: while cut, calls
/// hang until the partition heals and then fail with a backend error.
struct Partitionable {
    inner: Arc<dyn LeaderElection>,
    cut: AtomicBool,
}

impl Partitionable {
    async fn gate(&self) -> Result<(), ElectionError> {
        if !self.cut.load(Ordering::SeqCst) {
            return Ok(());
        }
        while self.cut.load(Ordering::SeqCst) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Err(ElectionError::Backend {
            backend: "test-partition",
            source: "partitioned".into(),
        })
    }
}

#[async_trait]
impl LeaderElection for Partitionable {
    async fn try_acquire(
        &self,
        holder: &str,
        ttl: Duration,
    ) -> Result<Option<Leadership>, ElectionError> {
        self.gate().await?;
        self.inner.try_acquire(holder, ttl).await
    }
    async fn renew(&self, lease: &Leadership) -> Result<bool, ElectionError> {
        self.gate().await?;
        self.inner.renew(lease).await
    }
    async fn release(&self, lease: &Leadership) -> Result<(), ElectionError> {
        self.gate().await?;
        self.inner.release(lease).await
    }
    async fn check_fence(&self, token: FencingToken) -> Result<(), ElectionError> {
        self.gate().await?;
        self.inner.check_fence(token).await
    }
}

/// Two electors contend for 100 lease periods while the leader is repeatedly cut off long enough
/// for its lease to expire. Whenever an elector believes it leads, its token passes
/// `check_fence`; the two never hold valid tokens at once; leadership changes hands.
#[tokio::test]
async fn contending_electors_never_both_lead() {
    let key = unique_prefix("contend");
    let ttl = Duration::from_millis(150);
    let fence: Arc<dyn LeaderElection> =
        Arc::new(RedisLeaderElection::new(&redis_url(), key.clone()).unwrap());
    let links: Vec<Arc<Partitionable>> = (0..2)
        .map(|_| {
            Arc::new(Partitionable {
                inner: Arc::new(RedisLeaderElection::new(&redis_url(), key.clone()).unwrap()),
                cut: AtomicBool::new(false),
            })
        })
        .collect();
    let electors: Arc<Vec<Elector>> = Arc::new(
        links
            .iter()
            .enumerate()
            .map(|(i, l)| {
                Elector::start(
                    l.clone() as Arc<dyn LeaderElection>,
                    format!("elector-{i}"),
                    ttl,
                )
            })
            .collect(),
    );

    // Sampler: whenever an elector believes it leads (before and after the check, same token),
    // the backend must accept its token; at most one token is ever valid at once.
    let stop = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (electors, fence, stop) = (electors.clone(), fence.clone(), stop.clone());
        tokio::spawn(async move {
            let (mut samples, mut led) = (0u64, HashSet::new());
            while !stop.load(Ordering::SeqCst) {
                let mut valid = Vec::new();
                for (i, e) in electors.iter().enumerate() {
                    let Some(before) = e.leadership() else {
                        continue;
                    };
                    let fenced = fence.check_fence(before.token).await;
                    let after = e.leadership();
                    if after.as_ref().map(|l| l.token) == Some(before.token) {
                        if let Err(err) = fenced {
                            panic!(
                                "elector-{i} believed it led with token {} throughout a fence check that refused it: {err}",
                                before.token
                            );
                        }
                        valid.push((i, before.token));
                        led.insert((i, before.token));
                    }
                }
                let tokens: HashSet<FencingToken> = valid.iter().map(|v| v.1).collect();
                assert!(tokens.len() <= 1, "two valid leaders at once: {valid:?}");
                samples += 1;
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            (samples, led)
        })
    };

    // 100 lease periods; every 4 periods, cut the current leader off for 2 periods.
    let started = Instant::now();
    let mut cuts = 0;
    while started.elapsed() < ttl * 100 {
        tokio::time::sleep(ttl * 2).await;
        if let Some(i) = electors.iter().position(|e| e.is_leader()) {
            links[i].cut.store(true, Ordering::SeqCst);
            tokio::time::sleep(ttl * 2).await;
            links[i].cut.store(false, Ordering::SeqCst);
            cuts += 1;
        }
    }
    stop.store(true, Ordering::SeqCst);
    let (samples, led) = sampler.await.unwrap();

    let one = eventually(Duration::from_secs(5), || async {
        (electors.iter().filter(|e| e.is_leader()).count() == 1).then_some(())
    })
    .await;
    assert!(
        one.is_some(),
        "exactly one elector leads once the partitions heal"
    );
    eprintln!(
        "{samples} samples, {cuts} forced expiries, {} (elector, token) leadership terms",
        led.len()
    );
    let terms: HashSet<FencingToken> = led.iter().map(|l| l.1).collect();
    let leaders: HashSet<usize> = led.iter().map(|l| l.0).collect();
    assert!(cuts >= 10, "only {cuts} forced expiries");
    assert!(
        terms.len() >= cuts / 2,
        "{} leadership terms seen over {cuts} forced expiries",
        terms.len()
    );
    assert_eq!(leaders.len(), 2, "both electors led at some point");
    assert!(samples > 100, "only {samples} samples");

    match Arc::try_unwrap(electors) {
        Ok(electors) => {
            for e in electors {
                e.shutdown().await;
            }
        }
        Err(_) => panic!("electors still shared"),
    }
    let mut adm = admin().await;
    let _: () = redis::cmd("DEL")
        .arg(&key)
        .arg(format!("{key}:fence"))
        .query_async(&mut adm)
        .await
        .unwrap();
}
