//! Where a compile runs when the farm and the local cores are shared by a build's wrappers: at
//! once on a free farm CPU or local core, else after waiting its turn on the board
//! (`waiting.rs`: the largest sources start first). A compile that has to wait does so before it
//! is preprocessed, so only the one that starts next (the head) has its text made ahead, and a
//! compile that gets a local core before its text is made runs the original command.

use crate::connect::{ConnectFailure, Coordinator, Slots, connect};
use crate::local_slots;
use crate::waiting::{Claim, Waiter, claims_now, heavier_waiting};
use hybridgrid_compiler::CompileJob;
use hybridgrid_farm_protocol::config::FarmConfig;
use std::sync::Arc;

/// What a compile does before its text is made (see [`before_preprocessing`]).
pub(crate) enum Early {
    /// Runs the original command on a local core by choice, holding its slot.
    Local(local_slots::LocalSlot),
    /// Is preprocessed for the farm, holding what it waited for.
    Preprocess(Ticket),
}

/// What a compile whose text is being made holds.
pub(crate) enum Ticket {
    /// Nothing: the board cannot be used, so it decided alone, on the farm's counts.
    None,
    /// A farm CPU that the farm showed free, taken for this text (see [`Claim`]).
    Claim(Claim),
    /// The head of the board, with no core free: its text is made while it waits for one.
    Head(Arc<Waiter>),
}

/// Before preprocessing, on the farm's counts from the connection just made: the compile waits
/// its turn on the board, unpreprocessed (the largest first; `waiting.rs`), and at the head
/// takes, in this order, a farm CPU that no other wrapper has claimed (its text is made now), a
/// free local core (the original command runs, unpreprocessed), or else keeps its place and has
/// its text made while it waits for one. The head decides alone, so two compiles never take the
/// same free CPU, which the farm counts only once a task is placed.
pub(crate) async fn before_preprocessing(
    cfg: &FarmConfig,
    client: &mut Coordinator,
    slots: Slots,
    weight: u64,
) -> Early {
    let dir = local_slots::slots_dir();
    let Some(waiter) = Waiter::join(&dir, weight).map(Arc::new) else {
        let choice = slots
            .local_is_faster()
            .then(|| local_slots::try_acquire_choice(cfg.client.local_jobs))
            .flatten();
        return choice.map_or(Early::Preprocess(Ticket::None), Early::Local);
    };
    let mut slots = slots;
    if !waiter.is_head() {
        let turn = waiter.clone();
        let _ = tokio::task::spawn_blocking(move || turn.wait_turn()).await;
        // The counts from before the wait are out of date.
        if let Ok(now) = crate::connect::refresh(cfg, client).await {
            slots = now;
        }
    }
    if !slots.less_pending(claims_now(&dir)).local_is_faster() {
        // Taken before this compile leaves the board: the next head sees the CPU taken.
        return Early::Preprocess(Claim::take(&dir).map_or(Ticket::None, Ticket::Claim));
    }
    match local_slots::try_acquire_choice(cfg.client.local_jobs) {
        Some(choice) => Early::Local(choice),
        None => Early::Preprocess(Ticket::Head(waiter)),
    }
}

/// The connection made before preprocessing, else a new one. The early one's slot counts are
/// asked again when they may have gone out of date while this text was preprocessed (see
/// [`Slots::may_be_stale`]): the local/remote choice is made on the farm's state at placement.
async fn connection(
    cfg: &FarmConfig,
    early: Option<(Coordinator, Slots)>,
) -> Result<(Coordinator, Slots), ConnectFailure> {
    match early {
        Some((mut client, slots))
            if slots.may_be_stale(local_slots::preprocess_slots(cfg.client.local_jobs)) =>
        {
            let slots = crate::connect::refresh(cfg, &mut client).await?;
            Ok((client, slots))
        }
        Some(connected) => Ok(connected),
        None => connect(cfg).await,
    }
}

