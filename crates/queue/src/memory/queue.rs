//! [`MemoryQueue`] itself: the [`Queue`] calls, each one lock of the shared `State`.

use super::*;
use crate::MemoryLeaderElection;
use async_trait::async_trait;
use hybridgrid_core::clock::{Clock, SystemClock};
use hybridgrid_core::{
    Consumer, DEFAULT_DEAD_LETTER_LIMIT, DeadLetter, Depths, FencingToken, Queue, QueueError,
};
use parking_lot::Mutex;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Numbers each `MemoryQueue` in the process, so a token from one queue is refused by another.
static NEXT_INSTANCE: AtomicU64 = AtomicU64::new(1);

/// The embedded work queue: priorities, leases, retries, idempotency keys and dead letters,
/// all in process memory. Nothing survives the process; use the Redis or NATS backends for that.
///
/// Semantics (shared with every backend through `hybridgrid_testkit::queue::run_queue_suite`):
/// - `claim` takes the oldest ready item of the highest non-empty priority (high, normal, low).
///   Items coming back from a nack or an expired lease join the back of their lane.
/// - A claim leases the item for `lease`; unless acked, nacked or extended in time it becomes
///   ready again, or is dead-lettered with reason `lease expired` if that was its last attempt.
/// - An item is dead-lettered once it has been claimed `max_attempts` times and the last claim
///   ends in a nack (reason `nacked`) or an expired lease.
/// - An idempotency key is known while its item is ready, delayed, leased or dead. After the item
///   is acked the key is forgotten and may be enqueued again as new work (the memory backend keeps
///   no history of completed work).
/// - Dead letters are kept, oldest first, up to [`MemoryQueue::with_dead_letter_limit`]
///   ([`DEFAULT_DEAD_LETTER_LIMIT`] by default); past it the oldest is dropped, its key forgotten.
/// - With [`MemoryQueue::with_aging`], priorities age as in every backend: an item's claim order
///   is its ready time plus `aging` per lane below high, so no item is claimed after a high item
///   that became ready more than `2 × aging` after it.
/// - [`Queue::enqueue_fenced`] checks a [`MemoryLeaderElection`] registered with
///   [`MemoryQueue::add_fence`] under the election's lock, so no new leader can be elected between
///   the check and the enqueue.
///
/// Cloning is cheap and shares the queue.
///
/// ```
/// use hybridgrid_core::{NewWork, Queue, WorkerId};
/// use hybridgrid_queue::MemoryQueue;
/// use std::time::Duration;
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), hybridgrid_core::QueueError> {
/// let queue = MemoryQueue::new();
/// queue.enqueue(NewWork::new(&b"job"[..]).idempotency_key("job-1")).await?;
/// let worker = WorkerId::new("w1");
/// let claim = queue
///     .claim(&worker, Duration::from_secs(30), Duration::ZERO)
///     .await?
///     .expect("one item is ready");
/// queue.ack(&claim.token).await?;
/// assert_eq!(queue.depths().await?.ready_total(), 0);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct MemoryQueue {
    shared: Arc<Shared>,
}

struct Shared {
    state: Mutex<State>,
    /// Wakes blocked claimers: `notify_one` per item made ready, `notify_waiters` when a new
    /// deadline becomes the earliest one (sleepers then recompute how long to sleep).
    notify: Notify,
    clock: Arc<dyn Clock>,
    /// This queue's number, part of every id and token it hands out.
    instance: u64,
    /// Fencing counters by name, for `enqueue_fenced`.
    fences: Mutex<HashMap<String, Arc<MemoryLeaderElection>>>,
}

impl std::fmt::Debug for MemoryQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.shared.state.lock();
        f.debug_struct("MemoryQueue")
            .field("instance", &self.shared.instance)
            .field("items", &s.items.len())
            .field(
                "ready",
                &[s.ready[0].len(), s.ready[1].len(), s.ready[2].len()],
            )
            .field("delayed", &s.delayed.len())
            .field("in_flight", &s.leases.len())
            .field("dead", &s.dead.len())
            .finish()
    }
}

impl Default for MemoryQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryQueue {
    /// An empty queue on the system clock. Needs no runtime until it is used.
    pub fn new() -> Self {
        Self::with_clock(Arc::new(SystemClock))
    }

