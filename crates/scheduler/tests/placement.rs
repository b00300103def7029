//! Placement: eligibility, preference, slot accounting, typed refusals, and concurrency.

#![allow(clippy::unwrap_used)]

use hybridgrid_core::clock::ManualClock;
use hybridgrid_core::{
    Capabilities, CircuitBreaker, CircuitState, DiscoverySource, Outcome, Toolchain, WorkerId,
    WorkerInfo,
};
use hybridgrid_scheduler::{
    BreakerConfig, KeyedBreaker, NoPlacement, Placement, PlacementRequest, Registry,
};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn gcc(version: &str, hash: &str) -> Toolchain {
    Toolchain {
        name: "gcc".into(),
        version: version.into(),
        target: "x86_64-linux-gnu".into(),
        binary_hash: hash.into(),
    }
}

fn worker(id: &str, arch: &str, slots: u32, toolchains: Vec<Toolchain>) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId::new(id),
        addr: format!("{id}.local:50052"),
        capabilities: Capabilities {
            arch: arch.into(),
            os: "linux".into(),
            cpus: slots,
            slots,
            toolchains,
            executors: vec!["native".into()],
        },
        protocol_version: 1,
        source: DiscoverySource::Static,
    }
}

fn registry() -> (ManualClock, Registry) {
    let clock = ManualClock::new();
    let breaker = KeyedBreaker::new(BreakerConfig::default(), Arc::new(clock.clone())).unwrap();
    (clock, Registry::new(Arc::new(breaker)))
}

fn req() -> PlacementRequest {
    PlacementRequest::new("x86_64", "linux").toolchain(gcc("12.2.0", ""))
}

fn id(p: &Placement) -> &str {
    p.worker_id().as_str()
}

#[test]
fn empty_registry_has_no_workers() {
    let (_, r) = registry();
    assert!(r.is_empty());
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::NoWorkers);
}

#[test]
fn capabilities_must_match_exactly() {
    let (_, r) = registry();
    r.upsert_worker(worker("old-gcc", "x86_64", 4, vec![gcc("11.4.0", "")]));
    r.upsert_worker(worker("arm", "aarch64", 4, vec![gcc("12.2.0", "")]));
    assert_eq!(
        r.place(&req()).unwrap_err(),
        NoPlacement::NoMatchingToolchain
    );
    assert_eq!(
        r.place(&PlacementRequest::new("riscv64", "linux"))
            .unwrap_err(),
        NoPlacement::NoMatchingToolchain
    );
    assert_eq!(
        r.place(&PlacementRequest::new("x86_64", "macos"))
            .unwrap_err(),
        NoPlacement::NoMatchingToolchain
    );

    // Same name/version/target but a different binary: not the same compiler.
    r.upsert_worker(worker(
        "other-binary",
        "x86_64",
        4,
        vec![gcc("12.2.0", "bbbb")],
    ));
    let pinned = PlacementRequest::new("x86_64", "linux").toolchain(gcc("12.2.0", "aaaa"));
    assert_eq!(
        r.place(&pinned).unwrap_err(),
        NoPlacement::NoMatchingToolchain
    );
    // An unknown hash on the request side matches on the other fields.
    assert_eq!(id(&r.place(&req()).unwrap()), "other-binary");

    r.upsert_worker(worker(
        "right",
        "x86_64",
        4,
        vec![gcc("11.4.0", ""), gcc("12.2.0", "aaaa")],
    ));
    for _ in 0..8 {
        assert_eq!(id(&r.place(&pinned).unwrap()), "right");
    }
    // No toolchain and no platform asked: any worker.
    assert!(r.place(&PlacementRequest::default()).is_ok());
}

#[test]
fn slots_are_reserved_and_freed_by_complete_or_drop() {
    let (_, r) = registry();
    r.upsert_worker(worker("w", "x86_64", 2, vec![gcc("12.2.0", "")]));
    let a = r.place(&req()).unwrap();
    let b = r.place(&req()).unwrap();
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllBusy);
    assert_eq!(r.snapshot()[0].in_flight, 2);
    a.complete(Outcome::Success, Duration::from_millis(10));
    let c = r.place(&req()).unwrap();
    drop(b);
    drop(c);
    let s = &r.snapshot()[0];
    assert_eq!((s.in_flight, s.done, s.failed), (0, 1, 0));
}

#[test]
fn excluded_workers_are_skipped() {
    let (_, r) = registry();
    r.upsert_worker(worker("w1", "x86_64", 4, vec![gcc("12.2.0", "")]));
    r.upsert_worker(worker("w2", "x86_64", 4, vec![gcc("12.2.0", "")]));
    let not_w1 = req().exclude(WorkerId::new("w1"));
    for _ in 0..4 {
        assert_eq!(id(&r.place(&not_w1).unwrap()), "w2");
    }
    let neither = not_w1.exclude(WorkerId::new("w2"));
    assert_eq!(r.place(&neither).unwrap_err(), NoPlacement::AllExcluded);
}

