//! [`DiscoveryHub`]: several discovery sources and direct registrations merged into one stream.

use crate::fanout::Fanout;
use futures::StreamExt;
use futures::stream::BoxStream;
use hybridgrid_core::{CancellationToken, Discovery, WorkerEvent, WorkerId, WorkerInfo};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

/// Who vouches for a worker: a source added with [`DiscoveryHub::add_source`] (by index) or a
/// direct registration.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Claimant {
    Registration,
    Source(usize),
}

/// Merges discovery sources (static list, mDNS, ...) and direct registrations (workers that
/// register themselves with the coordinator) into one [`Discovery`].
///
/// A worker stays up while at least one source or a registration vouches for it: `Down` is sent
/// only when the last one withdraws. When several vouch with different details, the latest `Up`
/// wins. A source whose stream ends withdraws everything it reported.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use futures::StreamExt;
/// use hybridgrid_core::{Capabilities, Discovery, DiscoverySource, WorkerEvent, WorkerId, WorkerInfo};
/// use hybridgrid_discovery::DiscoveryHub;
///
/// let hub = DiscoveryHub::new();
/// let mut events = hub.watch();
/// let info = WorkerInfo {
///     id: WorkerId::new("w1"),
///     addr: "10.0.0.7:50052".into(),
///     capabilities: Capabilities::of_this_host(4),
///     protocol_version: hybridgrid_core::PROTOCOL_VERSION,
///     source: DiscoverySource::Registration,
/// };
/// hub.register(info.clone());
/// assert_eq!(events.next().await, Some(WorkerEvent::Up(info)));
/// hub.deregister(&WorkerId::new("w1"));
/// assert_eq!(events.next().await, Some(WorkerEvent::Down(WorkerId::new("w1"))));
/// # }
/// ```
#[derive(Debug, Default)]
pub struct DiscoveryHub {
    inner: Arc<HubInner>,
    stop: CancellationToken,
}

/// What each claimant last said about one worker, with the sequence number of the report.
type Claims = BTreeMap<Claimant, (u64, WorkerInfo)>;

#[derive(Debug, Default)]
struct HubInner {
    fanout: Fanout,
    /// When each registered worker last registered (for [`DiscoveryHub::with_registration_ttl`]).
    registered: Mutex<BTreeMap<WorkerId, Instant>>,
    /// Per worker, what each claimant last reported, with a sequence number to find the latest.
    claims: Mutex<BTreeMap<WorkerId, Claims>>,
    seq: Mutex<(u64, usize)>,
}

impl HubInner {
    fn next_seq(&self) -> u64 {
        let mut seq = self.seq.lock();
        seq.0 += 1;
        seq.0
    }

    fn up(&self, by: Claimant, info: WorkerInfo) {
        let seq = self.next_seq();
        let mut claims = self.claims.lock();
        claims
            .entry(info.id.clone())
            .or_default()
            .insert(by, (seq, info.clone()));
        self.fanout.up(info);
    }

    fn down(&self, by: Claimant, id: &WorkerId) {
        let mut claims = self.claims.lock();
        let Some(by_worker) = claims.get_mut(id) else {
            return;
        };
        if by_worker.remove(&by).is_none() {
            return;
        }
        match by_worker.values().max_by_key(|(seq, _)| *seq) {
            // Another claimant still vouches: its latest report stands.
            Some((_, info)) => {
                self.fanout.up(info.clone());
            }
            None => {
                claims.remove(id);
                self.fanout.down(id);
            }
        }
    }

    /// Deregisters the workers whose last registration is `ttl` old.
    fn expire(&self, ttl: Duration) {
        let now = Instant::now();
        let mut registered = self.registered.lock();
        let stale: Vec<WorkerId> = registered
            .iter()
            .filter(|(_, at)| now.duration_since(**at) >= ttl)
            .map(|(id, _)| id.clone())
            .collect();
        for id in stale {
            tracing::info!(worker = %id, ?ttl, "worker registration expired");
            registered.remove(&id);
            self.down(Claimant::Registration, &id);
        }
    }

    fn withdraw_all(&self, by: Claimant) {
        let ids: Vec<WorkerId> = self
            .claims
            .lock()
            .iter()
            .filter(|(_, c)| c.contains_key(&by))
            .map(|(id, _)| id.clone())
            .collect();
        for id in ids {
            self.down(by, &id);
        }
    }
}

impl DiscoveryHub {
    /// An empty hub. Registrations last until [`DiscoveryHub::deregister`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty hub whose registrations expire: a worker that has not registered again (its
    /// heartbeat) within `ttl` is deregistered. Must be called inside a Tokio runtime; the sweep
    /// runs every `ttl / 4` until the hub is dropped.
    pub fn with_registration_ttl(ttl: Duration) -> Self {
        let hub = Self::new();
        let inner = hub.inner.clone();
        let stop = hub.stop.clone();
        let every = (ttl / 4).max(Duration::from_millis(1));
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(every) => inner.expire(ttl),
                }
            }
        });
        hub
    }

    /// Follows `source` from now on (its replay of known workers included). Must be called inside
    /// a Tokio runtime; the forwarding task ends when the hub is dropped.
    pub fn add_source(&self, source: Arc<dyn Discovery>) {
        let index = {
            let mut seq = self.inner.seq.lock();
            seq.1 += 1;
            seq.1
        };
        let by = Claimant::Source(index);
        let inner = self.inner.clone();
        let stop = self.stop.clone();
        let mut events = source.watch();
        tokio::spawn(async move {
            loop {
                let event = tokio::select! {
                    () = stop.cancelled() => return,
                    event = events.next() => event,
                };
                match event {
                    Some(WorkerEvent::Up(info)) => inner.up(by, info),
                    Some(WorkerEvent::Down(id)) => inner.down(by, &id),
                    None => {
                        tracing::debug!(source = index, "discovery source ended");
                        inner.withdraw_all(by);
                        return;
                    }
                }
            }
        });
    }

    /// A worker registered itself (or re-registered with new capabilities).
    ///
    /// Registering again renews the registration (see [`DiscoveryHub::with_registration_ttl`]).
    pub fn register(&self, info: WorkerInfo) {
        tracing::debug!(worker = %info.id, addr = %info.addr, "worker registered");
        let mut registered = self.inner.registered.lock();
        registered.insert(info.id.clone(), Instant::now());
        self.inner.up(Claimant::Registration, info);
    }

    /// A registered worker left (or its registration expired).
    pub fn deregister(&self, id: &WorkerId) {
        tracing::debug!(worker = %id, "worker deregistered");
        let mut registered = self.inner.registered.lock();
        registered.remove(id);
        self.inner.down(Claimant::Registration, id);
    }

    /// The workers known now.
    pub fn workers(&self) -> Vec<WorkerInfo> {
        self.inner.fanout.snapshot()
    }
}

impl Discovery for DiscoveryHub {
    fn watch(&self) -> BoxStream<'static, WorkerEvent> {
        self.inner.fanout.subscribe()
    }
}

impl Drop for DiscoveryHub {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}