/// Where a compile whose text is ready runs.
pub(crate) enum Place {
    /// On this machine, by choice, holding a local compile slot.
    Local(local_slots::LocalSlot),
    /// On the farm.
    Remote,
}

/// How long the head of the waiting compiles (`waiting.rs`) waits for a farm CPU or a local core
/// to free up before it queues on the farm anyway.
const PLACE_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// The pause between two looks at the farm's CPUs (a `Hello`) by the head of the board.
const FARM_POLL: std::time::Duration = std::time::Duration::from_millis(5);
/// The pause between two looks at the local slots (a lock attempt: much cheaper than asking the
/// farm), so that a local core that frees up is taken at once.
const LOCAL_POLL: std::time::Duration = std::time::Duration::from_millis(2);

/// The weight of a compile in the waiting order (`waiting.rs`): its source file's size.
pub(crate) fn source_weight(job: &CompileJob) -> u64 {
    std::fs::metadata(job.source()).map_or(0, |m| m.len())
}

/// Over the connection made before preprocessing (else a new one, see [`connection`]), sends
/// the compile to the farm while one of its CPUs is free, else to an idle local core. With
/// neither free, or with a heavier compile of the build waiting for one, it waits its turn on the
/// board (`waiting.rs`: the largest sources start first); at the head it waits (within
/// [`PLACE_WAIT`], asking the farm every [`FARM_POLL`]) for the first core to free up,
/// rather than queueing behind a task on a busy worker CPU: a task queued there shares that CPU
/// when it starts, and at the end of a build the tasks queued on the farm all finish late
/// together while the local cores idle.
///
/// `ticket` is what the compile took before it was preprocessed ([`before_preprocessing`]): a
/// claimed farm CPU is used at once; the head of the board keeps its place.
pub(crate) async fn place(
    cfg: &FarmConfig,
    early: Option<(Coordinator, Slots)>,
    weight: u64,
    ticket: Ticket,
) -> Result<(Coordinator, Place), ConnectFailure> {
    let mut waiter = match ticket {
        // Released as the task is sent: from then on the farm counts it.
        Ticket::Claim(_claim) => {
            let client = match early {
                Some((client, _)) => client,
                None => connect(cfg).await?.0,
            };
            return Ok((client, Place::Remote));
        }
        Ticket::Head(w) => Some(w),
        Ticket::None => None,
    };
    let (mut client, mut slots) = connection(cfg, early).await?;
    let dir = local_slots::slots_dir();
    let mut deadline = std::time::Instant::now() + PLACE_WAIT;
    loop {
        let head = match &waiter {
            Some(w) => w.is_head(),
            None => !heavier_waiting(&dir, weight),
        };
        if head {
            if !slots.less_pending(claims_now(&dir)).local_is_faster() {
                return Ok((client, Place::Remote));
            }
            if let Some(slot) = local_slots::try_acquire_choice(cfg.client.local_jobs) {
                return Ok((client, Place::Local(slot)));
            }
            if std::time::Instant::now() >= deadline {
                return Ok((client, Place::Remote));
            }
        }
        if waiter.is_none() {
            waiter = Waiter::join(&dir, weight).map(Arc::new);
        }
        match &waiter {
            Some(w) if !w.is_head() => {
                let w = w.clone();
                let _ = tokio::task::spawn_blocking(move || w.wait_turn()).await;
                // At the head now: the wait for a core starts here.
                deadline = std::time::Instant::now() + PLACE_WAIT;
            }
            _ => {
                // At the head: the local slots are looked at more often than the farm.
                let ask_farm = std::time::Instant::now() + FARM_POLL;
                while std::time::Instant::now() < ask_farm {
                    tokio::time::sleep(LOCAL_POLL).await;
                    if let Some(slot) = local_slots::try_acquire_choice(cfg.client.local_jobs) {
                        return Ok((client, Place::Local(slot)));
                    }
                }
            }
        }
        slots = crate::connect::refresh(cfg, &mut client).await?;
    }
}
