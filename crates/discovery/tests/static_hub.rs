//! StaticDiscovery over a fake prober (the injected seam), and DiscoveryHub merging.

use futures::FutureExt;
use futures::stream::{BoxStream, StreamExt};
use hybridgrid_core::{
    BoxError, Capabilities, Discovery, DiscoverySource, WorkerEvent, WorkerId, WorkerInfo,
};
use hybridgrid_discovery::{DiscoveryError, DiscoveryHub, StaticDiscovery, StaticOptions};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

/// Answers per address: `Some(info)` = the worker is up, `None` = the probe fails.
#[derive(Default)]
struct Fake {
    answers: Mutex<HashMap<String, Option<WorkerInfo>>>,
    probes: AtomicUsize,
}

impl Fake {
    fn set(&self, addr: &str, answer: Option<WorkerInfo>) {
        self.answers.lock().insert(addr.to_owned(), answer);
    }

    fn prober(self: &Arc<Self>) -> Arc<dyn hybridgrid_discovery::Prober> {
        let fake = self.clone();
        Arc::new(move |addr: String| {
            let fake = fake.clone();
            async move {
                let answer = fake.answers.lock().get(&addr).cloned().flatten();
                fake.probes.fetch_add(1, Ordering::SeqCst);
                answer.ok_or_else(|| BoxError::from(format!("{addr} refused the connection")))
            }
        })
    }

    /// Waits until `n` more probes have completed (and so have been recorded, since recording
    /// happens before the next round starts).
    async fn wait_probes(&self, n: usize) {
        let target = self.probes.load(Ordering::SeqCst) + n;
        hybridgrid_testkit::eventually(WAIT, || async {
            (self.probes.load(Ordering::SeqCst) >= target).then_some(())
        })
        .await
        .expect("prober keeps being called");
    }
}

fn info(id: &str, slots: u32) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId::new(id),
        addr: "what-the-worker-says:1".into(),
        capabilities: Capabilities::of_this_host(slots),
        protocol_version: hybridgrid_core::PROTOCOL_VERSION,
        source: DiscoverySource::Registration,
    }
}

fn as_static(mut info: WorkerInfo, addr: &str) -> WorkerInfo {
    info.source = DiscoverySource::Static;
    info.addr = addr.to_owned();
    info
}

fn fast() -> StaticOptions {
    StaticOptions {
        interval: Duration::from_millis(10),
        probe_timeout: Duration::from_secs(5),
        down_after: 3,
    }
}

async fn next(events: &mut BoxStream<'static, WorkerEvent>) -> WorkerEvent {
    tokio::time::timeout(WAIT, events.next())
        .await
        .expect("an event in time")
        .expect("stream open")
}

fn nothing_pending(events: &mut BoxStream<'static, WorkerEvent>) {
    if let Some(event) = events.next().now_or_never() {
        panic!("expected no event, got {event:?}");
    }
}

#[test]
fn bad_addresses_are_named() {
    let fake = Arc::new(Fake::default());
    for (list, culprit) in [
        (vec!["10.0.0.1:50052", "10.0.0.2"], "10.0.0.2"),
        (vec!["grpc://w1:50052"], "grpc://w1:50052"),
        (vec!["w1:50052", "w1:50052"], "w1:50052"),
        (vec!["w1:99999"], "w1:99999"),
    ] {
        let list = list.into_iter().map(String::from).collect();
        match StaticDiscovery::new(list, fake.prober()) {
            Err(DiscoveryError::InvalidAddress { addr, .. }) => assert_eq!(addr, culprit),
            other => panic!("expected InvalidAddress for {culprit}, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn up_once_change_down_and_back() {
    let fake = Arc::new(Fake::default());
    let addr = "10.0.0.7:50052";
    fake.set(addr, Some(info("w1", 4)));
    let discovery = StaticDiscovery::new(vec![addr.into()], fake.prober())
        .expect("valid")
        .with_options(fast());
    let mut events = discovery.watch();
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("w1", 4), addr))
    );

    // Same answer: no new event.
    fake.wait_probes(3).await;
    nothing_pending(&mut events);

    // A second watcher gets the replay.
    let mut late = discovery.watch();
    assert_eq!(
        next(&mut late).await,
        WorkerEvent::Up(as_static(info("w1", 4), addr))
    );

    // Capabilities change: Up again.
    fake.set(addr, Some(info("w1", 8)));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("w1", 8), addr))
    );

    // Two failures, then success: no Down (fewer than down_after in a row).
    fake.set(addr, None);
    fake.wait_probes(2).await;
    fake.set(addr, Some(info("w1", 8)));
    fake.wait_probes(2).await;
    nothing_pending(&mut events);

    // Three in a row: Down; probing goes on and the worker comes back.
    fake.set(addr, None);
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("w1"))
    );
    fake.wait_probes(3).await;
    nothing_pending(&mut events);
    fake.set(addr, Some(info("w1", 8)));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("w1", 8), addr))
    );

    // Restarted under a new id: the old one goes down first.
    fake.set(addr, Some(info("w2", 8)));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("w1"))
    );
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("w2", 8), addr))
    );
}