#[test]
fn prefers_lightly_loaded_workers() {
    let (_, r) = registry();
    r.upsert_worker(worker("w1", "x86_64", 4, vec![gcc("12.2.0", "")]));
    r.upsert_worker(worker("w2", "x86_64", 4, vec![gcc("12.2.0", "")]));
    let held: Vec<Placement> = (0..6).map(|_| r.place(&req()).unwrap()).collect();
    let mut per: HashMap<String, u32> = HashMap::new();
    for p in &held {
        *per.entry(id(p).to_owned()).or_default() += 1;
    }
    assert_eq!(per["w1"], 3, "{per:?}");
    assert_eq!(per["w2"], 3, "{per:?}");
}

#[test]
fn prefers_measured_fast_workers_and_tries_new_ones() {
    let (_, r) = registry();
    r.upsert_worker(worker("fast", "x86_64", 4, vec![gcc("12.2.0", "")]));
    r.upsert_worker(worker("slow", "x86_64", 4, vec![gcc("12.2.0", "")]));
    // Teach the registry each worker's speed.
    let mut taught = 0;
    while taught < 2 {
        let p = r.place(&req()).unwrap();
        let d = if id(&p) == "fast" { 100 } else { 1000 };
        p.complete(Outcome::Success, Duration::from_millis(d));
        taught = r.snapshot().iter().filter(|s| s.ewma_ms.is_some()).count();
    }
    // fast: 100ms × (n+1)/4 stays below slow's 1000ms × 1/4 for all four of its slots.
    let held: Vec<Placement> = (0..5).map(|_| r.place(&req()).unwrap()).collect();
    let names: Vec<&str> = held.iter().map(id).collect();
    assert_eq!(names, ["fast", "fast", "fast", "fast", "slow"]);
    drop(held);
    // A worker not yet measured is tried first.
    r.upsert_worker(worker("new", "x86_64", 4, vec![gcc("12.2.0", "")]));
    assert_eq!(id(&r.place(&req()).unwrap()), "new");
    let snap = r.snapshot();
    let ewma: Vec<Option<f64>> = snap.iter().map(|s| s.ewma_ms).collect();
    assert_eq!(ewma, [Some(100.0), None, Some(1000.0)]);
}

#[test]
fn open_circuits_refuse_then_let_one_probe_through() {
    let (clock, r) = registry();
    r.upsert_worker(worker("w", "x86_64", 4, vec![gcc("12.2.0", "")]));
    for _ in 0..5 {
        r.place(&req())
            .unwrap()
            .complete(Outcome::Failure, Duration::from_secs(1));
    }
    assert_eq!(r.breaker().state("w"), CircuitState::Open);
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllCircuitsOpen);
    clock.advance(Duration::from_secs(30));
    let probe = r.place(&req()).unwrap();
    assert!(probe.is_probe());
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllCircuitsOpen);
    probe.complete(Outcome::Success, Duration::from_millis(5));
    let after = r.place(&req()).unwrap();
    assert!(!after.is_probe());
    let s = &r.snapshot()[0];
    assert_eq!(
        (s.done, s.failed, s.circuit.state, s.circuit.times_opened),
        (1, 5, CircuitState::Closed, 1)
    );
}

#[test]
fn an_abandoned_probe_lets_the_next_placement_probe() {
    let (clock, r) = registry();
    r.upsert_worker(worker("w", "x86_64", 4, vec![gcc("12.2.0", "")]));
    r.breaker().trip("w", "output_mismatch");
    clock.advance(Duration::from_secs(30));
    let probe = r.place(&req()).unwrap();
    assert!(probe.is_probe());
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllCircuitsOpen);
    drop(probe); // cancelled: no outcome
    let again = r.place(&req()).unwrap();
    assert!(again.is_probe());
    again.complete(Outcome::Failure, Duration::from_secs(1));
    assert_eq!(r.breaker().state("w"), CircuitState::Open);
    assert_eq!(r.snapshot()[0].circuit.times_opened, 2);
}

#[test]
fn busy_wins_over_open_when_both() {
    let (_, r) = registry();
    r.upsert_worker(worker("busy", "x86_64", 1, vec![gcc("12.2.0", "")]));
    r.upsert_worker(worker("broken", "x86_64", 4, vec![gcc("12.2.0", "")]));
    r.breaker().trip("broken", "output_mismatch");
    let held = r.place(&req()).unwrap();
    assert_eq!(id(&held), "busy");
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllBusy);
    assert_eq!(NoPlacement::AllBusy.as_str(), "all_busy");
    let s = r.snapshot();
    assert_eq!(s[0].circuit.reason.as_deref(), Some("output_mismatch"));
}

