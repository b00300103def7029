//! [`Registry`]: the workers known to a coordinator, and placement of one task on one of them.
//!
//! Placement is a scan over the workers that offer the requested toolchain (an index per distinct
//! toolchain, so a request only looks at plausible workers), reading a few atomics per worker and
//! allocating nothing. It takes the registry's read lock only; slots are reserved with a
//! compare-and-swap, so many tokio tasks place at once. Upserts and removals take the write lock.

use crate::breaker::{Hint, KeyCircuit, KeyedBreaker};
use hybridgrid_core::{CircuitStatus, DiscoverySource, Outcome, Toolchain, WorkerId, WorkerInfo};
use parking_lot::RwLock;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

/// Weight of the newest task duration in a worker's moving average.
const EWMA_ALPHA: f64 = 0.3;
/// How many candidates refused at reservation (lost race, probe already out) one call skips before giving up.
const MAX_SKIPS: usize = 16;

/// What a task needs from the worker that runs it.
///
/// ```
/// use hybridgrid_core::{Toolchain, WorkerId};
/// use hybridgrid_scheduler::PlacementRequest;
/// let gcc = Toolchain { name: "gcc".into(), version: "12.2.0".into(), target: "x86_64-linux-gnu".into(), binary_hash: String::new() };
/// let req = PlacementRequest::new("x86_64", "linux").toolchain(gcc).exclude(WorkerId::new("w3"));
/// assert_eq!(req.exclude.len(), 1);
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PlacementRequest {
    /// Required CPU architecture (`x86_64`); `None` accepts any.
    pub arch: Option<String>,
    /// Required operating system (`linux`); `None` accepts any.
    pub os: Option<String>,
    /// Required toolchain, compared with [`Toolchain::matches`]; `None` accepts any worker.
    pub toolchain: Option<Toolchain>,
    /// Workers not to use (this task already failed there).
    pub exclude: Vec<WorkerId>,
}

impl PlacementRequest {
    /// A request for a worker of this architecture and operating system.
    pub fn new(arch: impl Into<String>, os: impl Into<String>) -> Self {
        Self {
            arch: Some(arch.into()),
            os: Some(os.into()),
            ..Self::default()
        }
    }
    /// Requires `toolchain`.
    pub fn toolchain(mut self, toolchain: Toolchain) -> Self {
        self.toolchain = Some(toolchain);
        self
    }
    /// Excludes `worker`.
    pub fn exclude(mut self, worker: WorkerId) -> Self {
        self.exclude.push(worker);
        self
    }
}

/// Why no worker was chosen; [`as_str`](Self::as_str) is the `fallback_reason` label.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum NoPlacement {
    /// No worker is registered.
    #[error("no workers registered")]
    NoWorkers,
    /// No registered worker has the requested arch, os and toolchain.
    #[error("no worker offers the requested arch, os and toolchain")]
    NoMatchingToolchain,
    /// Every matching worker is excluded by the request (the task already failed on each).
    #[error("every matching worker is excluded for this task")]
    AllExcluded,
    /// Every matching worker that is not refused by its circuit has all its slots taken.
    #[error("every matching worker is busy")]
    AllBusy,
    /// Every matching worker's circuit is open.
    #[error("every matching worker's circuit is open")]
    AllCircuitsOpen,
}

impl NoPlacement {
    /// `no_workers`, `no_matching_toolchain`, `all_excluded`, `all_busy` or `all_circuits_open`.
    pub fn as_str(self) -> &'static str {
        match self {
            NoPlacement::NoWorkers => "no_workers",
            NoPlacement::NoMatchingToolchain => "no_matching_toolchain",
            NoPlacement::AllExcluded => "all_excluded",
            NoPlacement::AllBusy => "all_busy",
            NoPlacement::AllCircuitsOpen => "all_circuits_open",
        }
    }
}

/// One worker's figures, for `/api/stats` and the dashboard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WorkerStats {
    /// Worker id.
    pub id: WorkerId,
    /// `host:port` of its endpoint.
    pub addr: String,
    /// How it became known.
    pub source: DiscoverySource,
    /// Tasks it runs at once.
    pub slots: u32,
    /// CPUs it has (its capabilities).
    pub cpus: u32,
    /// Tasks placed on it and not yet finished.
    pub in_flight: u32,
    /// Tasks it finished successfully.
    pub done: u64,
    /// Tasks that failed on it (infrastructure failures).
    pub failed: u64,
    /// Its circuit.
    pub circuit: CircuitStatus,
    /// Moving average of its successful task durations, in milliseconds; `None` until measured.
    pub ewma_ms: Option<f64>,
}

