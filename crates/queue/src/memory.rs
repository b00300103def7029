//! [`MemoryQueue`]: the embedded, in-process [`Queue`] backend.
//!
//! One `parking_lot::Mutex` guards all state. Every operation is O(1) or O(log n):
//! - a `VecDeque` of item numbers per priority lane (FIFO within a lane),
//! - a min-heap of `(due, item)` for delayed items (initial delay, nack retry-after),
//! - a `BTreeSet` of `(deadline, item)` for leases, so `ack`/`extend` remove theirs in O(log n),
//! - a hash map from item number to item, and one from idempotency key to item number.
//!
//! There is no background task: every call (but an undelayed enqueue, which only reads the clock
//! for the item's ready time) first moves due delayed items to their lane and reaps expired leases. A blocked `claim` sleeps until a notification, its `wait` ends, or the
//! earliest delay/lease deadline, whichever comes first, so expired work comes back to a waiting
//! claimer even when nothing else touches the queue.

use crate::MemoryLeaderElection;
use async_trait::async_trait;
use bytes::Bytes;
use hybridgrid_core::clock::{Clock, SystemClock};
use hybridgrid_core::{
    Claim, Consumer, DEFAULT_DEAD_LETTER_LIMIT, DeadLetter, Depths, Enqueued, FencingToken,
    LeaseToken, NewWork, Priority, Queue, QueueError, WorkId, WorkerId,
};
use parking_lot::Mutex;
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Why an item was dead-lettered after its last lease expired.
const REASON_EXPIRED: &str = "lease expired";
/// Why an item was dead-lettered after a nack on its last attempt.
const REASON_NACKED: &str = "nacked";
/// Stand-in for "never" when a duration overflows `Instant` (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

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

/// A cheap hasher for the queue's own sequential `u64` item numbers (Fibonacci hashing);
/// SipHash's DoS resistance buys nothing for keys we generate ourselves.
#[derive(Default)]
struct SeqHasher(u64);

impl Hasher for SeqHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type SeqMap<V> = HashMap<u64, V, BuildHasherDefault<SeqHasher>>;

struct Item {
    id: WorkId,
    payload: Bytes,
    priority: Priority,
    key: Option<String>,
    max_attempts: u32,
    /// Claims so far; also the attempt number in the current lease's token.
    attempts: u32,
    state: ItemState,
}

