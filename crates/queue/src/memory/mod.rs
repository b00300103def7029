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

use bytes::Bytes;
use hybridgrid_core::{Claim, Enqueued, LeaseToken, NewWork, Priority, WorkId, WorkerId};
use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::Notify;

/// Why an item was dead-lettered after its last lease expired.
const REASON_EXPIRED: &str = "lease expired";
/// Why an item was dead-lettered after a nack on its last attempt.
const REASON_NACKED: &str = "nacked";
/// Stand-in for "never" when a duration overflows `Instant` (about 30 years).
const FAR_FUTURE: Duration = Duration::from_secs(30 * 365 * 24 * 3600);

mod queue;
pub use queue::MemoryQueue;

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
