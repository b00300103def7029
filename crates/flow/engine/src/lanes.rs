//! The engine's write path: ended attempts and new runs go to one of several write lanes, each
//! a task that writes what reached it meanwhile in one transaction (group commit: one commit,
//! so one flush, per batch), claims in it the steps it made ready, and hands those to runners.
//!
//! One lane suits SQLite (one writer at a time: a second lane would only wait for the lock).
//! On PostgreSQL several lanes keep several transactions in flight, so commits overlap and a
//! lone trigger does not wait behind a write already in flight. A run's completions always go
//! to the same lane (its rows are written by one transaction at a time, so lanes never wait on
//! each other's row locks); a new run goes to the least busy lane. Claims lock with
//! `SKIP LOCKED`, so two lanes never wait on each other there either.
//!
//! Slots: at most `max_parallel` attempts run at once. An ended attempt hands its slot to its
//! completion, and the lane reuses it for a step claimed in the same transaction; a lane never
//! waits for a slot (it claims only as many steps as it holds slots), so lanes cannot block
//! one another through slots.

use crate::core::{Core, Write};
use crate::runner::run_step;
use hybridgrid_core::store::{RunStatus, Step, StoreError};
use hybridgrid_core::store_flow::{FlowBatch, StepClaim};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinSet;

/// Most writes (ended attempts, new runs) in one transaction.
const COMPLETION_BATCH: usize = 512;

/// A claimed attempt: run, step, attempt.
pub(crate) type AttemptKey = (String, String, u32);

/// The lanes' inboxes, how busy each is, and the slots of the attempts running here.
pub(crate) struct Lanes {
    inboxes: Vec<mpsc::UnboundedSender<Write>>,
    receivers: Mutex<Vec<mpsc::UnboundedReceiver<Write>>>,
    /// Writes queued on or being written by each lane.
    load: Vec<AtomicUsize>,
    /// The slot of each attempt running here, until its completion takes it.
    slots: Mutex<HashMap<AttemptKey, OwnedSemaphorePermit>>,
}

impl Lanes {
    /// `n` lanes (at least one).
    pub(crate) fn new(n: usize) -> Self {
        let (inboxes, receivers) = (0..n.max(1)).map(|_| mpsc::unbounded_channel()).unzip();
        Self {
            inboxes,
            receivers: Mutex::new(receivers),
            load: (0..n.max(1)).map(|_| AtomicUsize::new(0)).collect(),
            slots: Mutex::new(HashMap::new()),
        }
    }

    /// The lane of a run's completions.
    fn of_run(&self, run: &str) -> usize {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        run.hash(&mut h);
        (h.finish() % self.inboxes.len() as u64) as usize
    }