/// Live counters of one worker id; shared by every [`Entry`] version and [`Placement`] of it.
#[derive(Debug)]
struct Load {
    in_flight: AtomicU32,
    slots: AtomicU32,
    /// Moving average of task duration in nanoseconds; 0 = not measured yet.
    ewma_nanos: AtomicU64,
    done: AtomicU64,
    failed: AtomicU64,
    circuit: Arc<KeyCircuit>,
}

#[derive(Debug)]
struct Entry {
    info: WorkerInfo,
    load: Arc<Load>,
}

/// A compact scan record: everything placement reads before it settles on a worker.
#[derive(Clone, Debug)]
struct Candidate {
    load: Arc<Load>,
    entry: u32,
    arch: u16,
    os: u16,
}

#[derive(Debug, Default)]
struct Inner {
    entries: Vec<Arc<Entry>>,
    by_id: HashMap<WorkerId, usize>,
    archs: Vec<String>,
    oses: Vec<String>,
    /// Distinct toolchains offered, and per toolchain the workers offering it.
    toolchains: Vec<Toolchain>,
    toolchain_ids: HashMap<Toolchain, usize>,
    by_toolchain: Vec<Vec<Candidate>>,
    all: Vec<Candidate>,
    /// Counters of removed workers that still have tasks in flight, reused if they return.
    retired: HashMap<WorkerId, Arc<Load>>,
}

/// The id of arch/OS strings past the first `u16::MAX` distinct ones: matches no request that
/// names an arch or OS (their ids are all below it), so a flood of made-up names can neither
/// wrap onto a real one nor grow the table without bound.
const OVERFLOW_ID: u16 = u16::MAX;

fn intern(table: &mut Vec<String>, s: &str) -> u16 {
    match table.iter().position(|t| t == s) {
        Some(i) => u16::try_from(i).unwrap_or(OVERFLOW_ID),
        None => match u16::try_from(table.len()) {
            Ok(id) if id < OVERFLOW_ID => {
                table.push(s.to_owned());
                id
            }
            _ => OVERFLOW_ID,
        },
    }
}

impl Inner {
    /// Adds entry `idx` to the scan indexes.
    fn index(&mut self, idx: usize) {
        let entry = self.entries[idx].clone();
        let caps = &entry.info.capabilities;
        let cand = Candidate {
            load: entry.load.clone(),
            entry: idx as u32,
            arch: intern(&mut self.archs, &caps.arch),
            os: intern(&mut self.oses, &caps.os),
        };
        for tc in &caps.toolchains {
            let t = match self.toolchain_ids.get(tc) {
                Some(t) => *t,
                None => {
                    self.toolchains.push(tc.clone());
                    self.by_toolchain.push(Vec::new());
                    self.toolchain_ids
                        .insert(tc.clone(), self.toolchains.len() - 1);
                    self.toolchains.len() - 1
                }
            };
            let list = &mut self.by_toolchain[t];
            // A worker listing the same toolchain twice is indexed once.
            if list.last().is_none_or(|c| c.entry != cand.entry) {
                list.push(cand.clone());
            }
        }
        self.all.push(cand);
    }

    /// Rebuilds every index from `entries` (after a removal or a change of capabilities).
    fn reindex(&mut self) {
        let entries = std::mem::take(&mut self.entries);
        let retired = std::mem::take(&mut self.retired);
        *self = Inner {
            entries,
            retired,
            ..Inner::default()
        };
        for idx in 0..self.entries.len() {
            self.by_id.insert(self.entries[idx].info.id.clone(), idx);
            self.index(idx);
        }
    }

    fn wanted(table: &[String], want: &Option<String>) -> Result<Option<u16>, NoPlacement> {
        match want {
            None => Ok(None),
            Some(w) => match table
                .iter()
                .position(|t| t == w)
                .and_then(|i| u16::try_from(i).ok())
                .filter(|i| *i != OVERFLOW_ID)
            {
                Some(i) => Ok(Some(i)),
                None => Err(NoPlacement::NoMatchingToolchain),
            },
        }
    }

