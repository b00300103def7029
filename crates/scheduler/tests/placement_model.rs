//! Property test: random sequences of upserts, removals, placements, completions, drops and trips
//! against a plain model. Every placement must land on an eligible worker, every refusal must carry
//! the reason the model computes, and slot counts must match the model exactly.

#![allow(clippy::unwrap_used)]

use hybridgrid_core::clock::ManualClock;
use hybridgrid_core::{
    Capabilities, CircuitBreaker, DiscoverySource, Outcome, Toolchain, WorkerId, WorkerInfo,
};
use hybridgrid_scheduler::{
    BreakerConfig, KeyedBreaker, NoPlacement, Placement, PlacementRequest, Registry,
};
use proptest::prelude::*;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const ARCHS: [&str; 2] = ["x86_64", "aarch64"];
const VERSIONS: [&str; 3] = ["11", "12", "13"];

#[derive(Clone, Debug)]
enum Op {
    Upsert {
        worker: usize,
        arch: usize,
        slots: u32,
        versions: Vec<usize>,
    },
    Remove {
        worker: usize,
    },
    Place {
        arch: usize,
        version: Option<usize>,
        exclude: Vec<usize>,
    },
    Complete {
        nth: usize,
        fail: bool,
    },
    Drop {
        nth: usize,
    },
    Trip {
        worker: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => (0..6usize, 0..2usize, 0..4u32, prop::collection::vec(0..3usize, 0..3))
            .prop_map(|(worker, arch, slots, versions)| Op::Upsert { worker, arch, slots, versions }),
        1 => (0..6usize).prop_map(|worker| Op::Remove { worker }),
        6 => (0..2usize, prop::option::of(0..3usize), prop::collection::vec(0..6usize, 0..3))
            .prop_map(|(arch, version, exclude)| Op::Place { arch, version, exclude }),
        3 => (any::<usize>(), any::<bool>()).prop_map(|(nth, fail)| Op::Complete { nth, fail }),
        1 => any::<usize>().prop_map(|nth| Op::Drop { nth }),
        1 => (0..6usize).prop_map(|worker| Op::Trip { worker }),
    ]
}

fn tc(v: usize) -> Toolchain {
    Toolchain {
        name: "gcc".into(),
        version: VERSIONS[v].into(),
        target: "t".into(),
        binary_hash: String::new(),
    }
}

fn name(w: usize) -> String {
    format!("w{w}")
}

#[derive(Debug, Default)]
struct Model {
    /// Registered workers: arch, slots, toolchain versions.
    workers: BTreeMap<usize, (usize, u32, Vec<usize>)>,
    /// In-flight per worker id (kept across removal, as the registry's counters are).
    in_flight: BTreeMap<usize, u32>,
    tripped: Vec<usize>,
}

impl Model {
    fn expect(
        &self,
        arch: usize,
        version: Option<usize>,
        exclude: &[usize],
    ) -> Result<Vec<usize>, NoPlacement> {
        if self.workers.is_empty() {
            return Err(NoPlacement::NoWorkers);
        }
        let matching: Vec<usize> = self
            .workers
            .iter()
            .filter(|(_, (a, _, vs))| *a == arch && version.is_none_or(|v| vs.contains(&v)))
            .map(|(w, _)| *w)
            .collect();
        if matching.is_empty() {
            return Err(NoPlacement::NoMatchingToolchain);
        }
        let allowed: Vec<usize> = matching
            .into_iter()
            .filter(|w| !exclude.contains(w))
            .collect();
        if allowed.is_empty() {
            return Err(NoPlacement::AllExcluded);
        }
        let closed: Vec<usize> = allowed
            .into_iter()
            .filter(|w| !self.tripped.contains(w))
            .collect();
        if closed.is_empty() {
            return Err(NoPlacement::AllCircuitsOpen);
        }
        let free: Vec<usize> = closed
            .into_iter()
            .filter(|w| self.in_flight.get(w).copied().unwrap_or(0) < self.workers[w].1)
            .collect();
        if free.is_empty() {
            return Err(NoPlacement::AllBusy);
        }
        Ok(free)
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]
    #[test]
    fn registry_agrees_with_model(ops in prop::collection::vec(op(), 1..80)) {
        let clock = ManualClock::new();
        // min_calls high enough that failures never open a circuit: only trips do (and the clock never moves).
        let config = BreakerConfig { min_calls: u32::MAX, ..BreakerConfig::default() };
        let registry = Registry::new(Arc::new(KeyedBreaker::new(config, Arc::new(clock)).unwrap()));
        let mut model = Model::default();
        let mut held: Vec<(usize, Placement)> = Vec::new();
        for op in ops {
            match op {
                Op::Upsert { worker, arch, slots, mut versions } => {
                    versions.sort();
                    versions.dedup();
                    registry.upsert_worker(WorkerInfo {
                        id: WorkerId::new(name(worker)),
                        addr: format!("{}:1", name(worker)),
                        capabilities: Capabilities {
                            arch: ARCHS[arch].into(),
                            os: "linux".into(),
                            cpus: 1,
                            slots,
                            toolchains: versions.iter().map(|v| tc(*v)).collect(),
                            executors: vec![],
                        },
                        protocol_version: 1,
                        source: DiscoverySource::Mdns,
                    });
                    model.workers.insert(worker, (arch, slots, versions));
                }
                Op::Remove { worker } => {
                    let known = model.workers.remove(&worker).is_some();
                    prop_assert_eq!(registry.remove_worker(&WorkerId::new(name(worker))), known);
                }
                Op::Place { arch, version, exclude } => {
                    let mut req = PlacementRequest::new(ARCHS[arch], "linux");
                    req.toolchain = version.map(tc);
                    req.exclude = exclude.iter().map(|w| WorkerId::new(name(*w))).collect();
                    let expected = model.expect(arch, version, &exclude);
                    match (registry.place(&req), expected) {
                        (Ok(p), Ok(eligible)) => {
                            let w: usize = p.worker_id().as_str()[1..].parse().unwrap();
                            prop_assert!(eligible.contains(&w), "placed on {} not in {:?}", w, eligible);
                            *model.in_flight.entry(w).or_default() += 1;
                            held.push((w, p));
                        }
                        (got, want) => prop_assert_eq!(got.map(|p| p.worker_id().clone()).err(), want.err()),
                    }
                }
                Op::Complete { nth, fail } if !held.is_empty() => {
                    let (w, p) = held.swap_remove(nth % held.len());
                    *model.in_flight.get_mut(&w).unwrap() -= 1;
                    p.complete(if fail { Outcome::Failure } else { Outcome::Success }, Duration::from_millis(nth as u64 % 1000));
                }
                Op::Drop { nth } if !held.is_empty() => {
                    let (w, p) = held.swap_remove(nth % held.len());
                    *model.in_flight.get_mut(&w).unwrap() -= 1;
                    drop(p);
                }
                Op::Complete { .. } | Op::Drop { .. } => {}
                Op::Trip { worker } => {
                    registry.breaker().trip(&name(worker), "output_mismatch");
                    model.tripped.push(worker);
                }
            }
            for s in registry.snapshot() {
                let w: usize = s.id.as_str()[1..].parse().unwrap();
                prop_assert_eq!(s.in_flight, model.in_flight.get(&w).copied().unwrap_or(0), "in_flight of {}", s.id);
                prop_assert_eq!(s.slots, model.workers[&w].1);
            }
        }
    }
}