    /// An empty queue whose leases and delays follow `clock` (a `ManualClock` in tests).
    /// A blocked `claim` still waits in real time; with a manual clock, claim with `wait` zero.
    pub fn with_clock(clock: Arc<dyn Clock>) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State {
                    dead_limit: DEFAULT_DEAD_LETTER_LIMIT,
                    ..State::default()
                }),
                notify: Notify::new(),
                clock,
                instance: NEXT_INSTANCE.fetch_add(1, Ordering::Relaxed),
                fences: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Turns on priority aging: an item is claimed in the order of its ready time plus `aging`
    /// per lane below high (normal `+aging`, low `+2×aging`); ties go to the higher lane. Strict
    /// priorities (the default) starve low work under a sustained high load; with aging a low item
    /// is never claimed after a high item that became ready more than `2 × aging` after it.
    pub fn with_aging(self, aging: Duration) -> Self {
        self.shared.state.lock().aging = Some(aging);
        self
    }

    /// Keeps at most `limit` dead letters (at least 1; default [`DEFAULT_DEAD_LETTER_LIMIT`]):
    /// past it the oldest is dropped, with its payload and idempotency key.
    pub fn with_dead_letter_limit(self, limit: usize) -> Self {
        self.shared.state.lock().dead_limit = limit.max(1);
        self
    }

    /// Registers `election`'s fencing counter under `fence`, the name
    /// [`Queue::enqueue_fenced`] is then called with.
    pub fn add_fence(&self, fence: impl Into<String>, election: Arc<MemoryLeaderElection>) {
        self.shared.fences.lock().insert(fence.into(), election);
    }

    /// Parses one of this queue's tokens (`<instance>-<item>-<attempt>`, hex) into
    /// `(item, attempt)`. Anything else is a lease this queue never granted.
    fn parse_token(&self, token: &LeaseToken) -> Result<(u64, u32), QueueError> {
        let lost = || QueueError::LeaseLost {
            token: token.clone(),
        };
        let mut parts = token.as_str().splitn(3, '-');
        let mut next = || parts.next().and_then(|p| u64::from_str_radix(p, 16).ok());
        let (instance, seq, attempt) = (next(), next(), next());
        match (instance, seq, attempt) {
            (Some(i), Some(seq), Some(a)) if i == self.shared.instance => {
                Ok((seq, u32::try_from(a).map_err(|_| lost())?))
            }
            _ => Err(lost()),
        }
    }

    /// Runs `f` on the state after reaping due deadlines, then wakes claimers and logs what
    /// happened, outside the lock.
    fn with_state<R>(&self, f: impl FnOnce(&mut State, Instant, &mut Effects) -> R) -> R {
        let now = self.shared.clock.now();
        let mut fx = Effects::default();
        let out = {
            let mut state = self.shared.state.lock();
            state.reap(now, &mut fx);
            f(&mut state, now, &mut fx)
        };
        fx.apply(&self.shared.notify);
        out
    }

    /// One non-blocking claim attempt. When nothing is ready and `sleep` is set, registers the
    /// caller as a sleeper and returns how long until the earliest deadline, if any.
    fn try_claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        sleep: bool,
    ) -> (Option<Claim>, Option<Duration>) {
        let instance = self.shared.instance;
        self.with_state(|s, now, fx| {
            if let Some(claim) = s.claim(instance, worker, lease, now, fx) {
                // The item we took needs no other claimer woken for it.
                fx.ready = fx.ready.saturating_sub(1);
                return (Some(claim), None);
            }
            if sleep {
                s.sleepers += 1;
            }
            (
                None,
                s.earliest_due().map(|d| d.saturating_duration_since(now)),
            )
        })
    }
}

/// Lets the tokio scheduler run other tasks once this task has used up its budget: no call
/// here ever waits on I/O, so a loop of them (say, claims with no wait on an empty queue) would
/// otherwise hold its worker thread indefinitely.
async fn cooperate() {
    tokio::task::coop::consume_budget().await;
}

/// Decrements the sleeper count when a blocked claim wakes up or is dropped.
struct Sleeping<'a>(&'a Shared);

impl Drop for Sleeping<'_> {
    fn drop(&mut self) {
        self.0.state.lock().sleepers -= 1;
    }
}

#[async_trait]
impl Queue for MemoryQueue {
    async fn enqueue(&self, work: NewWork) -> Result<Enqueued, QueueError> {
        cooperate().await;
        if work.max_attempts == 0 {
            return Err(QueueError::Invalid(format!(
                "max_attempts must be at least 1 (idempotency key {:?})",
                work.idempotency_key
            )));
        }
        let instance = self.shared.instance;
        if work.delay.is_zero() {
            // No deadline involved: no reaping; the next claim reaps whatever is due.
            let now = self.shared.clock.now();
            let mut fx = Effects::default();
            let created = self
                .shared
                .state
                .lock()
                .enqueue(instance, work, now, None, &mut fx);
            fx.apply(&self.shared.notify);
            return Ok(created);
        }
        Ok(self.with_state(|s, now, fx| {
            let due = deadline(now, work.delay);
            s.enqueue(instance, work, now, Some(due), fx)
        }))
    }