    /// Calls `f` on every candidate matching `req`'s toolchain, arch and os, starting each list at `start`.
    fn for_each_match<'a>(
        &'a self,
        req: &PlacementRequest,
        arch: Option<u16>,
        os: Option<u16>,
        start: usize,
        mut f: impl FnMut(&'a Candidate),
    ) {
        let mut visit = |list: &'a [Candidate]| {
            if list.is_empty() {
                return;
            }
            let split = start % list.len();
            for c in list[split..].iter().chain(&list[..split]) {
                if arch.is_none_or(|a| a == c.arch) && os.is_none_or(|o| o == c.os) {
                    f(c);
                }
            }
        };
        match &req.toolchain {
            None => visit(&self.all),
            Some(want) => {
                for (t, tc) in self.toolchains.iter().enumerate() {
                    if tc.matches(want) {
                        visit(&self.by_toolchain[t]);
                    }
                }
            }
        }
    }

    fn excluded(&self, req: &PlacementRequest, c: &Candidate) -> bool {
        !req.exclude.is_empty()
            && req
                .exclude
                .contains(&self.entries[c.entry as usize].info.id)
    }
}

/// The workers a coordinator knows, their load and measured speed, and placement over them.
///
/// ```
/// use hybridgrid_core::clock::SystemClock;
/// use hybridgrid_core::{Capabilities, DiscoverySource, Outcome, WorkerId, WorkerInfo};
/// use hybridgrid_scheduler::{BreakerConfig, KeyedBreaker, NoPlacement, PlacementRequest, Registry};
/// use std::sync::Arc;
/// use std::time::Duration;
///
/// let breaker = Arc::new(KeyedBreaker::new(BreakerConfig::default(), Arc::new(SystemClock)).unwrap());
/// let registry = Registry::new(breaker);
/// registry.upsert_worker(WorkerInfo {
///     id: WorkerId::new("w1"),
///     addr: "10.0.0.5:50052".into(),
///     capabilities: Capabilities { arch: "x86_64".into(), os: "linux".into(), slots: 1, ..Default::default() },
///     protocol_version: 1,
///     source: DiscoverySource::Static,
/// });
/// let req = PlacementRequest::new("x86_64", "linux");
/// let placed = registry.place(&req).unwrap();
/// assert_eq!(placed.worker().addr, "10.0.0.5:50052");
/// assert_eq!(registry.place(&req).unwrap_err(), NoPlacement::AllBusy); // its one slot is taken
/// placed.complete(Outcome::Success, Duration::from_millis(800));
/// assert!(registry.place(&req).is_ok());
/// ```
#[derive(Debug)]
pub struct Registry {
    inner: RwLock<Inner>,
    breaker: Arc<KeyedBreaker>,
    cursor: AtomicUsize,
}

impl Registry {
    /// An empty registry whose workers are guarded by `breaker` (keyed by worker id).
    pub fn new(breaker: Arc<KeyedBreaker>) -> Self {
        Self {
            inner: RwLock::new(Inner::default()),
            breaker,
            cursor: AtomicUsize::new(0),
        }
    }

    /// The breaker guarding the workers, e.g. to `trip(id, "output_mismatch")`.
    pub fn breaker(&self) -> &Arc<KeyedBreaker> {
        &self.breaker
    }

    /// Adds a worker, or replaces its address and capabilities. Its counters and speed are kept
    /// across updates (and across removal and return while tasks placed on it are still running);
    /// its circuit is kept always.
    pub fn upsert_worker(&self, info: WorkerInfo) {
        let mut inner = self.inner.write();
        match inner.by_id.get(&info.id).copied() {
            Some(idx) => {
                let old = &inner.entries[idx];
                if old.info == info {
                    return;
                }
                let load = old.load.clone();
                load.slots.store(info.capabilities.slots, Ordering::Release);
                inner.entries[idx] = Arc::new(Entry { info, load });
                inner.reindex();
            }
            None => {
                inner
                    .retired
                    .retain(|_, l| l.in_flight.load(Ordering::Acquire) > 0);
                let load = match inner.retired.remove(&info.id) {
                    Some(load) => {
                        load.slots.store(info.capabilities.slots, Ordering::Release);
                        load
                    }
                    None => Arc::new(Load {
                        in_flight: AtomicU32::new(0),
                        slots: AtomicU32::new(info.capabilities.slots),
                        ewma_nanos: AtomicU64::new(0),
                        done: AtomicU64::new(0),
                        failed: AtomicU64::new(0),
                        circuit: self.breaker.circuit(info.id.as_str()),
                    }),
                };
                let idx = inner.entries.len();
                inner.by_id.insert(info.id.clone(), idx);
                inner.entries.push(Arc::new(Entry { info, load }));
                inner.index(idx);
            }
        }
    }

    /// Forgets a worker; tasks already placed on it finish normally (and still hold their slots
    /// should it return before they end). Returns whether it was known.
    pub fn remove_worker(&self, id: &WorkerId) -> bool {
        let mut inner = self.inner.write();
        let Some(idx) = inner.by_id.remove(id) else {
            return false;
        };
        let gone = inner.entries.swap_remove(idx);
        inner
            .retired
            .retain(|_, l| l.in_flight.load(Ordering::Acquire) > 0);
        if gone.load.in_flight.load(Ordering::Acquire) > 0 {
            inner
                .retired
                .insert(gone.info.id.clone(), gone.load.clone());
        }
        inner.reindex();
        true
    }