    /// The lane with the fewest writes queued or in flight (the first of equals).
    fn least_busy(&self) -> usize {
        (0..self.load.len())
            .min_by_key(|&i| self.load[i].load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// Queues `w` on its lane; gives it back when the lanes have stopped.
    pub(crate) fn send(&self, w: Write) -> Result<(), Box<Write>> {
        let lane = match &w {
            Write::Complete(f) => self.of_run(f.completion.run.as_str()),
            Write::Launch(_) => self.least_busy(),
        };
        self.load[lane].fetch_add(1, Ordering::Relaxed);
        self.inboxes[lane].send(w).map_err(|e| {
            self.load[lane].fetch_sub(1, Ordering::Relaxed);
            Box::new(e.0)
        })
    }

    /// The slot an attempt holds, for its completion to carry to its lane.
    pub(crate) fn take_slot(&self, key: &AttemptKey) -> Option<OwnedSemaphorePermit> {
        self.slots.lock().remove(key)
    }
}

/// Runs the lanes until shutdown, then gives this engine's claimed steps back.
pub(crate) async fn claim_loop(core: Arc<Core>) {
    let receivers = std::mem::take(&mut *core.lanes.receivers.lock());
    if receivers.is_empty() {
        tracing::error!("claim loop started twice");
        return;
    }
    let slots = Arc::new(Semaphore::new(core.config.max_parallel.max(1)));
    futures::future::join_all(
        receivers
            .into_iter()
            .enumerate()
            .map(|(i, rx)| lane(core.clone(), i, rx, slots.clone())),
    )
    .await;
    if let Err(e) = core.store.release_leases(&core.engine_id).await {
        tracing::warn!(error = %e, "releasing leases at shutdown failed; they expire by themselves");
    }
}

/// Every slot free now, added to `held`.
fn reserve(slots: &Arc<Semaphore>, held: &mut Vec<OwnedSemaphorePermit>) {
    while let Ok(p) = slots.clone().try_acquire_owned() {
        held.push(p);
    }
}

/// One lane. Lane 0 also claims steps made ready elsewhere, due retries and expired leases, at
/// least every `poll_interval` and at once when work is made ready here.
async fn lane(
    core: Arc<Core>,
    index: usize,
    mut inbox: mpsc::UnboundedReceiver<Write>,
    slots: Arc<Semaphore>,
) {
    let polls = index == 0;
    let poll = *core.config.poll_interval;
    let mut running = JoinSet::new();
    let mut next_poll = Instant::now();
    let mut claim_now = polls;
    let mut first: Option<Write> = None;
    loop {
        while running.try_join_next().is_some() {}
        let mut batch: Vec<Write> = first.take().into_iter().collect();
        while batch.len() < COMPLETION_BATCH {
            match inbox.try_recv() {
                Ok(w) => batch.push(w),
                Err(_) => break,
            }
        }
        let mut held = Vec::new();
        let mut claimed = Vec::new();
        if !batch.is_empty() {
            let n = batch.len();
            for w in &mut batch {
                if let Write::Complete(f) = w
                    && let Some(p) = f.slot.take()
                {
                    held.push(p);
                }
            }
            reserve(&slots, &mut held);
            let (got, unclaimed) = write_batch(&core, batch, held.len()).await;
            core.lanes.load[index].fetch_sub(n, Ordering::Relaxed);
            claimed = got;
            if unclaimed {
                // Ready steps this lane had no slot for: slots free up as attempts end.
                if polls {
                    claim_now = true;
                } else {
                    core.work.notify_one();
                }
            }
        }
        if polls && (claim_now || Instant::now() >= next_poll) {
            claim_now = false;
            next_poll = Instant::now() + poll;
            reserve(&slots, &mut held);
            let free = held.len().saturating_sub(claimed.len());
            if free > 0 {
                match core
                    .store
                    .claim_steps(&core.engine_id, *core.config.lease, free)
                    .await
                {
                    Ok(more) => claimed.extend(more),
                    Err(e) => tracing::warn!(error = %e, "claim_failed"),
                }
            }
        }
        let busy = !claimed.is_empty();
        for step in claimed {
            let Some(permit) = held.pop() else {
                // Never: a claim asks for at most as many steps as there are slots held.
                tracing::error!(run = %step.run_id, step = %step.name, "claimed a step without a slot; its lease lapses");
                continue;
            };
            let key: AttemptKey = (step.run_id.to_string(), step.name.clone(), step.attempt);
            core.lanes.slots.lock().insert(key.clone(), permit);
            let core = core.clone();
            running.spawn(async move {
                run_step(core.clone(), step).await;
                // Ended without a completion (stale, cancelled): the slot is free again.
                drop(core.lanes.take_slot(&key));
            });
        }
        drop(held);
        if busy {
            continue;
        }
        tokio::select! {
            _ = core.shutdown.cancelled() => break,
            _ = core.work.notified(), if polls => claim_now = true,
            _ = tokio::time::sleep(next_poll.saturating_duration_since(Instant::now())), if polls => {}
            w = inbox.recv() => match w {
                Some(w) => first = Some(w),
                None => break,
            },
        }
    }
    // Shutting down: attempts here are cancelled; their steps are given back by the caller.
    running.abort_all();
    while running.join_next().await.is_some() {}
}

/// Writes a batch of new runs and ended attempts in one transaction that also claims up to
/// `free` ready steps; answers each writer once it is committed. Returns the claimed steps and
/// whether steps made ready by the batch were left unclaimed.
async fn write_batch(core: &Core, batch: Vec<Write>, free: usize) -> (Vec<Step>, bool) {
    let mut launches = Vec::new();
    let mut launch_replies = Vec::new();
    let mut completions = Vec::new();
    let mut replies = Vec::new();
    for w in batch {
        match w {
            Write::Complete(f) => {
                completions.push(f.completion);
                replies.push(f.reply);
            }
            Write::Launch(l) => {
                launches.push(l.launch);
                launch_replies.push(l.reply);
            }
        }
    }
    let claim = (free > 0).then(|| StepClaim {
        owner: core.engine_id.clone(),
        lease: *core.config.lease,
        limit: free,
    });
    let batch = FlowBatch {
        launches,
        completions,
        claim,
    };
    // Steps a launch makes ready at once (those that wait on nothing).
    let mut ready: usize = batch
        .launches
        .iter()
        .flat_map(|l| &l.steps)
        .filter(|s| s.status == RunStatus::Pending && s.waiting_on == 0)
        .count();
    match core.store.write_batch(batch).await {
        Ok(done) => {
            for (reply, result) in launch_replies.into_iter().zip(done.launched) {
                let _ = reply.send(result);
            }
            for (reply, result) in replies.into_iter().zip(done.completed) {
                if let Ok(c) = &result {
                    ready = ready.saturating_add(c.ready.len());
                }
                let _ = reply.send(result);
            }
            let unclaimed = ready > done.claimed.len();
            (done.claimed, unclaimed)
        }
        Err(e) => {
            let reason = e.to_string();
            let failed = || StoreError::Backend {
                backend: "flow-engine",
                source: reason.clone().into(),
            };
            for reply in launch_replies {
                let _ = reply.send(Err(failed()));
            }
            for reply in replies {
                let _ = reply.send(Err(failed()));
            }
            (Vec::new(), false)
        }
    }
}