enum ItemState {
    Ready,
    Delayed,
    Leased { deadline: Instant, worker: WorkerId },
    Dead { reason: &'static str },
}

#[derive(Default)]
struct State {
    next_seq: u64,
    items: SeqMap<Item>,
    /// Ready item numbers per priority (indexed by `Priority::index`), oldest first, with when
    /// each became ready.
    ready: [VecDeque<(u64, Instant)>; 3],
    /// Priority aging step (see `MemoryQueue::with_aging`).
    aging: Option<Duration>,
    /// When each worker last ran a claim.
    consumers: HashMap<WorkerId, SystemTime>,
    /// Delayed items by due time. Entries are never stale: a delayed item leaves only from here.
    delayed: BinaryHeap<Reverse<(Instant, u64)>>,
    /// Held leases by deadline.
    leases: BTreeSet<(Instant, u64)>,
    /// Idempotency key → item number, while the item is ready, delayed, leased or dead.
    keys: HashMap<String, u64>,
    /// Dead item numbers, oldest first, at most `dead_limit`.
    dead: VecDeque<u64>,
    dead_limit: usize,
    /// Claimers blocked in `claim`; only they need waking when a new earliest deadline appears.
    sleepers: usize,
}

/// What to do once the lock is released.
#[derive(Default)]
struct Effects {
    /// Items that became ready: wake that many blocked claimers.
    ready: usize,
    /// A new earliest deadline: wake every sleeper to recompute its sleep.
    rearm: bool,
    events: Vec<Event>,
}

enum Event {
    Dead {
        id: WorkId,
        attempts: u32,
        reason: &'static str,
    },
    Expired {
        id: WorkId,
        worker: WorkerId,
        attempt: u32,
    },
}

impl Effects {
    fn apply(self, notify: &Notify) {
        if self.rearm {
            notify.notify_waiters();
        }
        for _ in 0..self.ready {
            notify.notify_one();
        }
        for event in self.events {
            match event {
                Event::Dead {
                    id,
                    attempts,
                    reason,
                } => tracing::warn!(id = %id, attempts, reason, "work dead-lettered"),
                Event::Expired {
                    id,
                    worker,
                    attempt,
                } => {
                    tracing::debug!(id = %id, worker = %worker, attempt, "lease expired; work redelivered")
                }
            }
        }
    }
}

/// `a-b[-c]` in lower-case hex: ids and tokens, built without `format!` (this is the hot path).
fn hex_id(parts: &[u64]) -> String {
    let mut out = String::with_capacity(parts.len() * 9);
    for (i, &n) in parts.iter().enumerate() {
        if i > 0 {
            out.push('-');
        }
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
        for k in (0..digits).rev() {
            let d = ((n >> (4 * k)) & 0xf) as u8;
            out.push(char::from(if d < 10 { b'0' + d } else { b'a' + d - 10 }));
        }
    }
    out
}

fn deadline(now: Instant, after: Duration) -> Instant {
    now.checked_add(after)
        .or_else(|| now.checked_add(FAR_FUTURE))
        .unwrap_or(now)
}

impl State {
    fn earliest_due(&self) -> Option<Instant> {
        let delayed = self.delayed.peek().map(|Reverse((due, _))| *due);
        let lease = self.leases.first().map(|(due, _)| *due);
        match (delayed, lease) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Notes that a deadline `due` is about to be added: sleepers must recompute their sleep if
    /// it is earlier than every deadline they may have planned around.
    fn before_new_deadline(&self, due: Instant, fx: &mut Effects) {
        if self.sleepers > 0 && self.earliest_due().is_none_or(|e| due < e) {
            fx.rearm = true;
        }
    }

    fn make_ready(&mut self, seq: u64, priority: Priority, now: Instant, fx: &mut Effects) {
        self.ready[priority.index()].push_back((seq, now));
        fx.ready += 1;
    }

    /// Takes the next ready item: the head of the highest non-empty lane, or with aging the head
    /// whose ready time plus `aging` per lane below high is earliest (ties to the higher lane).
    fn pop_ready(&mut self) -> Option<u64> {
        let lane = match self.aging {
            None => self.ready.iter().position(|l| !l.is_empty())?,
            Some(step) => {
                let mut best: Option<(Instant, usize)> = None;
                for (i, lane) in self.ready.iter().enumerate() {
                    let Some(&(_, at)) = lane.front() else {
                        continue;
                    };
                    let offset = step.checked_mul(i as u32).unwrap_or(FAR_FUTURE);
                    let eff = at.checked_add(offset).unwrap_or(at);
                    if best.is_none_or(|(b, _)| eff < b) {
                        best = Some((eff, i));
                    }
                }
                best?.1
            }
        };
        self.ready[lane].pop_front().map(|(seq, _)| seq)
    }

    fn delay(&mut self, seq: u64, due: Instant, fx: &mut Effects) {
        self.before_new_deadline(due, fx);
        self.delayed.push(Reverse((due, seq)));
    }

    /// Moves due delayed items to their lanes and reaps expired leases.
    fn reap(&mut self, now: Instant, fx: &mut Effects) {
        while let Some(&Reverse((due, seq))) = self.delayed.peek() {
            if due > now {
                break;
            }
            self.delayed.pop();
            if let Some(item) = self.items.get_mut(&seq)
                && matches!(item.state, ItemState::Delayed)
            {
                item.state = ItemState::Ready;
                let priority = item.priority;
                self.make_ready(seq, priority, now, fx);
            }
        }
        while let Some(&(due, seq)) = self.leases.first() {
            if due > now {
                break;
            }
            self.leases.pop_first();
            let Some(item) = self.items.get_mut(&seq) else {
                continue;
            };
            let ItemState::Leased { worker, .. } =
                std::mem::replace(&mut item.state, ItemState::Ready)
            else {
                continue;
            };
            if item.attempts >= item.max_attempts {
                self.kill(seq, REASON_EXPIRED, fx);
            } else {
                fx.events.push(Event::Expired {
                    id: item.id.clone(),
                    worker,
                    attempt: item.attempts,
                });
                let priority = item.priority;
                self.make_ready(seq, priority, now, fx);
            }
        }
    }

    fn kill(&mut self, seq: u64, reason: &'static str, fx: &mut Effects) {
        if let Some(item) = self.items.get_mut(&seq) {
            item.state = ItemState::Dead { reason };
            self.dead.push_back(seq);
            fx.events.push(Event::Dead {
                id: item.id.clone(),
                attempts: item.attempts,
                reason,
            });
        }
        while self.dead.len() > self.dead_limit {
            let Some(old) = self.dead.pop_front() else {
                break;
            };
            if let Some(item) = self.items.remove(&old)
                && let Some(key) = item.key
            {
                self.keys.remove(&key);
            }
        }
    }

    /// Adds `work`, ready now or (with `due`) delayed until then.
    fn enqueue(
        &mut self,
        instance: u64,
        work: NewWork,
        now: Instant,
        due: Option<Instant>,
        fx: &mut Effects,
    ) -> Enqueued {
        if let Some(key) = &work.idempotency_key
            && let Some(item) = self.keys.get(key).and_then(|seq| self.items.get(seq))
        {
            return Enqueued::Duplicate(item.id.clone());
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        let id = WorkId::new(hex_id(&[instance, seq]));
        if let Some(key) = &work.idempotency_key {
            self.keys.insert(key.clone(), seq);
        }
        self.items.insert(
            seq,
            Item {
                id: id.clone(),
                payload: work.payload,
                priority: work.priority,
                key: work.idempotency_key,
                max_attempts: work.max_attempts,
                attempts: 0,
                state: if due.is_some() {
                    ItemState::Delayed
                } else {
                    ItemState::Ready
                },
            },
        );
        if let Some(due) = due {
            self.delay(seq, due, fx);
        } else {
            self.make_ready(seq, work.priority, now, fx);
        }
        Enqueued::Created(id)
    }

    fn claim(
        &mut self,
        instance: u64,
        worker: &WorkerId,
        lease: Duration,
        now: Instant,
        fx: &mut Effects,
    ) -> Option<Claim> {
        match self.consumers.get_mut(worker) {
            Some(seen) => *seen = SystemTime::now(),
            None => {
                self.consumers.insert(worker.clone(), SystemTime::now());
            }
        }
        let seq = self.pop_ready()?;
        let due = deadline(now, lease);
        self.before_new_deadline(due, fx);
        let item = self.items.get_mut(&seq)?;
        item.attempts += 1;
        item.state = ItemState::Leased {
            deadline: due,
            worker: worker.clone(),
        };
        self.leases.insert((due, seq));
        Some(Claim {
            id: item.id.clone(),
            token: LeaseToken::new(hex_id(&[instance, seq, u64::from(item.attempts)])),
            attempt: item.attempts,
            max_attempts: item.max_attempts,
            priority: item.priority,
            payload: item.payload.clone(),
        })
    }

    /// The lease deadline of `seq` if it is leased under `attempt`.
    fn held(&self, seq: u64, attempt: u32) -> Option<Instant> {
        let item = self.items.get(&seq)?;
        match item.state {
            ItemState::Leased { deadline, .. } if item.attempts == attempt => Some(deadline),
            _ => None,
        }
    }

    fn ack(&mut self, seq: u64, attempt: u32) -> Option<()> {
        let due = self.held(seq, attempt)?;
        self.leases.remove(&(due, seq));
        let item = self.items.remove(&seq)?;
        if let Some(key) = item.key {
            self.keys.remove(&key);
        }
        Some(())
    }

    fn nack(
        &mut self,
        seq: u64,
        attempt: u32,
        retry_after: Duration,
        now: Instant,
        fx: &mut Effects,
    ) -> Option<()> {
        let due = self.held(seq, attempt)?;
        self.leases.remove(&(due, seq));
        let item = self.items.get_mut(&seq)?;
        if item.attempts >= item.max_attempts {
            self.kill(seq, REASON_NACKED, fx);
        } else if retry_after.is_zero() {
            item.state = ItemState::Ready;
            let priority = item.priority;
            self.make_ready(seq, priority, now, fx);
        } else {
            item.state = ItemState::Delayed;
            self.delay(seq, deadline(now, retry_after), fx);
        }
        Some(())
    }

    fn extend(
        &mut self,
        seq: u64,
        attempt: u32,
        by: Duration,
        now: Instant,
        fx: &mut Effects,
    ) -> Option<()> {
        let old = self.held(seq, attempt)?;
        let new = deadline(now, by);
        self.leases.remove(&(old, seq));
        self.before_new_deadline(new, fx);
        self.leases.insert((new, seq));
        if let Some(Item {
            state: ItemState::Leased { deadline, .. },
            ..
        }) = self.items.get_mut(&seq)
        {
            *deadline = new;
        }
        Some(())
    }
}

#[cfg(test)]
mod tests {
    use super::hex_id;

    #[test]
    fn hex_id_matches_format() {
        for n in [
            0,
            1,
            9,
            10,
            15,
            16,
            255,
            0x1234_abcd,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            assert_eq!(hex_id(&[n]), format!("{n:x}"));
            assert_eq!(hex_id(&[n, 7, n]), format!("{n:x}-7-{n:x}"));
        }
    }
}
