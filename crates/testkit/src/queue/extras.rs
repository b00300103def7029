//! Queue checks beyond the core suite: batch claims and ack-and-claim (part of
//! [`super::run_queue_suite`], so every backend passes them, through the trait's defaults if need
//! be), and the opt-in suites [`run_aging_suite`], [`run_liveness_check`] and
//! [`check_fenced_enqueue`] for backends that offer priority aging, consumer liveness and an
//! atomic fenced enqueue, and [`check_dead_letter_bound`] for a queue made with a dead-letter
//! limit.

use super::{LONG_LEASE, put_new, text, work, worker};
use hybridgrid_core::{
    Claim, ElectionError, Enqueued, LeaderElection, LeaseToken, NewWork, Priority, Queue,
    QueueError, WorkerId,
};
use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// How long a batch claim may wait for its first item.
const WAIT: Duration = Duration::from_secs(5);
/// Clock and timer slack for the aging bound.
const AGING_SLACK: Duration = Duration::from_millis(50);

fn names(claims: &[Claim]) -> Vec<String> {
    claims.iter().map(text).collect()
}

/// `claim_many` takes up to `max` ready items in claim order (high first, FIFO within a lane),
/// never more, with distinct tokens; an empty queue gives an empty batch after `wait`.
pub(super) async fn claim_many_order(q: Arc<dyn Queue>) -> Result<(), String> {
    for name in ["n1", "n2", "n3", "n4", "n5"] {
        put_new(&*q, work(name)).await?;
    }
    for name in ["h1", "h2"] {
        put_new(&*q, work(name).priority(Priority::High)).await?;
    }
    let w = worker(0);
    let first = q
        .claim_many(&w, 4, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim_many(4) failed: {e}"))?;
    if names(&first) != ["h1", "h2", "n1", "n2"] {
        return Err(format!(
            "claim_many(4): expected [h1, h2, n1, n2], got {:?}",
            names(&first)
        ));
    }
    let rest = q
        .claim_many(&w, 10, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim_many(10) failed: {e}"))?;
    if names(&rest) != ["n3", "n4", "n5"] {
        return Err(format!(
            "claim_many(10) after 4: expected [n3, n4, n5], got {:?}",
            names(&rest)
        ));
    }
    let tokens: HashSet<&LeaseToken> = first.iter().chain(&rest).map(|c| &c.token).collect();
    if tokens.len() != 7 {
        return Err(format!("expected 7 distinct tokens, got {}", tokens.len()));
    }
    let none = q
        .claim_many(&w, 10, LONG_LEASE, Duration::from_millis(200))
        .await
        .map_err(|e| format!("claim_many on an empty queue failed: {e}"))?;
    if !none.is_empty() {
        return Err(format!("empty queue: claim_many gave {:?}", names(&none)));
    }
    for c in first.iter().chain(&rest) {
        q.ack(&c.token)
            .await
            .map_err(|e| format!("ack of batch-claimed {} failed: {e}", text(c)))?;
    }
    Ok(())
}

/// `ack_and_claim` acks every held token, reports stale ones in `lost` (acking nothing twice),
/// then claims the next items; with `max` 0 it only acks.
pub(super) async fn ack_and_claim_batch(q: Arc<dyn Queue>) -> Result<(), String> {
    for name in ["a", "b", "c", "d"] {
        put_new(&*q, work(name)).await?;
    }
    let w = worker(0);
    let first = q
        .claim_many(&w, 2, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim_many(2) failed: {e}"))?;
    if names(&first) != ["a", "b"] {
        return Err(format!("expected [a, b], got {:?}", names(&first)));
    }
    let done: Vec<LeaseToken> = first.iter().map(|c| c.token.clone()).collect();
    let out = q
        .ack_and_claim(&done, &w, 1, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("ack_and_claim failed: {e}"))?;
    if !out.lost.is_empty() || names(&out.claims) != ["c"] {
        return Err(format!(
            "ack_and_claim([a, b], 1): expected no lost tokens and [c], got lost {:?}, claims {:?}",
            out.lost,
            names(&out.claims)
        ));
    }
    // Acking a and b again: both stale; c is acked, and d claimed.
    let mut again = done.clone();
    again.push(out.claims[0].token.clone());
    let out2 = q
        .ack_and_claim(&again, &w, 5, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("second ack_and_claim failed: {e}"))?;
    if out2.lost != done || names(&out2.claims) != ["d"] {
        return Err(format!(
            "ack_and_claim([a, b stale; c], 5): expected lost [a, b] and claims [d], got lost {:?}, claims {:?}",
            out2.lost,
            names(&out2.claims)
        ));
    }
    let only_ack = q
        .ack_and_claim(&[out2.claims[0].token.clone()], &w, 0, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("ack-only ack_and_claim failed: {e}"))?;
    if !only_ack.lost.is_empty() || !only_ack.claims.is_empty() {
        return Err(format!(
            "ack_and_claim(max 0): expected nothing back, got {only_ack:?}"
        ));
    }
    super::depths_become(&*q, Default::default(), "after every item was acked").await
}

/// The fairness bound of priority aging, under a sustained high-priority load.
///
/// `make(aging)` returns a fresh queue whose claims age priorities by `aging` per lane (see
/// `MemoryQueue::with_aging`). A producer keeps enqueuing high items faster than the one consumer
/// claims them, on top of a backlog; one low item is enqueued early on. Checks: the low item is
/// claimed (strict priorities would starve it), not before a high item enqueued just after it
/// (priority still counts), and before every high item enqueued more than `2 × aging` after it.
pub async fn run_aging_suite<F, Fut>(make: F)
where
    F: Fn(Duration) -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    let aging = Duration::from_millis(200);
    let q = make(aging).await;
    if let Err(e) = aging_bound(q, aging).await {
        panic!("priority aging: {e}");
    }
}

async fn aging_bound(q: Arc<dyn Queue>, aging: Duration) -> Result<(), String> {
    let high = |name: String| NewWork::new(name.into_bytes()).priority(Priority::High);
    let backlog: Vec<NewWork> = (0..200).map(|i| high(format!("pre-{i}"))).collect();
    q.enqueue_many(backlog)
        .await
        .map_err(|e| format!("backlog enqueue failed: {e}"))?;
    put_new(&*q, work("low").priority(Priority::Low)).await?;
    let low_done = Instant::now();
    put_new(&*q, high("early".into())).await?;
    // Sustained load: 10 high items every 5 ms, far more than the consumer takes.
    let sent: Arc<Mutex<Vec<(String, Instant)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let producer = {
        let (q, sent, stop) = (q.clone(), sent.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0usize;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let at = Instant::now();
                let batch: Vec<String> = (0..10).map(|i| format!("h-{}", n + i)).collect();
                n += 10;
                let work = batch.iter().map(|b| high(b.clone())).collect();
                if let Err(e) = q.enqueue_many(work).await {
                    return Err(format!("producer enqueue failed: {e}"));
                }
                sent.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(batch.into_iter().map(|b| (b, at)));
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            Ok(())
        })
    };
    let w = WorkerId::new("aging-consumer");
    let mut order = Vec::new();
    let give_up = Instant::now() + Duration::from_secs(10);
    let result = loop {
        if Instant::now() > give_up {
            break Err(format!(
                "the low item was not claimed within 10 s under the high load ({} claimed)",
                order.len()
            ));
        }
        match q.claim(&w, LONG_LEASE, WAIT).await {
            Ok(Some(c)) => {
                let name = text(&c);
                if let Err(e) = q.ack(&c.token).await {
                    break Err(format!("ack failed: {e}"));
                }
                let low = name == "low";
                order.push(name);
                if low {
                    break Ok(());
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            Ok(None) => break Err("claim found nothing under load".into()),
            Err(e) => break Err(format!("claim failed: {e}")),
        }
    };
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    producer
        .await
        .map_err(|e| format!("producer task failed: {e}"))??;
    result?;
    if !order.iter().any(|n| n == "early") {
        return Err(format!(
            "a high item enqueued just after the low one should be claimed first; order ends {:?}",
            &order[order.len().saturating_sub(5)..]
        ));
    }
    let bound = low_done + 2 * aging + AGING_SLACK;
    let sent = sent.lock().unwrap_or_else(|p| p.into_inner());
    let claimed_before: HashSet<&String> = order.iter().collect();
    let late: Vec<&String> = sent
        .iter()
        .filter(|(name, at)| *at > bound && claimed_before.contains(name))
        .map(|(name, _)| name)
        .collect();
    if !late.is_empty() {
        return Err(format!(
            "high items enqueued more than 2 × {aging:?} after the low one were claimed before it: {:?}",
            &late[..late.len().min(5)]
        ));
    }
    Ok(())
}

/// "Alive but not fetching": after a consumer stops claiming while work is ready,
/// [`Queue::consumers`] plus [`Queue::depths`] report it stalled, and a consumer that just claimed
/// is not.
pub async fn run_liveness_check(q: Arc<dyn Queue>) {
    if let Err(e) = liveness(q).await {
        panic!("consumer liveness: {e}");
    }
}

async fn liveness(q: Arc<dyn Queue>) -> Result<(), String> {
    let max_idle = Duration::from_millis(500);
    for i in 0..5 {
        put_new(&*q, work(&format!("job-{i}"))).await?;
    }
    let (stuck, busy) = (
        WorkerId::new("stuck-consumer"),
        WorkerId::new("busy-consumer"),
    );
    let c = q
        .claim(&stuck, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim failed: {e}"))?
        .ok_or("nothing to claim")?;
    tokio::time::sleep(max_idle * 2).await;
    q.claim(&busy, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim failed: {e}"))?
        .ok_or("nothing to claim")?;
    let depths = q
        .depths()
        .await
        .map_err(|e| format!("depths failed: {e}"))?;
    let seen = q
        .consumers()
        .await
        .map_err(|e| format!("consumers failed: {e}"))?;
    let now = SystemTime::now();
    let find = |w: &WorkerId| {
        seen.iter()
            .find(|s| &s.worker == w)
            .ok_or_else(|| format!("{w} missing from consumers {seen:?}"))
    };
    if !find(&stuck)?.stalled(&depths, now, max_idle) {
        return Err(format!(
            "{stuck} has not fetched for {:?} with {} items ready: expected stalled ({seen:?})",
            max_idle * 2,
            depths.ready_total()
        ));
    }
    if find(&busy)?.stalled(&depths, now, max_idle) {
        return Err(format!(
            "{busy} just fetched: expected not stalled ({seen:?})"
        ));
    }
    q.ack(&c.token)
        .await
        .map_err(|e| format!("ack failed: {e}"))
}

/// [`Queue::enqueue_fenced`] against `election`, whose fencing counter `q` knows as `fence`: the
/// current leader's token is accepted (idempotency keys still apply), a deposed leader's token is
/// refused with [`QueueError::Fenced`] naming both tokens, and nothing is enqueued for it.
pub async fn check_fenced_enqueue(
    q: Arc<dyn Queue>,
    election: Arc<dyn LeaderElection>,
    fence: &str,
) {
    if let Err(e) = fenced(q, election, fence).await {
        panic!("fenced enqueue: {e}");
    }
}

async fn fenced(
    q: Arc<dyn Queue>,
    election: Arc<dyn LeaderElection>,
    fence: &str,
) -> Result<(), String> {
    let ttl = Duration::from_secs(30);
    let acquire = |holder: &'static str| {
        let election = election.clone();
        async move {
            election
                .try_acquire(holder, ttl)
                .await
                .map_err(|e: ElectionError| format!("try_acquire failed: {e}"))?
                .ok_or_else(|| format!("{holder} could not acquire a free lease"))
        }
    };
    let old = acquire("old-leader").await?;
    let first = q
        .enqueue_fenced(work("from-old").idempotency_key("k1"), fence, old.token)
        .await
        .map_err(|e| format!("current leader's fenced enqueue failed: {e}"))?;
    let Enqueued::Created(first_id) = first else {
        return Err(format!("expected Created, got {first:?}"));
    };
    match q
        .enqueue_fenced(work("again").idempotency_key("k1"), fence, old.token)
        .await
    {
        Ok(Enqueued::Duplicate(id)) if id == first_id => {}
        other => {
            return Err(format!(
                "repeated key: expected Duplicate({first_id}), got {other:?}"
            ));
        }
    }
    election
        .release(&old)
        .await
        .map_err(|e| format!("release failed: {e}"))?;
    let new = acquire("new-leader").await?;
    match q
        .enqueue_fenced(work("from-deposed"), fence, old.token)
        .await
    {
        Err(QueueError::Fenced {
            presented, current, ..
        }) if presented == old.token && current == new.token => {}
        other => {
            return Err(format!(
                "deposed token {}: expected Fenced (current {}), got {other:?}",
                old.token, new.token
            ));
        }
    }
    match q
        .enqueue_fenced(work("deposed-dup").idempotency_key("k1"), fence, old.token)
        .await
    {
        Err(QueueError::Fenced { .. }) => {}
        other => {
            return Err(format!(
                "deposed token with a known key: expected Fenced, got {other:?}"
            ));
        }
    }
    let created = q
        .enqueue_fenced(work("from-new"), fence, new.token)
        .await
        .map_err(|e| format!("new leader's fenced enqueue failed: {e}"))?;
    if !matches!(created, Enqueued::Created(_)) {
        return Err(format!("new leader: expected Created, got {created:?}"));
    }
    let w = worker(0);
    let claims = q
        .claim_many(&w, 10, LONG_LEASE, WAIT)
        .await
        .map_err(|e| format!("claim_many failed: {e}"))?;
    if names(&claims) != ["from-old", "from-new"] {
        return Err(format!(
            "expected exactly [from-old, from-new] queued, got {:?}",
            names(&claims)
        ));
    }
    for c in &claims {
        q.ack(&c.token)
            .await
            .map_err(|e| format!("ack failed: {e}"))?;
    }
    election
        .release(&new)
        .await
        .map_err(|e| format!("release failed: {e}"))
}

/// `q` was made with a dead-letter limit of `limit` (at least 1): after `limit + 3` items are
/// dead-lettered, [`Queue::dead_letters`] holds only the newest `limit`, oldest first,
/// [`Queue::depths`] counts `limit` dead, and a kept one's idempotency key is still a duplicate.
/// With `keys_freed` (backends that forget a key with its item) the key of a dropped dead letter
/// is free again; backends that remember keys for a time window pass `false`.
pub async fn check_dead_letter_bound(q: Arc<dyn Queue>, limit: usize, keys_freed: bool) {
    if let Err(e) = dead_letter_bound(q, limit, keys_freed).await {
        panic!("dead-letter bound: {e}");
    }
}

async fn dead_letter_bound(
    q: Arc<dyn Queue>,
    limit: usize,
    keys_freed: bool,
) -> Result<(), String> {
    let total = limit + 3;
    let consumer = worker(0);
    for i in 0..total {
        let name = format!("doomed-{i}");
        put_new(&*q, work(&name).max_attempts(1).idempotency_key(&name)).await?;
        let c = q
            .claim(&consumer, LONG_LEASE, WAIT)
            .await
            .map_err(|e| format!("claim failed: {e}"))?
            .ok_or_else(|| format!("{name} was not claimable"))?;
        if text(&c) != name {
            return Err(format!("claimed {:?}, expected {name}", text(&c)));
        }
        q.nack(&c.token, Duration::ZERO)
            .await
            .map_err(|e| format!("nack of {name} failed: {e}"))?;
    }
    let dead = q
        .dead_letters(total * 2)
        .await
        .map_err(|e| format!("dead_letters failed: {e}"))?;
    let got: Vec<String> = dead
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    let want: Vec<String> = (total - limit..total)
        .map(|i| format!("doomed-{i}"))
        .collect();
    if got != want {
        return Err(format!(
            "with limit {limit} after {total} dead letters: expected {want:?}, got {got:?}"
        ));
    }
    let depths = q
        .depths()
        .await
        .map_err(|e| format!("depths failed: {e}"))?;
    if depths.dead != limit as u64 {
        return Err(format!(
            "depths count {} dead, expected {limit}",
            depths.dead
        ));
    }
    if keys_freed {
        match q
            .enqueue(work("again").idempotency_key("doomed-0"))
            .await
            .map_err(|e| format!("enqueue failed: {e}"))?
        {
            Enqueued::Created(_) => {}
            other => {
                return Err(format!(
                    "the dropped dead letter's key should be free again, got {other:?}"
                ));
            }
        }
    }
    let kept = format!("doomed-{}", total - 1);
    match q
        .enqueue(work("again").idempotency_key(&kept))
        .await
        .map_err(|e| format!("enqueue failed: {e}"))?
    {
        Enqueued::Duplicate(_) => Ok(()),
        other => Err(format!(
            "a kept dead letter's key ({kept}) should still be a duplicate, got {other:?}"
        )),
    }
}