    /// How many workers are registered.
    pub fn len(&self) -> usize {
        self.inner.read().entries.len()
    }

    /// True when no worker is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Chooses a worker for `req` and reserves one of its slots.
    ///
    /// Eligible: capabilities match, not excluded, a free slot, circuit not refusing. Among those it
    /// takes the lowest `ewma × (in_flight + 1) / slots` (so fast and lightly loaded workers first;
    /// a worker not yet measured counts as fastest, so new workers get measured), then the lowest
    /// load; ties go round-robin. A worker whose circuit waits for a probe gets this task as the probe.
    pub fn place(&self, req: &PlacementRequest) -> Result<Placement, NoPlacement> {
        let inner = self.inner.read();
        if inner.entries.is_empty() {
            return Err(NoPlacement::NoWorkers);
        }
        let arch = Inner::wanted(&inner.archs, &req.arch)?;
        let os = Inner::wanted(&inner.oses, &req.os)?;
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let mut now = None;
        let mut skipped = [u32::MAX; MAX_SKIPS];
        let mut n_skipped = 0;
        loop {
            let mut best: Option<(&Candidate, Rank)> = None;
            inner.for_each_match(req, arch, os, start, |c| {
                let slots = c.load.slots.load(Ordering::Relaxed);
                let in_flight = c.load.in_flight.load(Ordering::Relaxed);
                if in_flight >= slots {
                    return;
                }
                let rank = Rank {
                    work: u128::from(c.load.ewma_nanos.load(Ordering::Relaxed))
                        * u128::from(in_flight + 1),
                    in_flight,
                    slots,
                };
                if best.as_ref().is_some_and(|(_, b)| !rank.better_than(b)) {
                    return;
                }
                if inner.excluded(req, c)
                    || skipped[..n_skipped].contains(&c.entry)
                    || self.breaker.hint(&c.load.circuit, &mut now) == Hint::Blocked
                {
                    return;
                }
                best = Some((c, rank));
            });
            let Some((
                c,
                Rank {
                    in_flight: seen, ..
                },
            )) = best
            else {
                return Err(self.reason(&inner, req, arch, os));
            };
            if reserve(&c.load, seen) {
                let probe = self.breaker.hint(&c.load.circuit, &mut now) != Hint::Closed;
                if !probe || self.breaker.acquire(&c.load.circuit).is_ok() {
                    return Ok(Placement {
                        entry: inner.entries[c.entry as usize].clone(),
                        breaker: self.breaker.clone(),
                        probe,
                    });
                }
                c.load.in_flight.fetch_sub(1, Ordering::AcqRel);
            }
            if n_skipped == MAX_SKIPS {
                return Err(NoPlacement::AllBusy);
            }
            skipped[n_skipped] = c.entry;
            n_skipped += 1;
        }
    }

    /// The precise reason nothing was placed (slow path: looks at every matching worker).
    fn reason(
        &self,
        inner: &Inner,
        req: &PlacementRequest,
        arch: Option<u16>,
        os: Option<u16>,
    ) -> NoPlacement {
        let (mut matched, mut excluded, mut usable) = (0usize, 0usize, 0usize);
        let mut now = None;
        inner.for_each_match(req, arch, os, 0, |c| {
            matched += 1;
            if inner.excluded(req, c) {
                excluded += 1;
            } else if self.breaker.hint(&c.load.circuit, &mut now) != Hint::Blocked {
                usable += 1;
            }
        });
        if matched == 0 {
            NoPlacement::NoMatchingToolchain
        } else if excluded == matched {
            NoPlacement::AllExcluded
        } else if usable > 0 {
            NoPlacement::AllBusy
        } else {
            NoPlacement::AllCircuitsOpen
        }
    }

    /// Every worker's figures, sorted by id.
    pub fn snapshot(&self) -> Vec<WorkerStats> {
        let entries: Vec<Arc<Entry>> = self.inner.read().entries.clone();
        let mut out: Vec<WorkerStats> = entries
            .iter()
            .map(|e| {
                let l = &e.load;
                let ewma = l.ewma_nanos.load(Ordering::Relaxed);
                WorkerStats {
                    id: e.info.id.clone(),
                    addr: e.info.addr.clone(),
                    source: e.info.source,
                    slots: l.slots.load(Ordering::Relaxed),
                    cpus: e.info.capabilities.cpus,
                    in_flight: l.in_flight.load(Ordering::Relaxed),
                    done: l.done.load(Ordering::Relaxed),
                    failed: l.failed.load(Ordering::Relaxed),
                    circuit: self.breaker.status_of(&l.circuit),
                    ewma_ms: (ewma > 0).then(|| ewma as f64 / 1e6),
                }
            })
            .collect();
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }
}

