//! Conformance suite for [`Queue`] backends.
//!
//! [`run_queue_suite`] runs every check against a fresh queue from the factory, all checks
//! concurrently, and fails once listing each failed check with what it expected and what it got.
//! It uses real time: leases of 1 s where a check waits for expiry (a lease-based backend such as
//! NATS JetStream cannot go much lower), 30 s where a lease must not run out, and it polls until a
//! deadline instead of sleeping. It assumes nothing about the format of ids or tokens. The whole
//! suite takes about 5 s.
//!
//! ```no_run
//! use hybridgrid_core::Queue;
//! use std::sync::Arc;
//! # async fn demo(make_backend: fn() -> Arc<dyn Queue>) {
//! hybridgrid_testkit::queue::run_queue_suite(|| async move { make_backend() }).await;
//! # }
//! ```

mod extras;
pub use extras::{
    check_dead_letter_bound, check_fenced_enqueue, run_aging_suite, run_liveness_check,
};

use crate::eventually;
use extras::{ack_and_claim_batch, claim_many_order};
use futures::FutureExt;
use futures::future::{LocalBoxFuture, join_all};
use hybridgrid_core::{
    Claim, Depths, Enqueued, LeaseToken, NewWork, Priority, Queue, QueueError, WorkId, WorkerId,
};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A lease the check waits out.
const SHORT_LEASE: Duration = Duration::from_secs(1);
/// A lease that must not run out during a check.
pub(crate) const LONG_LEASE: Duration = Duration::from_secs(30);
/// How long a claim may wait when an item is expected (it returns as soon as one is visible).
const EXPECT_ITEM: Duration = Duration::from_secs(5);
/// How long a claim waits when no item is expected.
const EXPECT_NONE: Duration = Duration::from_millis(300);
/// How long counts (depths, dead letters) may take to settle.
const SETTLE: Duration = Duration::from_secs(5);
/// Tolerance for timer and clock granularity when checking that something did not happen early.
const SLACK: Duration = Duration::from_millis(50);
/// A check that runs longer than this has hung.
const CHECK_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the [`Queue`] conformance suite: each check gets a fresh queue from `make`, which must
/// isolate it (a unique key prefix or stream name) because checks run concurrently. Panics once,
/// listing every failed check. Checks leave items behind (dead letters, a delayed item): remove
/// the prefixes afterwards.
pub async fn run_queue_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Queue>>,
{
    type Check = LocalBoxFuture<'static, Result<(), String>>;
    macro_rules! checks {
        ($($name:literal => $check:ident,)*) => {
            vec![$(($name, $check(make().await).boxed_local())),*]
        };
    }
    let checks: Vec<(&str, Check)> = checks! {
        "claims_highest_priority_first" => priority_order,
        "fifo_within_priority" => fifo,
        "empty_claim_waits_then_returns_none" => empty_wait,
        "claim_wakes_on_enqueue" => wakes_on_enqueue,
        "expired_lease_is_redelivered_exactly_once" => lease_expiry,
        "stale_lease_ack_is_rejected" => stale_token,
        "ack_removes_for_good" => ack_for_good,
        "nack_delays_visibility" => nack_delay,
        "enqueue_delay_hides_until_due" => enqueue_delay,
        "extend_keeps_lease" => extend,
        "duplicate_key_enqueues_once" => idempotency,
        "dead_letter_after_max_attempts_via_nack" => dead_by_nack,
        "dead_letter_after_max_attempts_via_expiry" => dead_by_expiry,
        "depths_per_priority" => depths,
        "rejects_zero_max_attempts" => zero_attempts,
        "concurrent_claimers_never_share_an_item" => concurrent,
        "claim_many_takes_ready_items_in_order" => claim_many_order,
        "ack_and_claim_acks_then_claims" => ack_and_claim_batch,
    };
    let results = join_all(checks.into_iter().map(|(name, check)| async move {
        let result = tokio::time::timeout(CHECK_TIMEOUT, check)
            .await
            .unwrap_or_else(|_| Err(format!("did not finish within {CHECK_TIMEOUT:?}")));
        (name, result)
    }))
    .await;
    let failed: Vec<String> = results
        .into_iter()
        .filter_map(|(name, r)| r.err().map(|e| format!("{name}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "Queue conformance failures:\n{}",
        failed.join("\n")
    );
}

pub(crate) fn worker(n: usize) -> WorkerId {
    WorkerId::new(format!("conformance-worker-{n}"))
}

pub(crate) fn work(payload: &str) -> NewWork {
    NewWork::new(payload.as_bytes().to_vec())
}

pub(crate) fn text(claim: &Claim) -> String {
    String::from_utf8_lossy(&claim.payload).into_owned()
}

async fn put(q: &dyn Queue, work: NewWork) -> Result<Enqueued, String> {
    let payload = String::from_utf8_lossy(&work.payload).into_owned();
    q.enqueue(work)
        .await
        .map_err(|e| format!("enqueue of {payload:?} failed: {e}"))
}

pub(crate) async fn put_new(q: &dyn Queue, work: NewWork) -> Result<WorkId, String> {
    match put(q, work).await? {
        Enqueued::Created(id) => Ok(id),
        other => Err(format!("expected Enqueued::Created, got {other:?}")),
    }
}

async fn take(q: &dyn Queue, lease: Duration, wait: Duration) -> Result<Option<Claim>, String> {
    q.claim(&worker(0), lease, wait)
        .await
        .map_err(|e| format!("claim failed: {e}"))
}

async fn take_some(q: &dyn Queue, lease: Duration, what: &str) -> Result<Claim, String> {
    take(q, lease, EXPECT_ITEM)
        .await?
        .ok_or_else(|| format!("expected to claim {what} within {EXPECT_ITEM:?}, got nothing"))
}

async fn take_none(q: &dyn Queue, why: &str) -> Result<(), String> {
    match take(q, LONG_LEASE, EXPECT_NONE).await? {
        None => Ok(()),
        Some(c) => Err(format!(
            "expected nothing to claim ({why}), got {:?} (id {}, attempt {})",
            text(&c),
            c.id,
            c.attempt
        )),
    }
}

fn ok(what: &str, r: Result<(), QueueError>) -> Result<(), String> {
    r.map_err(|e| format!("{what} failed: {e}"))
}

fn lease_lost(what: &str, r: Result<(), QueueError>) -> Result<(), String> {
    match r {
        Err(QueueError::LeaseLost { .. }) => Ok(()),
        other => Err(format!("{what}: expected Err(LeaseLost), got {other:?}")),
    }
}

/// Polls `depths()` until it equals `want`.
pub(crate) async fn depths_become(q: &dyn Queue, want: Depths, when: &str) -> Result<(), String> {
    let last = Mutex::new(None);
    let last_ref = &last;
    let seen = eventually(SETTLE, || async move {
        let d = q.depths().await;
        let matched = matches!(&d, Ok(d) if *d == want);
        *last_ref.lock().unwrap_or_else(|p| p.into_inner()) = Some(d);
        matched.then_some(())
    })
    .await;
    seen.ok_or_else(|| {
        let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
        format!("{when}: expected depths {want:?} within {SETTLE:?}, last saw {last:?}")
    })
}

/// Polls `dead_letters()` (claiming in between, for backends that notice death on claim) until
/// `id` is dead with `attempts`.
async fn dead_with(q: &dyn Queue, id: &WorkId, payload: &str, attempts: u32) -> Result<(), String> {
    let last = Mutex::new(String::from("nothing"));
    let last_ref = &last;
    let found = eventually(SETTLE, || async move {
        let note = |s: String| *last_ref.lock().unwrap_or_else(|p| p.into_inner()) = s;
        match take(q, LONG_LEASE, Duration::from_millis(100)).await {
            Ok(Some(c)) => {
                return Some(Err(format!(
                    "item {} was claimed again (attempt {}) after its attempts ran out",
                    c.id, c.attempt
                )));
            }
            Ok(None) => {}
            Err(e) => note(e),
        }
        match q.dead_letters(100).await {
            Ok(dead) => match dead.iter().find(|d| &d.id == id) {
                Some(d) if d.attempts == attempts && &d.payload[..] == payload.as_bytes() => {
                    Some(Ok(()))
                }
                Some(d) => Some(Err(format!(
                    "dead letter {id}: expected attempts {attempts} and payload {payload:?}, got {d:?}"
                ))),
                None => {
                    note(format!("{dead:?}"));
                    None
                }
            },
            Err(e) => {
                note(format!("dead_letters failed: {e}"));
                None
            }
        }
    })
    .await;
    found.unwrap_or_else(|| {
        let last = last.into_inner().unwrap_or_else(|p| p.into_inner());
        Err(format!(
            "expected {id} among the dead letters within {SETTLE:?}; last saw {last}"
        ))
    })
}

async fn priority_order(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    for (name, p) in [
        ("low-1", Priority::Low),
        ("normal-1", Priority::Normal),
        ("high-1", Priority::High),
        ("low-2", Priority::Low),
        ("high-2", Priority::High),
        ("normal-2", Priority::Normal),
    ] {
        put_new(q, work(name).priority(p).max_attempts(4)).await?;
    }
    let mut got = Vec::new();
    for _ in 0..6 {
        let c = take_some(q, LONG_LEASE, "the next item").await?;
        let want_priority = match text(&c).split('-').next() {
            Some("high") => Priority::High,
            Some("normal") => Priority::Normal,
            _ => Priority::Low,
        };
        if (c.priority, c.attempt, c.max_attempts) != (want_priority, 1, 4) {
            return Err(format!(
                "claim of {:?}: expected priority {want_priority}, attempt 1, max_attempts 4; got {}, {}, {}",
                text(&c),
                c.priority,
                c.attempt,
                c.max_attempts
            ));
        }
        got.push(text(&c));
        ok("ack", q.ack(&c.token).await)?;
    }
    let want = ["high-1", "high-2", "normal-1", "normal-2", "low-1", "low-2"];
    if got != want {
        return Err(format!("expected claim order {want:?}, got {got:?}"));
    }
    Ok(())
}

async fn fifo(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let mut want = Vec::new();
    for i in 0..20 {
        let (name, p) = if i % 4 == 3 {
            (format!("low-{i}"), Priority::Low)
        } else {
            (format!("normal-{i}"), Priority::Normal)
        };
        put_new(q, work(&name).priority(p)).await?;
        want.push(name);
    }
    // Normal items first, each lane in enqueue order.
    want.sort_by_key(|n| n.starts_with("low"));
    let mut got = Vec::new();
    for _ in 0..want.len() {
        let c = take_some(q, LONG_LEASE, "the next item").await?;
        got.push(text(&c));
        ok("ack", q.ack(&c.token).await)?;
    }
    if got != want {
        return Err(format!("expected claim order {want:?}, got {got:?}"));
    }
    Ok(())
}

async fn empty_wait(q: Arc<dyn Queue>) -> Result<(), String> {
    let wait = Duration::from_millis(400);
    let started = Instant::now();
    let got = take(&*q, LONG_LEASE, wait).await?;
    let took = started.elapsed();
    if let Some(c) = got {
        return Err(format!("claim on an empty queue returned {:?}", text(&c)));
    }
    if took < wait / 2 {
        return Err(format!(
            "claim with wait {wait:?} on an empty queue returned after {took:?}: it did not wait"
        ));
    }
    if took > wait + Duration::from_secs(5) {
        return Err(format!(
            "claim with wait {wait:?} on an empty queue returned only after {took:?}"
        ));
    }
    Ok(())
}

async fn wakes_on_enqueue(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let wait = Duration::from_secs(10);
    let claimer = async {
        let c = take(q, LONG_LEASE, wait).await;
        (c, Instant::now())
    };
    let producer = async {
        // Give the claimer time to block first; the outcome does not depend on it.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let at = Instant::now();
        (put_new(q, work("wake-up")).await, at)
    };
    let ((claimed, claimed_at), (put_result, put_at)) = tokio::join!(claimer, producer);
    put_result?;
    let c = claimed?.ok_or_else(|| format!("blocked claim (wait {wait:?}) returned nothing"))?;
    if text(&c) != "wake-up" {
        return Err(format!("expected \"wake-up\", claimed {:?}", text(&c)));
    }
    let after = claimed_at.saturating_duration_since(put_at);
    if after >= wait / 2 {
        return Err(format!(
            "blocked claim returned the item {after:?} after the enqueue: it was not woken"
        ));
    }
    ok("ack", q.ack(&c.token).await)
}

async fn lease_expiry(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let id = put_new(q, work("expiring").max_attempts(5)).await?;
    let before_claim = Instant::now();
    let first = take_some(q, SHORT_LEASE, "the item").await?;
    // Three claimers wait across the expiry; exactly one may get the item back.
    let wait = SHORT_LEASE + Duration::from_secs(3);
    let claims = join_all((1..=3).map(|n| async move {
        let c = q.claim(&worker(n), LONG_LEASE, wait).await;
        (c, before_claim.elapsed())
    }))
    .await;
    let mut got = Vec::new();
    for (c, at) in claims {
        match c {
            Ok(Some(c)) => got.push((c, at)),
            Ok(None) => {}
            Err(e) => return Err(format!("claim failed: {e}")),
        }
    }
    let [(c, at)] = got.as_slice() else {
        let ids: Vec<_> = got.iter().map(|(c, _)| (c.id.clone(), c.attempt)).collect();
        return Err(format!(
            "expected exactly one redelivery after the {SHORT_LEASE:?} lease expired, got {ids:?}"
        ));
    };
    if c.id != id || c.attempt != first.attempt + 1 || text(c) != "expiring" {
        return Err(format!(
            "expected redelivery of {id} with attempt {}, got {} attempt {} payload {:?}",
            first.attempt + 1,
            c.id,
            c.attempt,
            text(c)
        ));
    }
    if *at + SLACK < SHORT_LEASE {
        return Err(format!(
            "item redelivered {at:?} after it was claimed, before its {SHORT_LEASE:?} lease ran out"
        ));
    }
    if c.token == first.token {
        return Err(format!("redelivery reused the lease token {}", c.token));
    }
    ok("ack of the redelivered item", q.ack(&c.token).await)
}

async fn stale_token(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    put_new(q, work("contested").max_attempts(5)).await?;
    let old = take_some(q, SHORT_LEASE, "the item").await?;
    let new = take_some(q, LONG_LEASE, "the item again after its lease expired").await?;
    if new.id != old.id {
        return Err(format!("expected {} again, got {}", old.id, new.id));
    }
    lease_lost("ack with the expired token", q.ack(&old.token).await)?;
    lease_lost(
        "nack with the expired token",
        q.nack(&old.token, Duration::ZERO).await,
    )?;
    lease_lost(
        "extend with the expired token",
        q.extend(&old.token, LONG_LEASE).await,
    )?;
    take_none(q, "the stale nack must not release the current lease").await?;
    ok("ack with the current token", q.ack(&new.token).await)?;
    lease_lost("second ack with the same token", q.ack(&new.token).await)?;
    let bogus = LeaseToken::new("no-such-lease");
    lease_lost("ack with a token never issued", q.ack(&bogus).await)?;
    lease_lost(
        "extend with a token never issued",
        q.extend(&bogus, LONG_LEASE).await,
    )
}

async fn ack_for_good(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    put_new(q, work("done-once").max_attempts(3)).await?;
    let c = take_some(q, SHORT_LEASE, "the item").await?;
    ok("ack", q.ack(&c.token).await)?;
    // Past the old lease's deadline, nothing comes back.
    let wait = SHORT_LEASE + Duration::from_millis(500);
    if let Some(again) = take(q, LONG_LEASE, wait).await? {
        return Err(format!(
            "acked item came back: {} attempt {}",
            again.id, again.attempt
        ));
    }
    depths_become(q, Depths::default(), "after ack").await?;
    match q.dead_letters(10).await {
        Ok(dead) if dead.is_empty() => Ok(()),
        other => Err(format!("expected no dead letters, got {other:?}")),
    }
}

async fn nack_delay(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    put_new(q, work("retry-me").max_attempts(3)).await?;
    let first = take_some(q, LONG_LEASE, "the item").await?;
    let retry_after = Duration::from_secs(1);
    let nacked_at = Instant::now();
    ok("nack", q.nack(&first.token, retry_after).await)?;
    let again = take_some(q, LONG_LEASE, "the item after its retry-after").await?;
    let took = nacked_at.elapsed();
    if took + SLACK < retry_after {
        return Err(format!(
            "nacked item visible again after {took:?}, before its retry-after of {retry_after:?}"
        ));
    }
    if again.id != first.id || again.attempt != 2 {
        return Err(format!(
            "expected {} with attempt 2, got {} attempt {}",
            first.id, again.id, again.attempt
        ));
    }
    lease_lost("ack with the nacked token", q.ack(&first.token).await)?;
    ok("ack", q.ack(&again.token).await)
}

async fn enqueue_delay(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let delay = Duration::from_secs(1);
    let started = Instant::now();
    put_new(q, work("later").delay(delay)).await?;
    let c = take_some(q, LONG_LEASE, "the delayed item").await?;
    let took = started.elapsed();
    if took + SLACK < delay {
        return Err(format!(
            "item enqueued with delay {delay:?} was claimed after {took:?}"
        ));
    }
    ok("ack", q.ack(&c.token).await)
}

async fn extend(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    put_new(q, work("long-job").max_attempts(3)).await?;
    // 2 s, so that a busy machine does not let it lapse before the extend.
    let lease = SHORT_LEASE * 2;
    let c = take_some(q, lease, "the item").await?;
    let extended_to = Duration::from_secs(10);
    ok("extend", q.extend(&c.token, extended_to).await)?;
    let extended_at = Instant::now();
    // Wait well past the original lease: the extended lease must hold.
    let wait = lease + SHORT_LEASE;
    if let Some(other) = take(q, LONG_LEASE, wait).await? {
        let at = extended_at.elapsed();
        if at < extended_to {
            return Err(format!(
                "item claimed again {at:?} after its lease was extended by {extended_to:?} (attempt {})",
                other.attempt
            ));
        }
        return Ok(());
    }
    ok("ack after extend", q.ack(&c.token).await)?;
    lease_lost("extend after ack", q.extend(&c.token, extended_to).await)
}

async fn idempotency(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let id = put_new(q, work("first").idempotency_key("job-a")).await?;
    match put(q, work("second").idempotency_key("job-a")).await? {
        Enqueued::Duplicate(dup) if dup == id => {}
        other => {
            return Err(format!(
                "second enqueue of key job-a: expected Duplicate({id}), got {other:?}"
            ));
        }
    }
    let want = Depths {
        ready: [0, 1, 0],
        ..Depths::default()
    };
    depths_become(q, want, "after a duplicate enqueue").await?;
    let c = take_some(q, LONG_LEASE, "the keyed item").await?;
    if c.id != id || text(&c) != "first" {
        return Err(format!(
            "expected {id} with payload \"first\", got {} {:?}",
            c.id,
            text(&c)
        ));
    }
    match put(q, work("third").idempotency_key("job-a")).await? {
        Enqueued::Duplicate(dup) if dup == id => {}
        other => {
            return Err(format!(
                "enqueue of key job-a while leased: expected Duplicate({id}), got {other:?}"
            ));
        }
    }
    let other = put_new(q, work("other").idempotency_key("job-b")).await?;
    if other == id {
        return Err(format!("a different key got the same id {id}"));
    }
    let b = take_some(q, LONG_LEASE, "the job-b item").await?;
    if b.id != other {
        return Err(format!(
            "expected job-b's item {other}, claimed {} {:?}",
            b.id,
            text(&b)
        ));
    }
    take_none(q, "duplicates must not add work").await?;
    ok("ack", q.ack(&c.token).await)?;
    ok("ack", q.ack(&b.token).await)?;
    // A dead item keeps its key.
    let dead = put_new(q, work("doomed").idempotency_key("job-c").max_attempts(1)).await?;
    let d = take_some(q, LONG_LEASE, "the job-c item").await?;
    ok("nack", q.nack(&d.token, Duration::ZERO).await)?;
    dead_with(q, &dead, "doomed", 1).await?;
    match put(q, work("doomed-again").idempotency_key("job-c")).await? {
        Enqueued::Duplicate(dup) if dup == dead => Ok(()),
        other => Err(format!(
            "enqueue of a dead item's key: expected Duplicate({dead}), got {other:?}"
        )),
    }
}

async fn dead_by_nack(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let id = put_new(q, work("fails-twice").max_attempts(2)).await?;
    for attempt in 1..=2 {
        let c = take_some(q, LONG_LEASE, &format!("attempt {attempt}")).await?;
        if c.id != id || c.attempt != attempt {
            return Err(format!(
                "expected {id} attempt {attempt}, got {} attempt {}",
                c.id, c.attempt
            ));
        }
        ok("nack", q.nack(&c.token, Duration::ZERO).await)?;
    }
    dead_with(q, &id, "fails-twice", 2).await?;
    let want = Depths {
        dead: 1,
        ..Depths::default()
    };
    depths_become(q, want, "after the last nack").await
}

async fn dead_by_expiry(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    let id = put_new(q, work("abandoned").max_attempts(1)).await?;
    let c = take_some(q, SHORT_LEASE, "the item").await?;
    if c.attempt != 1 || c.max_attempts != 1 {
        return Err(format!(
            "expected attempt 1 of 1, got {} of {}",
            c.attempt, c.max_attempts
        ));
    }
    dead_with(q, &id, "abandoned", 1).await?;
    lease_lost("ack after the item died", q.ack(&c.token).await)?;
    let want = Depths {
        dead: 1,
        ..Depths::default()
    };
    depths_become(q, want, "after the last lease expired").await
}

async fn depths(q: Arc<dyn Queue>) -> Result<(), String> {
    let q = &*q;
    put_new(q, work("h").priority(Priority::High)).await?;
    put_new(q, work("n1").priority(Priority::Normal).max_attempts(1)).await?;
    put_new(q, work("n2").priority(Priority::Normal)).await?;
    for name in ["l1", "l2", "l3"] {
        put_new(q, work(name).priority(Priority::Low)).await?;
    }
    put_new(q, work("later").delay(LONG_LEASE)).await?;
    let mut want = Depths {
        ready: [1, 2, 3],
        delayed: 1,
        in_flight: 0,
        dead: 0,
    };
    depths_become(q, want, "after enqueue").await?;
    let h = take_some(q, LONG_LEASE, "the high item").await?;
    want.ready = [0, 2, 3];
    want.in_flight = 1;
    depths_become(q, want, "after one claim").await?;
    let n1 = take_some(q, LONG_LEASE, "the first normal item").await?;
    ok("nack", q.nack(&n1.token, Duration::ZERO).await)?;
    want.ready = [0, 1, 3];
    want.dead = 1;
    depths_become(q, want, "after a nack on the last attempt").await?;
    ok("ack", q.ack(&h.token).await)?;
    want.in_flight = 0;
    depths_become(q, want, "after ack").await
}

async fn zero_attempts(q: Arc<dyn Queue>) -> Result<(), String> {
    match q.enqueue(work("never").max_attempts(0)).await {
        Err(QueueError::Invalid(_)) => {}
        other => {
            return Err(format!(
                "max_attempts 0: expected Err(Invalid), got {other:?}"
            ));
        }
    }
    depths_become(&*q, Depths::default(), "after a refused enqueue").await
}

async fn concurrent(q: Arc<dyn Queue>) -> Result<(), String> {
    const ITEMS: usize = 500;
    const CLAIMERS: usize = 8;
    for i in 0..ITEMS {
        put_new(&*q, work(&format!("item-{i}"))).await?;
    }
    #[derive(Default)]
    struct Seen {
        held: HashSet<WorkId>,
        acked: HashMap<String, usize>,
        ids: HashSet<WorkId>,
        problems: Vec<String>,
    }
    let seen = Arc::new(Mutex::new(Seen::default()));
    let deadline = Instant::now() + Duration::from_secs(30);
    let tasks: Vec<_> = (0..CLAIMERS)
        .map(|n| {
            let (q, seen) = (Arc::clone(&q), Arc::clone(&seen));
            tokio::spawn(async move {
                let lock = || seen.lock().unwrap_or_else(|p| p.into_inner());
                while Instant::now() < deadline && lock().acked.len() < ITEMS {
                    let c = match q.claim(&worker(n), LONG_LEASE, EXPECT_NONE).await {
                        Ok(Some(c)) => c,
                        // Yield, in case the backend returned without waiting.
                        Ok(None) => {
                            tokio::task::yield_now().await;
                            continue;
                        }
                        Err(e) => {
                            lock()
                                .problems
                                .push(format!("claimer {n}: claim failed: {e}"));
                            return;
                        }
                    };
                    if !lock().held.insert(c.id.clone()) {
                        lock()
                            .problems
                            .push(format!("{} claimed while another claimer held it", c.id));
                    }
                    tokio::task::yield_now().await;
                    let acked = q.ack(&c.token).await;
                    let mut s = lock();
                    s.held.remove(&c.id);
                    match acked {
                        Ok(()) => {
                            *s.acked.entry(text(&c)).or_default() += 1;
                            s.ids.insert(c.id.clone());
                        }
                        Err(e) => s.problems.push(format!("ack of {} failed: {e}", c.id)),
                    }
                }
            })
        })
        .collect();
    for t in join_all(tasks).await {
        t.map_err(|e| format!("claimer task failed: {e}"))?;
    }
    let s = std::mem::take(&mut *seen.lock().unwrap_or_else(|p| p.into_inner()));
    if !s.problems.is_empty() {
        return Err(s.problems.join("; "));
    }
    let twice: Vec<_> = s.acked.iter().filter(|(_, n)| **n > 1).collect();
    if s.acked.len() != ITEMS || s.ids.len() != ITEMS || !twice.is_empty() {
        return Err(format!(
            "expected {ITEMS} items acked once each by {CLAIMERS} claimers; got {} payloads, {} ids, acked more than once: {twice:?}",
            s.acked.len(),
            s.ids.len()
        ));
    }
    depths_become(&*q, Depths::default(), "after every item was acked").await
}