#[test]
fn upsert_keeps_counters_and_remove_forgets() {
    let (_, r) = registry();
    r.upsert_worker(worker("w", "x86_64", 1, vec![gcc("12.2.0", "")]));
    let held = r.place(&req()).unwrap();
    // More slots and a new toolchain: the reservation still counts.
    r.upsert_worker(worker(
        "w",
        "x86_64",
        2,
        vec![gcc("13.1.0", ""), gcc("12.2.0", "")],
    ));
    assert_eq!(r.len(), 1);
    assert_eq!(r.snapshot()[0].in_flight, 1);
    let second = r
        .place(&PlacementRequest::new("x86_64", "linux").toolchain(gcc("13.1.0", "")))
        .unwrap();
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllBusy);
    // Removed while tasks run: they finish without harm, and the worker is gone.
    assert!(r.remove_worker(&WorkerId::new("w")));
    assert!(!r.remove_worker(&WorkerId::new("w")));
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::NoWorkers);
    held.complete(Outcome::Success, Duration::from_millis(1));
    drop(second);
    r.upsert_worker(worker("w", "x86_64", 2, vec![gcc("12.2.0", "")]));
    assert_eq!(r.snapshot()[0].in_flight, 0);
}

#[test]
fn a_returning_worker_still_counts_its_running_tasks() {
    let (_, r) = registry();
    r.upsert_worker(worker("w", "x86_64", 2, vec![gcc("12.2.0", "")]));
    let held = r.place(&req()).unwrap();
    r.remove_worker(&WorkerId::new("w"));
    r.upsert_worker(worker("w", "x86_64", 2, vec![gcc("12.2.0", "")]));
    assert_eq!(r.snapshot()[0].in_flight, 1);
    let second = r.place(&req()).unwrap();
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllBusy);
    held.complete(Outcome::Success, Duration::from_millis(3));
    drop(second);
    let s = &r.snapshot()[0];
    assert_eq!((s.in_flight, s.done), (0, 1));
}

#[test]
fn removal_keeps_the_rest_indexed() {
    let (_, r) = registry();
    for i in 0..10 {
        r.upsert_worker(worker(
            &format!("w{i}"),
            "x86_64",
            1,
            vec![gcc("12.2.0", "")],
        ));
    }
    r.remove_worker(&WorkerId::new("w3"));
    r.remove_worker(&WorkerId::new("w0"));
    let held: Vec<Placement> = (0..8).map(|_| r.place(&req()).unwrap()).collect();
    let mut ids: Vec<&str> = held.iter().map(id).collect();
    ids.sort();
    assert_eq!(ids, ["w1", "w2", "w4", "w5", "w6", "w7", "w8", "w9"]);
    assert_eq!(r.place(&req()).unwrap_err(), NoPlacement::AllBusy);
    let snap = r.snapshot();
    assert_eq!(snap.len(), 8);
    assert!(snap.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(snap[0].addr, "w1.local:50052");
}

#[test]
fn concurrent_placement_never_exceeds_slots_nor_leaks() {
    let (_, r) = registry();
    let r = Arc::new(r);
    let mut peak: HashMap<String, Arc<(AtomicU32, AtomicU32)>> = HashMap::new();
    for i in 0..20 {
        let name = format!("w{i:02}");
        r.upsert_worker(worker(&name, "x86_64", 1 + i % 3, vec![gcc("12.2.0", "")]));
        peak.insert(name, Arc::new((AtomicU32::new(0), AtomicU32::new(0))));
    }
    let peak = Arc::new(peak);
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (r, peak) = (r.clone(), peak.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                for n in 0..5_000u32 {
                    if let Ok(p) = r.place(&req()) {
                        let (now, max) = &*peak[id(&p)];
                        let cur = now.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(cur, Ordering::SeqCst);
                        held.push(p);
                    }
                    if !held.is_empty() && ((n + t) % 3 == 0 || held.len() > 8) {
                        let p: Placement = held.swap_remove((n as usize) % held.len());
                        peak[id(&p)].0.fetch_sub(1, Ordering::SeqCst);
                        p.complete(Outcome::Success, Duration::from_micros(u64::from(n % 97)));
                    }
                }
                for p in held {
                    peak[id(&p)].0.fetch_sub(1, Ordering::SeqCst);
                    drop(p);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    for s in r.snapshot() {
        assert_eq!(s.in_flight, 0, "{} leaked a slot", s.id);
        let max = peak[s.id.as_str()].1.load(Ordering::SeqCst);
        assert!(
            max <= s.slots,
            "{}: {max} at once on {} slots",
            s.id,
            s.slots
        );
        assert!(s.done > 0, "{} never used", s.id);
    }
}

#[test]
fn registry_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Registry>();
    assert_send_sync::<Placement>();
}