/// A candidate's standing: `work / slots` (expected busy time per slot once this task is added),
/// then `in_flight / slots`; compared by cross-multiplying, so the scan does no division.
#[derive(Clone, Copy, Debug)]
struct Rank {
    /// Moving-average task duration × (in-flight + 1).
    work: u128,
    in_flight: u32,
    slots: u32,
}

impl Rank {
    /// Strictly better (lower) than `other`.
    fn better_than(&self, other: &Rank) -> bool {
        let lhs = self.work * u128::from(other.slots);
        let rhs = other.work * u128::from(self.slots);
        lhs < rhs
            || (lhs == rhs
                && u64::from(self.in_flight) * u64::from(other.slots)
                    < u64::from(other.in_flight) * u64::from(self.slots))
    }
}

/// Takes a slot if one is still free; `seen` is the in-flight count the scan read.
fn reserve(load: &Load, mut seen: u32) -> bool {
    loop {
        if seen >= load.slots.load(Ordering::Acquire) {
            return false;
        }
        match load.in_flight.compare_exchange_weak(
            seen,
            seen + 1,
            Ordering::AcqRel,
            Ordering::Relaxed,
        ) {
            Ok(_) => return true,
            Err(now) => seen = now,
        }
    }
}

/// A reserved slot on a worker. Report the task's end with [`complete`](Self::complete); dropping
/// it without doing so (the task was cancelled) frees the slot, records nothing, and, if it was a
/// half-open probe, lets the next placement probe the worker at once.
#[derive(Debug)]
#[must_use = "dropping a Placement frees its slot at once"]
pub struct Placement {
    entry: Arc<Entry>,
    breaker: Arc<KeyedBreaker>,
    probe: bool,
}

impl Placement {
    /// The chosen worker.
    pub fn worker(&self) -> &WorkerInfo {
        &self.entry.info
    }

    /// The chosen worker's id.
    pub fn worker_id(&self) -> &WorkerId {
        &self.entry.info.id
    }

    /// True when this task is the probe of a half-open circuit.
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// Reports how the task went on this worker, and frees the slot. `duration` of a success
    /// feeds the worker's moving average; `outcome` feeds its circuit.
    pub fn complete(mut self, outcome: Outcome, duration: Duration) {
        self.probe = false; // decided by `outcome`, not abandoned
        let load = &self.entry.load;
        match outcome {
            Outcome::Success => {
                load.done.fetch_add(1, Ordering::Relaxed);
                let sample = u64::try_from(duration.as_nanos())
                    .unwrap_or(u64::MAX)
                    .max(1);
                let _ = load
                    .ewma_nanos
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |old| {
                        Some(if old == 0 {
                            sample
                        } else {
                            ((EWMA_ALPHA * sample as f64 + (1.0 - EWMA_ALPHA) * old as f64) as u64)
                                .max(1)
                        })
                    });
            }
            Outcome::Failure => {
                load.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.breaker.record_on(&load.circuit, outcome);
    }
}

impl Drop for Placement {
    fn drop(&mut self) {
        if self.probe {
            self.breaker.abandon_probe(&self.entry.load.circuit);
        }
        self.entry.load.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interning_never_wraps_onto_a_real_name() {
        let mut table = Vec::new();
        assert_eq!(intern(&mut table, "x86_64"), 0);
        // Filled directly up to just below the bound (interning each would scan 65k times).
        table.extend((1..65_530u32).map(|i| format!("made-up-{i}")));
        for i in 65_530..70_000u32 {
            let id = intern(&mut table, &format!("made-up-{i}"));
            assert_ne!(id, 0, "name {i} wrapped onto x86_64");
        }
        assert_eq!(table.len(), usize::from(OVERFLOW_ID));
        assert_eq!(intern(&mut table, "made-up-69999"), OVERFLOW_ID);
        assert_eq!(intern(&mut table, "x86_64"), 0);
        // A request for a name past the bound matches nothing rather than the overflow bucket.
        assert!(Inner::wanted(&table, &Some("made-up-69999".into())).is_err());
        assert_eq!(
            Inner::wanted(&table, &Some("x86_64".into())).ok(),
            Some(Some(0))
        );
    }
}
