//! ProbedDiscovery over a DiscoveryHub as the hint source (what mDNS is in production) and a fake
//! prober (the injected seam): hints are confirmed by probing, never trusted.

use futures::stream::{BoxStream, StreamExt};
use hybridgrid_core::{
    BoxError, Capabilities, Discovery, DiscoverySource, WorkerEvent, WorkerId, WorkerInfo,
};
use hybridgrid_discovery::{DiscoveryHub, ProbedDiscovery, ProbedOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Answers per address (`None`: the probe fails), and the addresses probed.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, Option<WorkerInfo>>>,
    probed: Mutex<Vec<String>>,
}

impl Fake {
    fn set(&self, addr: &str, answer: Option<WorkerInfo>) {
        self.answers.lock().insert(addr.to_owned(), answer);
    }

    fn prober(self: &Arc<Self>) -> Arc<dyn hybridgrid_discovery::HintProber> {
        let fake = self.clone();
        Arc::new(move |hint: WorkerInfo| {
            let fake = fake.clone();
            async move {
                let addr = hint.addr;
                fake.probed.lock().push(addr.clone());
                let answer = fake.answers.lock().get(&addr).cloned().flatten();
                answer.ok_or_else(|| BoxError::from(format!("{addr} refused the connection")))
            }
        })
    }
}

fn info(id: &str, addr: &str, slots: u32) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId::new(id),
        addr: addr.into(),
        capabilities: Capabilities::of_this_host(slots),
        protocol_version: hybridgrid_core::PROTOCOL_VERSION,
        source: DiscoverySource::Registration,
    }
}

fn setup() -> (Arc<DiscoveryHub>, Arc<Fake>, ProbedDiscovery) {
    let hints = Arc::new(DiscoveryHub::new());
    let fake = Arc::new(Fake::default());
    let options = ProbedOptions {
        interval: Duration::from_millis(50),
        probe_timeout: Duration::from_secs(1),
        down_after: 2,
        source: DiscoverySource::Mdns,
    };
    let probed = ProbedDiscovery::new(hints.clone(), fake.prober(), options);
    (hints, fake, probed)
}

async fn next(events: &mut BoxStream<'static, WorkerEvent>) -> WorkerEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event within the wait")
        .expect("the stream goes on")
}

#[tokio::test]
async fn a_hint_is_reported_with_what_the_worker_answers() {
    let (hints, fake, probed) = setup();
    let mut events = probed.watch();
    // The hint claims 64 slots; the worker itself says 2: the worker's answer counts.
    fake.set("10.0.0.7:50052", Some(info("w1", "ignored:1", 2)));
    hints.register(info("w1", "10.0.0.7:50052", 64));
    match next(&mut events).await {
        WorkerEvent::Up(w) => {
            assert_eq!(w.id.as_str(), "w1");
            assert_eq!(w.addr, "10.0.0.7:50052");
            assert_eq!(w.source, DiscoverySource::Mdns);
            assert_eq!(w.capabilities.slots, 2);
        }
        other => panic!("expected Up, got {other:?}"),
    }
    // The announcement is withdrawn: Down at once.
    hints.deregister(&WorkerId::new("w1"));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("w1"))
    );
}

#[tokio::test]
async fn a_worker_that_stops_answering_goes_down_and_comes_back() {
    let (hints, fake, probed) = setup();
    let mut events = probed.watch();
    fake.set("10.0.0.8:50052", Some(info("w2", "x:1", 2)));
    hints.register(info("w2", "10.0.0.8:50052", 2));
    assert!(matches!(next(&mut events).await, WorkerEvent::Up(w) if w.id.as_str() == "w2"));
    // Killed: no goodbye, the hint stays, the probes fail.
    fake.set("10.0.0.8:50052", None);
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("w2"))
    );
    fake.set("10.0.0.8:50052", Some(info("w2", "x:1", 2)));
    assert!(matches!(next(&mut events).await, WorkerEvent::Up(w) if w.id.as_str() == "w2"));
}

#[tokio::test]
async fn incompatible_versions_and_wrong_ids_are_refused() {
    let (hints, fake, probed) = setup();
    let mut events = probed.watch();
    // Another protocol version: refused without even probing.
    let mut old = info("old", "10.0.0.9:50052", 2);
    old.protocol_version = hybridgrid_core::PROTOCOL_VERSION + 1;
    fake.set("10.0.0.9:50052", Some(info("old", "x:1", 2)));
    hints.register(old);
    // Announced as "impostor", but the worker there answers as "w3": refused.
    fake.set("10.0.0.10:50052", Some(info("w3", "x:1", 2)));
    hints.register(info("impostor", "10.0.0.10:50052", 2));
    // A good one after them: once it is up, both hints above have been handled.
    fake.set("10.0.0.11:50052", Some(info("good", "x:1", 2)));
    hints.register(info("good", "10.0.0.11:50052", 2));
    match next(&mut events).await {
        WorkerEvent::Up(w) => assert_eq!(w.id.as_str(), "good"),
        other => panic!("expected only the good worker, got {other:?}"),
    }
    assert!(
        !fake.probed.lock().iter().any(|a| a == "10.0.0.9:50052"),
        "a worker of another protocol version was probed"
    );
    hybridgrid_testkit::eventually(WAIT, || async {
        (fake
            .probed
            .lock()
            .iter()
            .filter(|a| *a == "10.0.0.10:50052")
            .count()
            >= 3)
            .then_some(())
    })
    .await
    .expect("the impostor's address is probed again");
    let known: Vec<WorkerId> = {
        let mut late = probed.watch();
        let mut ids = Vec::new();
        while let Ok(Some(WorkerEvent::Up(w))) =
            tokio::time::timeout(Duration::from_millis(200), late.next()).await
        {
            ids.push(w.id);
        }
        ids
    };
    assert_eq!(known, vec![WorkerId::new("good")]);
}
