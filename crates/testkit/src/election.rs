//! The [`LeaderElection`] conformance suite.
//!
//! A backend calls it once, from its own tests, with a factory that returns a fresh election (its
//! own lease key) on every call, e.g. in `crates/queue/tests/redis_election.rs`:
//! `run_election_suite(|| async { Arc::new(RedisLeaderElection::new(&url, unique_prefix("lease")).unwrap()) as Arc<dyn LeaderElection> }).await`.
//!
//! The checks use real time with short leases (a few hundred ms), so a backend must honour ttls
//! of that size; they poll for expiry instead of sleeping a fixed time.

use crate::{check, eventually};
use hybridgrid_core::{ElectionError, FencingToken, LeaderElection, Leadership};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// A lease long enough never to lapse during a check.
const LONG: Duration = Duration::from_secs(30);
/// A lease short enough to wait out.
const SHORT: Duration = Duration::from_millis(200);
/// How long a check waits for a short lease to lapse.
const EXPIRY_WAIT: Duration = Duration::from_secs(10);

/// Runs every check against fresh elections from `make`, then fails once listing every failure.
pub async fn run_election_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn LeaderElection>>,
{
    let mut failed = Vec::new();
    check(&mut failed, "single_holder", single_holder(make().await)).await;
    check(
        &mut failed,
        "second_candidate_refused",
        second_refused(make().await),
    )
    .await;
    check(
        &mut failed,
        "expiry_hands_over_with_higher_token",
        expiry_takeover(make().await),
    )
    .await;
    check(
        &mut failed,
        "deposed_leader_is_fenced",
        deposed_is_fenced(make().await),
    )
    .await;
    check(
        &mut failed,
        "release_frees_the_lease",
        release_frees(make().await),
    )
    .await;
    assert!(
        failed.is_empty(),
        "LeaderElection conformance failures:\n{}",
        failed.join("\n")
    );
}

fn err(e: ElectionError) -> String {
    format!("unexpected error: {e}")
}

async fn acquire(
    e: &dyn LeaderElection,
    holder: &str,
    ttl: Duration,
) -> Result<Leadership, String> {
    match e.try_acquire(holder, ttl).await.map_err(err)? {
        Some(l) if l.holder == holder && l.ttl == ttl => Ok(l),
        Some(l) => Err(format!("{holder} acquired, but the lease says {l:?}")),
        None => Err(format!("{holder} could not acquire a free lease")),
    }
}

/// Waits until `holder` takes the lease (after the previous one lapses).
async fn acquire_eventually(e: &dyn LeaderElection, holder: &str) -> Result<Leadership, String> {
    eventually(EXPIRY_WAIT, || async {
        e.try_acquire(holder, LONG).await.ok().flatten()
    })
    .await
    .ok_or_else(|| {
        format!("{holder} never acquired the lease within {EXPIRY_WAIT:?} of its expiry")
    })
}

async fn expect_fenced(
    e: &dyn LeaderElection,
    presented: FencingToken,
    current: FencingToken,
) -> Result<(), String> {
    match e.check_fence(presented).await {
        Err(ElectionError::Fenced {
            presented: p,
            current: c,
        }) if (p, c) == (presented, current) => Ok(()),
        other => Err(format!(
            "check_fence({presented}) expected Fenced {{ presented: {presented}, current: {current} }}, got {other:?}"
        )),
    }
}

async fn single_holder(e: Arc<dyn LeaderElection>) -> Result<(), String> {
    let a = acquire(&*e, "cand-a", LONG).await?;
    e.check_fence(a.token)
        .await
        .map_err(|x| format!("the holder's own token {} was refused: {x}", a.token))?;
    if !e.renew(&a).await.map_err(err)? {
        return Err("renewing a held lease returned false".into());
    }
    if let Some(again) = e.try_acquire("cand-a", LONG).await.map_err(err)? {
        return Err(format!("a held lease was granted again: {again:?}"));
    }
    Ok(())
}

async fn second_refused(e: Arc<dyn LeaderElection>) -> Result<(), String> {
    let a = acquire(&*e, "cand-a", LONG).await?;
    if let Some(b) = e.try_acquire("cand-b", LONG).await.map_err(err)? {
        return Err(format!(
            "cand-b acquired {b:?} while cand-a held token {}",
            a.token
        ));
    }
    e.check_fence(a.token)
        .await
        .map_err(|x| format!("a refused candidate changed the fence: {x}"))?;
    Ok(())
}

async fn expiry_takeover(e: Arc<dyn LeaderElection>) -> Result<(), String> {
    let a = acquire(&*e, "cand-a", SHORT).await?;
    let b = acquire_eventually(&*e, "cand-b").await?;
    if b.token <= a.token {
        return Err(format!(
            "new leader's token {} is not above the expired leader's {}",
            b.token, a.token
        ));
    }
    e.check_fence(b.token)
        .await
        .map_err(|x| format!("the new leader's token was refused: {x}"))
}

async fn deposed_is_fenced(e: Arc<dyn LeaderElection>) -> Result<(), String> {
    let a = acquire(&*e, "cand-a", SHORT).await?;
    let b = acquire_eventually(&*e, "cand-b").await?;
    if e.renew(&a).await.map_err(err)? {
        return Err(format!(
            "deposed cand-a renewed token {} while cand-b holds {}",
            a.token, b.token
        ));
    }
    expect_fenced(&*e, a.token, b.token).await?;
    // A deposed leader's release must not free its successor's lease.
    e.release(&a).await.map_err(err)?;
    if let Some(c) = e.try_acquire("cand-c", LONG).await.map_err(err)? {
        return Err(format!(
            "the deposed leader's release freed cand-b's lease: cand-c got {c:?}"
        ));
    }
    if !e.renew(&b).await.map_err(err)? {
        return Err("cand-b lost its lease when the deposed cand-a released".into());
    }
    Ok(())
}

async fn release_frees(e: Arc<dyn LeaderElection>) -> Result<(), String> {
    let a = acquire(&*e, "cand-a", LONG).await?;
    e.release(&a).await.map_err(err)?;
    if e.renew(&a).await.map_err(err)? {
        return Err("renew succeeded after release".into());
    }
    let b = acquire(&*e, "cand-b", LONG)
        .await
        .map_err(|x| format!("after cand-a released: {x}"))?;
    if b.token <= a.token {
        return Err(format!(
            "token after release {} is not above {}",
            b.token, a.token
        ));
    }
    expect_fenced(&*e, a.token, b.token).await
}
