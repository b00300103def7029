//! Conformance suite for [`Discovery`] backends.
//!
//! A backend test supplies a [`DiscoveryFixture`]: the discovery under test plus a way to make a
//! worker appear (`add`: a static list's address starts answering, an mDNS announcement, a hub
//! registration) and go away (`remove`).
//!
//! ```no_run
//! # use hybridgrid_testkit::discovery::DiscoveryFixture;
//! # async fn demo(make_fixture: impl Fn() -> Box<dyn DiscoveryFixture>) {
//! hybridgrid_testkit::discovery::run_discovery_suite(|| async { make_fixture() }).await;
//! # }
//! ```
//!
//! Each wait is bounded (20 s), so a backend that misses an event fails rather than hangs.

use crate::check;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use hybridgrid_core::{
    Capabilities, Discovery, DiscoverySource, WorkerEvent, WorkerId, WorkerInfo,
};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(20);

/// The discovery under test and the means to make workers come and go.
#[async_trait]
pub trait DiscoveryFixture: Send + Sync {
    /// The discovery under test.
    fn discovery(&self) -> Arc<dyn Discovery>;
    /// Makes `worker` appear to the discovery.
    async fn add(&self, worker: WorkerInfo);
    /// Makes the worker `id` go away.
    async fn remove(&self, id: &WorkerId);
}

/// Runs every discovery check, each on a fresh fixture from `make`; panics listing each failure.
pub async fn run_discovery_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Box<dyn DiscoveryFixture>>,
{
    let mut failed = Vec::new();
    check(&mut failed, "added_worker_is_up", added_is_up(make().await)).await;
    check(
        &mut failed,
        "known_workers_replayed_to_a_new_watcher",
        replay(make().await),
    )
    .await;
    check(
        &mut failed,
        "removed_worker_is_down",
        removed_is_down(make().await),
    )
    .await;
    check(
        &mut failed,
        "two_watchers_each_see_up_and_down",
        two_watchers(make().await),
    )
    .await;
    assert!(
        failed.is_empty(),
        "Discovery conformance failures:\n{}",
        failed.join("\n")
    );
}

/// A worker with a fresh id (`<tag>-<random>`) and this host's capabilities.
pub fn worker(tag: &str) -> WorkerInfo {
    WorkerInfo {
        id: WorkerId::new(format!(
            "{tag}-{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        )),
        addr: "127.0.0.1:1".into(),
        capabilities: Capabilities::of_this_host(2),
        protocol_version: hybridgrid_core::PROTOCOL_VERSION,
        source: DiscoverySource::Registration,
    }
}

type Events = BoxStream<'static, WorkerEvent>;

/// Waits for `want(event)`, skipping other events (other workers, repeated `Up`s).
async fn until(
    events: &mut Events,
    what: &str,
    want: impl Fn(&WorkerEvent) -> bool,
) -> Result<(), String> {
    let found = tokio::time::timeout(WAIT, async {
        while let Some(e) = events.next().await {
            if want(&e) {
                return Ok(());
            }
        }
        Err(format!("stream ended before {what}"))
    })
    .await;
    found.unwrap_or_else(|_| Err(format!("no {what} within {WAIT:?}")))
}

async fn up(events: &mut Events, id: &WorkerId) -> Result<(), String> {
    until(
        events,
        &format!("Up({id})"),
        |e| matches!(e, WorkerEvent::Up(w) if &w.id == id),
    )
    .await
}

async fn down(events: &mut Events, id: &WorkerId) -> Result<(), String> {
    until(
        events,
        &format!("Down({id})"),
        |e| matches!(e, WorkerEvent::Down(d) if d == id),
    )
    .await
}

async fn added_is_up(f: Box<dyn DiscoveryFixture>) -> Result<(), String> {
    let mut events = f.discovery().watch();
    let w = worker("up");
    f.add(w.clone()).await;
    let out = up(&mut events, &w.id).await;
    f.remove(&w.id).await;
    out
}

async fn replay(f: Box<dyn DiscoveryFixture>) -> Result<(), String> {
    let mut first = f.discovery().watch();
    let w = worker("replay");
    f.add(w.clone()).await;
    up(&mut first, &w.id).await?;
    let mut late = f.discovery().watch();
    let out = up(&mut late, &w.id)
        .await
        .map_err(|e| format!("a watcher started after the worker was seen: {e}"));
    f.remove(&w.id).await;
    out
}

async fn removed_is_down(f: Box<dyn DiscoveryFixture>) -> Result<(), String> {
    let mut events = f.discovery().watch();
    let w = worker("down");
    f.add(w.clone()).await;
    up(&mut events, &w.id).await?;
    f.remove(&w.id).await;
    down(&mut events, &w.id).await
}

async fn two_watchers(f: Box<dyn DiscoveryFixture>) -> Result<(), String> {
    // One worker at a time: an mDNS fixture announces each worker as its own host process, and
    // two such processes in one network namespace share port 5353 unreliably.
    let mut a = f.discovery().watch();
    let mut b = f.discovery().watch();
    let w = worker("two");
    f.add(w.clone()).await;
    let out = async {
        up(&mut a, &w.id)
            .await
            .map_err(|e| format!("first watcher: {e}"))?;
        up(&mut b, &w.id)
            .await
            .map_err(|e| format!("second watcher: {e}"))?;
        f.remove(&w.id).await;
        down(&mut a, &w.id)
            .await
            .map_err(|e| format!("first watcher: {e}"))?;
        down(&mut b, &w.id)
            .await
            .map_err(|e| format!("second watcher: {e}"))
    }
    .await;
    f.remove(&w.id).await;
    out
}
