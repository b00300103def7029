//! StaticDiscovery (over a prober whose answers the fixture controls) and DiscoveryHub
//! (registrations) pass the one Discovery conformance suite.

#![allow(clippy::unwrap_used)] // tests: a panic is the failure report

use async_trait::async_trait;
use hybridgrid_core::{BoxError, Discovery, WorkerId, WorkerInfo};
use hybridgrid_discovery::{DiscoveryHub, StaticDiscovery, StaticOptions};
use hybridgrid_testkit::discovery::{DiscoveryFixture, run_discovery_suite};
use parking_lot::Mutex;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

const ADDRS: usize = 4;

/// A static list of `ADDRS` addresses; `add` makes the next free one answer with the worker,
/// `remove` makes it refuse again.
struct StaticFixture {
    discovery: Arc<StaticDiscovery>,
    answers: Arc<Mutex<HashMap<String, WorkerInfo>>>,
}

impl StaticFixture {
    fn new() -> Self {
        let answers: Arc<Mutex<HashMap<String, WorkerInfo>>> = Arc::default();
        let prober = {
            let answers = answers.clone();
            move |addr: String| {
                let answer = answers.lock().get(&addr).cloned();
                async move {
                    answer.ok_or_else(|| BoxError::from(format!("{addr} refused the connection")))
                }
            }
        };
        let addrs = (0..ADDRS).map(|i| format!("10.0.0.{i}:9000")).collect();
        let discovery = StaticDiscovery::new(addrs, Arc::new(prober))
            .unwrap()
            .with_options(StaticOptions {
                interval: Duration::from_millis(20),
                probe_timeout: Duration::from_secs(5),
                down_after: 2,
            });
        Self {
            discovery: Arc::new(discovery),
            answers,
        }
    }
}

#[async_trait]
impl DiscoveryFixture for StaticFixture {
    fn discovery(&self) -> Arc<dyn Discovery> {
        self.discovery.clone()
    }
    async fn add(&self, worker: WorkerInfo) {
        let mut answers = self.answers.lock();
        let free = (0..ADDRS)
            .map(|i| format!("10.0.0.{i}:9000"))
            .find(|a| !answers.contains_key(a))
            .expect("a free static address");
        answers.insert(free, worker);
    }
    async fn remove(&self, id: &WorkerId) {
        self.answers.lock().retain(|_, w| &w.id != id);
    }
}

#[tokio::test]
async fn static_discovery_conforms() {
    run_discovery_suite(|| async { Box::new(StaticFixture::new()) as Box<dyn DiscoveryFixture> })
        .await;
}

struct HubFixture(Arc<DiscoveryHub>);

#[async_trait]
impl DiscoveryFixture for HubFixture {
    fn discovery(&self) -> Arc<dyn Discovery> {
        self.0.clone()
    }
    async fn add(&self, worker: WorkerInfo) {
        self.0.register(worker);
    }
    async fn remove(&self, id: &WorkerId) {
        self.0.deregister(id);
    }
}

#[tokio::test]
async fn discovery_hub_registrations_conform() {
    run_discovery_suite(|| async {
        Box::new(HubFixture(Arc::new(DiscoveryHub::new()))) as Box<dyn DiscoveryFixture>
    })
    .await;
}

/// The hub fed by a static source passes too (events merged from a source, not registrations).
struct HubOverStatic {
    hub: Arc<DiscoveryHub>,
    source: StaticFixture,
}

#[async_trait]
impl DiscoveryFixture for HubOverStatic {
    fn discovery(&self) -> Arc<dyn Discovery> {
        self.hub.clone()
    }
    async fn add(&self, worker: WorkerInfo) {
        self.source.add(worker).await;
    }
    async fn remove(&self, id: &WorkerId) {
        self.source.remove(id).await;
    }
}

#[tokio::test]
async fn discovery_hub_over_a_static_source_conforms() {
    run_discovery_suite(|| async {
        let source = StaticFixture::new();
        let hub = Arc::new(DiscoveryHub::new());
        hub.add_source(source.discovery.clone());
        Box::new(HubOverStatic { hub, source }) as Box<dyn DiscoveryFixture>
    })
    .await;
}