    async fn enqueue_fenced(
        &self,
        work: NewWork,
        fence: &str,
        token: FencingToken,
    ) -> Result<Enqueued, QueueError> {
        let election = self.shared.fences.lock().get(fence).cloned();
        let Some(election) = election else {
            return Err(QueueError::Invalid(format!(
                "no fence {fence:?} registered with this MemoryQueue (see MemoryQueue::add_fence)"
            )));
        };
        if work.max_attempts == 0 {
            return Err(QueueError::Invalid(format!(
                "max_attempts must be at least 1 (idempotency key {:?})",
                work.idempotency_key
            )));
        }
        let instance = self.shared.instance;
        election
            .while_current(token, || {
                self.with_state(|s, now, fx| {
                    let due = (!work.delay.is_zero()).then(|| deadline(now, work.delay));
                    s.enqueue(instance, work, now, due, fx)
                })
            })
            .map_err(|current| QueueError::Fenced {
                fence: fence.to_owned(),
                presented: token,
                current,
            })
    }

    async fn consumers(&self) -> Result<Vec<Consumer>, QueueError> {
        let s = self.shared.state.lock();
        Ok(s.consumers
            .iter()
            .map(|(worker, seen)| Consumer {
                worker: worker.clone(),
                last_fetch: *seen,
            })
            .collect())
    }

    async fn claim(
        &self,
        worker: &WorkerId,
        lease: Duration,
        wait: Duration,
    ) -> Result<Option<Claim>, QueueError> {
        cooperate().await;
        let (claim, _) = self.try_claim(worker, lease, false);
        if claim.is_some() || wait.is_zero() {
            return Ok(claim);
        }
        let started = tokio::time::Instant::now();
        let until = started.checked_add(wait);
        loop {
            let mut notified = pin!(self.shared.notify.notified());
            notified.as_mut().enable();
            let (claim, next_due) = self.try_claim(worker, lease, true);
            if claim.is_some() {
                return Ok(claim);
            }
            // `try_claim` counted us as a sleeper; the guard uncounts us however we leave.
            let _sleeping = Sleeping(&self.shared);
            let now = tokio::time::Instant::now();
            if until.is_some_and(|u| now >= u) {
                return Ok(None);
            }
            let due = next_due.and_then(|d| now.checked_add(d));
            let wake = match (until, due) {
                (Some(u), Some(d)) => Some(u.min(d)),
                (u, d) => u.or(d),
            };
            match wake {
                Some(at) => {
                    tokio::select! {
                        _ = notified => {}
                        _ = tokio::time::sleep_until(at) => {}
                    }
                }
                None => notified.await,
            }
        }
    }

    async fn ack(&self, token: &LeaseToken) -> Result<(), QueueError> {
        cooperate().await;
        let (seq, attempt) = self.parse_token(token)?;
        self.with_state(|s, _, _| s.ack(seq, attempt))
            .ok_or_else(|| QueueError::LeaseLost {
                token: token.clone(),
            })
    }

    async fn nack(&self, token: &LeaseToken, retry_after: Duration) -> Result<(), QueueError> {
        cooperate().await;
        let (seq, attempt) = self.parse_token(token)?;
        self.with_state(|s, now, fx| s.nack(seq, attempt, retry_after, now, fx))
            .ok_or_else(|| QueueError::LeaseLost {
                token: token.clone(),
            })
    }

    async fn extend(&self, token: &LeaseToken, by: Duration) -> Result<(), QueueError> {
        cooperate().await;
        let (seq, attempt) = self.parse_token(token)?;
        self.with_state(|s, now, fx| s.extend(seq, attempt, by, now, fx))
            .ok_or_else(|| QueueError::LeaseLost {
                token: token.clone(),
            })
    }

    async fn depths(&self) -> Result<Depths, QueueError> {
        Ok(self.with_state(|s, _, _| Depths {
            ready: [0, 1, 2].map(|i| s.ready[i].len() as u64),
            delayed: s.delayed.len() as u64,
            in_flight: s.leases.len() as u64,
            dead: s.dead.len() as u64,
        }))
    }

    async fn dead_letters(&self, limit: usize) -> Result<Vec<DeadLetter>, QueueError> {
        Ok(self.with_state(|s, _, _| {
            s.dead
                .iter()
                .take(limit)
                .filter_map(|seq| {
                    let item = s.items.get(seq)?;
                    let ItemState::Dead { reason } = item.state else {
                        return None;
                    };
                    Some(DeadLetter {
                        id: item.id.clone(),
                        payload: item.payload.clone(),
                        attempts: item.attempts,
                        reason: reason.to_owned(),
                    })
                })
                .collect()
        }))
    }
}