#[tokio::test]
async fn unreachable_worker_is_retried_until_it_answers() {
    let fake = Arc::new(Fake::default());
    let (a, b) = ("w-a:50052", "w-b:50052");
    fake.set(a, Some(info("a", 2)));
    let discovery = StaticDiscovery::new(vec![a.into(), b.into()], fake.prober())
        .expect("valid")
        .with_options(fast());
    let mut events = discovery.watch();
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("a", 2), a))
    );
    // b never answered, so its failures send no Down.
    fake.wait_probes(8).await;
    nothing_pending(&mut events);
    fake.set(b, Some(info("b", 2)));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("b", 2), b))
    );
}

#[tokio::test]
async fn slow_probe_counts_as_failure() {
    let addr = "slow:1";
    let answered = Arc::new(AtomicUsize::new(0));
    let hang = Arc::new(Mutex::new(false));
    let prober = {
        let (answered, hang) = (answered.clone(), hang.clone());
        move |_addr: String| {
            let (answered, hang) = (answered.clone(), hang.clone());
            async move {
                if *hang.lock() {
                    std::future::pending::<()>().await;
                }
                answered.fetch_add(1, Ordering::SeqCst);
                Ok::<_, BoxError>(info("slow", 1))
            }
        }
    };
    let discovery = StaticDiscovery::new(vec![addr.into()], Arc::new(prober))
        .expect("valid")
        .with_options(StaticOptions {
            probe_timeout: Duration::from_millis(20),
            ..fast()
        });
    let mut events = discovery.watch();
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Up(as_static(info("slow", 1), addr))
    );
    *hang.lock() = true;
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("slow"))
    );
}

#[tokio::test]
async fn hub_merges_registrations_and_sources() {
    let hub = DiscoveryHub::new();
    let mut events = hub.watch();

    hub.register(info("r1", 2));
    assert_eq!(next(&mut events).await, WorkerEvent::Up(info("r1", 2)));
    hub.register(info("r1", 2));
    hub.register(info("r1", 6));
    assert_eq!(next(&mut events).await, WorkerEvent::Up(info("r1", 6)));

    // A static source that also knows r1 and knows s1.
    let fake = Arc::new(Fake::default());
    fake.set("s1:1", Some(info("s1", 1)));
    fake.set("r1:1", Some(info("r1", 6)));
    let source = Arc::new(
        StaticDiscovery::new(vec!["s1:1".into(), "r1:1".into()], fake.prober())
            .expect("valid")
            .with_options(fast()),
    );
    hub.add_source(source.clone());
    let mut seen = vec![next(&mut events).await, next(&mut events).await];
    seen.sort_by_key(|e| format!("{e:?}"));
    assert_eq!(
        seen,
        vec![
            WorkerEvent::Up(as_static(info("r1", 6), "r1:1")),
            WorkerEvent::Up(as_static(info("s1", 1), "s1:1")),
        ]
    );

    // r1 deregisters, but the static source still vouches for it: no Down.
    hub.deregister(&WorkerId::new("r1"));
    fake.wait_probes(4).await;
    nothing_pending(&mut events);
    assert_eq!(hub.workers().len(), 2);

    // The source loses r1: now it is down.
    fake.set("r1:1", None);
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("r1"))
    );

    // A late watcher sees only s1.
    let mut late = hub.watch();
    assert_eq!(
        next(&mut late).await,
        WorkerEvent::Up(as_static(info("s1", 1), "s1:1"))
    );
    nothing_pending(&mut late);
}

#[tokio::test]
async fn hub_withdraws_a_source_whose_stream_ends() {
    struct Once(WorkerInfo);
    impl Discovery for Once {
        fn watch(&self) -> BoxStream<'static, WorkerEvent> {
            futures::stream::iter([WorkerEvent::Up(self.0.clone())]).boxed()
        }
    }
    let hub = DiscoveryHub::new();
    let mut events = hub.watch();
    hub.add_source(Arc::new(Once(info("m1", 1))));
    assert_eq!(next(&mut events).await, WorkerEvent::Up(info("m1", 1)));
    assert_eq!(
        next(&mut events).await,
        WorkerEvent::Down(WorkerId::new("m1"))
    );
    hub.deregister(&WorkerId::new("never-registered"));
    nothing_pending(&mut events);
}

#[tokio::test(start_paused = true)]
async fn hub_registrations_expire_without_heartbeat() {
    let ttl = Duration::from_secs(30);
    let hub = DiscoveryHub::with_registration_ttl(ttl);
    let mut events = hub.watch();
    hub.register(info("h1", 1));
    assert_eq!(next(&mut events).await, WorkerEvent::Up(info("h1", 1)));

    // Heartbeats (registering again) every 10 s keep it for well past the TTL.
    for _ in 0..6 {
        tokio::time::advance(Duration::from_secs(10)).await;
        hub.register(info("h1", 1));
    }
    tokio::task::yield_now().await;
    nothing_pending(&mut events);

    // Silence: the registration expires (virtual time runs on while the test waits).
    let started = tokio::time::Instant::now();
    let event = tokio::time::timeout(Duration::from_secs(600), events.next())
        .await
        .expect("expiry");
    assert_eq!(event, Some(WorkerEvent::Down(WorkerId::new("h1"))));
    assert!(
        started.elapsed() >= ttl,
        "expired after {:?}",
        started.elapsed()
    );

    // A heartbeat after expiry brings it back.
    hub.register(info("h1", 1));
    assert_eq!(next(&mut events).await, WorkerEvent::Up(info("h1", 1)));
}
