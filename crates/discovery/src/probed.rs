//! [`ProbedDiscovery`]: workers that another source only points at (mDNS), each confirmed by
//! asking the worker itself before it is reported, and watched by probing it again.

use crate::fanout::Fanout;
use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;
use hybridgrid_core::{
    BoxError, CancellationToken, Discovery, DiscoverySource, PROTOCOL_VERSION, WorkerEvent,
    WorkerId, WorkerInfo,
};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Once};
use std::time::Duration;
use tokio::sync::mpsc;

/// Asks the worker a hint points at who it is (the coordinator's gRPC `Info` call, over mutual
/// TLS requiring a certificate issued for `hint.id`; a fake in tests). Only `hint.addr` and
/// `hint.id` may be relied on: the rest is what anyone could have announced.
///
/// Any `Fn(WorkerInfo) -> impl Future<Output = Result<WorkerInfo, BoxError>>` is one.
#[async_trait]
pub trait HintProber: Send + Sync + 'static {
    /// One probe of the worker `hint` points at. An error counts as a failed attempt.
    async fn probe(&self, hint: &WorkerInfo) -> Result<WorkerInfo, BoxError>;
}

#[async_trait]
impl<F, Fut> HintProber for F
where
    F: Fn(WorkerInfo) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<WorkerInfo, BoxError>> + Send + 'static,
{
    async fn probe(&self, hint: &WorkerInfo) -> Result<WorkerInfo, BoxError> {
        (self)(hint.clone()).await
    }
}

/// Timing of a [`ProbedDiscovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbedOptions {
    /// Pause between two probes of one worker. Default 2 s.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed. Default 2 s.
    pub probe_timeout: Duration,
    /// Consecutive failed probes after which a confirmed worker is reported `Down`. Default 3.
    pub down_after: u32,
    /// The source the confirmed workers are reported with. Default `Mdns`.
    pub source: DiscoverySource,
}

impl Default for ProbedOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(2),
            probe_timeout: Duration::from_secs(2),
            down_after: 3,
            source: DiscoverySource::Mdns,
        }
    }
}

impl ProbedOptions {
    /// Probing every `interval`, a worker silent for `timeout` is reported down: `down_after` is
    /// `timeout / interval` rounded up (at least 1), and a probe may take up to `interval`.
    pub fn heartbeat(interval: Duration, timeout: Duration) -> Self {
        let interval = interval.max(Duration::from_millis(50));
        let ratio = timeout.as_secs_f64() / interval.as_secs_f64();
        let down_after = if ratio.is_finite() && ratio >= 1.0 {
            // Bounded by the check above and by the cast's saturation.
            ratio.ceil().min(f64::from(u32::MAX)) as u32
        } else {
            1
        };
        Self {
            interval,
            probe_timeout: interval,
            down_after,
            ..Self::default()
        }
    }
}

/// Discovery that trusts nothing a hint says but where to look: every `Up` of the `hints` source
/// (an mDNS browser, whose TXT records anyone on the LAN can forge) is probed with the
/// [`HintProber`] (the coordinator's gRPC `Info` call, over mutual TLS when TLS is on), and
/// the worker is reported `Up` with what it answered, `source` set to [`ProbedOptions::source`]
/// and `addr` to the hinted address.
///
/// A hint whose protocol version differs from this side's is refused (logged once per worker and
/// version) without probing; so is a worker that answers with another id than the hint named. A
/// confirmed worker is probed every [`ProbedOptions::interval`]: after
/// [`ProbedOptions::down_after`] consecutive failures it is reported `Down` (a killed worker
/// sends no mDNS goodbye, and its record outlives it), and `Up` again if it answers later. A
/// `Down` hint reports it `Down` at once and stops probing it.
///
/// Probing starts at the first [`Discovery::watch`] (inside a Tokio runtime) and stops when this
/// value is dropped.
pub struct ProbedDiscovery {
    hints: Arc<dyn Discovery>,
    prober: Arc<dyn HintProber>,
    options: ProbedOptions,
    fanout: Arc<Fanout>,
    started: Once,
    stop: CancellationToken,
}

impl std::fmt::Debug for ProbedDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProbedDiscovery")
            .field("options", &self.options)
            .field("known", &self.fanout.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl ProbedDiscovery {
    /// Confirms the workers `hints` reports by probing them with `prober`.
    pub fn new(
        hints: Arc<dyn Discovery>,
        prober: Arc<dyn HintProber>,
        options: ProbedOptions,
    ) -> Self {
        Self {
            hints,
            prober,
            options,
            fanout: Arc::new(Fanout::default()),
            started: Once::new(),
            stop: CancellationToken::new(),
        }
    }
}

impl Discovery for ProbedDiscovery {
    fn watch(&self) -> BoxStream<'static, WorkerEvent> {
        let stream = self.fanout.subscribe();
        self.started.call_once(|| {
            let runner = Runner {
                prober: self.prober.clone(),
                options: self.options,
                fanout: self.fanout.clone(),
                tracked: HashMap::new(),
                refused: HashMap::new(),
                generation: 0,
            };
            tokio::spawn(runner.run(self.hints.watch(), self.stop.clone()));
        });
        stream
    }
}

impl Drop for ProbedDiscovery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// One hinted worker being probed.
struct Tracked {
    addr: String,
    generation: u64,
    stop: CancellationToken,
    up: Option<WorkerInfo>,
    failures: u32,
}

/// A probe's result, tagged with the generation of the probing loop that made it.
type ProbeResult = (WorkerId, u64, Result<WorkerInfo, BoxError>);

struct Runner {
    prober: Arc<dyn HintProber>,
    options: ProbedOptions,
    fanout: Arc<Fanout>,
    tracked: HashMap<WorkerId, Tracked>,
    /// Workers refused for their protocol version, with that version (logged once each).
    refused: HashMap<WorkerId, u32>,
    generation: u64,
}

impl Runner {
    async fn run(mut self, mut hints: BoxStream<'static, WorkerEvent>, stop: CancellationToken) {
        let (tx, mut results) = mpsc::unbounded_channel::<ProbeResult>();
        loop {
            tokio::select! {
                () = stop.cancelled() => break,
                event = hints.next() => match event {
                    Some(WorkerEvent::Up(hint)) => self.hinted(hint, &tx, &stop),
                    Some(WorkerEvent::Down(id)) => self.untrack(&id, "its announcement was withdrawn"),
                    None => break,
                },
                Some((id, generation, result)) = results.recv() => self.record(id, generation, result),
            }
        }
        let ids: Vec<WorkerId> = self.tracked.keys().cloned().collect();
        for id in ids {
            self.untrack(&id, "discovery stopped");
        }
    }

    fn hinted(
        &mut self,
        hint: WorkerInfo,
        tx: &mpsc::UnboundedSender<ProbeResult>,
        stop: &CancellationToken,
    ) {
        if hint.protocol_version != PROTOCOL_VERSION {
            if self.refused.insert(hint.id.clone(), hint.protocol_version)
                != Some(hint.protocol_version)
            {
                tracing::warn!(worker_id = %hint.id, addr = %hint.addr, source = %self.options.source,
                    worker_protocol = hint.protocol_version, our_protocol = PROTOCOL_VERSION,
                    "worker refused: incompatible protocol version (it speaks {}, this coordinator speaks {}); run the same hybridgrid release on both",
                    hint.protocol_version, PROTOCOL_VERSION);
            }
            self.untrack(
                &hint.id,
                "it now announces an incompatible protocol version",
            );
            return;
        }
        self.refused.remove(&hint.id);
        if self
            .tracked
            .get(&hint.id)
            .is_some_and(|t| t.addr == hint.addr)
        {
            return; // already probing it there
        }
        if let Some(old) = self.tracked.remove(&hint.id) {
            old.stop.cancel(); // moved: the next confirmed probe replaces it
        }
        self.generation += 1;
        let token = stop.child_token();
        let tracked = Tracked {
            addr: hint.addr.clone(),
            generation: self.generation,
            stop: token.clone(),
            up: None,
            failures: 0,
        };
        tracing::debug!(worker_id = %hint.id, addr = %hint.addr, "probing announced worker");
        let id = hint.id.clone();
        tokio::spawn(probe_loop(
            hint,
            self.generation,
            self.prober.clone(),
            self.options,
            tx.clone(),
            token,
        ));
        self.tracked.insert(id, tracked);
    }

    fn untrack(&mut self, id: &WorkerId, why: &str) {
        if let Some(t) = self.tracked.remove(id) {
            t.stop.cancel();
            if t.up.is_some() && self.fanout.down(id) {
                tracing::info!(worker_id = %id, addr = %t.addr, reason = why, "announced worker gone");
            }
        }
    }

    fn record(&mut self, id: WorkerId, generation: u64, result: Result<WorkerInfo, BoxError>) {
        let Some(t) = self
            .tracked
            .get_mut(&id)
            .filter(|t| t.generation == generation)
        else {
            return; // from a loop since stopped
        };
        let result = result.and_then(|info| {
            if info.id != id {
                return Err(format!(
                    "the worker at {} answers as {:?}, not as the announced {:?}",
                    t.addr,
                    info.id.as_str(),
                    id.as_str()
                )
                .into());
            }
            if info.protocol_version != PROTOCOL_VERSION {
                return Err(format!(
                    "incompatible protocol version: it speaks {}, this side speaks {PROTOCOL_VERSION}",
                    info.protocol_version
                )
                .into());
            }
            Ok(info)
        });
        match result {
            Ok(mut info) => {
                info.source = self.options.source;
                info.addr = t.addr.clone();
                t.failures = 0;
                if t.up.as_ref() != Some(&info) {
                    t.up = Some(info.clone());
                    self.fanout.up(info);
                }
            }
            Err(error) => {
                t.failures = t.failures.saturating_add(1);
                if t.up.is_none() && t.failures == 1 {
                    tracing::warn!(worker_id = %id, addr = %t.addr, %error,
                        "announced worker not confirmed (it must answer Info, over mutual TLS when TLS is on); retrying");
                } else {
                    tracing::debug!(worker_id = %id, failures = t.failures, %error, "probe failed");
                }
                if t.failures >= self.options.down_after && t.up.take().is_some() {
                    tracing::warn!(worker_id = %id, addr = %t.addr, failures = t.failures, %error,
                        "announced worker stopped answering");
                    self.fanout.down(&id);
                }
            }
        }
    }
}

async fn probe_loop(
    hint: WorkerInfo,
    generation: u64,
    prober: Arc<dyn HintProber>,
    options: ProbedOptions,
    tx: mpsc::UnboundedSender<ProbeResult>,
    stop: CancellationToken,
) {
    loop {
        let timeout = options.probe_timeout;
        let result = tokio::select! {
            () = stop.cancelled() => return,
            r = tokio::time::timeout(timeout, prober.probe(&hint)) => match r {
                Ok(r) => r,
                Err(_) => Err(format!("no answer within {timeout:?}").into()),
            },
        };
        if tx.send((hint.id.clone(), generation, result)).is_err() {
            return;
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(options.interval) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heartbeat_options_cover_the_timeout() {
        let o = ProbedOptions::heartbeat(Duration::from_secs(2), Duration::from_secs(6));
        assert_eq!((o.interval, o.down_after), (Duration::from_secs(2), 3));
        let o = ProbedOptions::heartbeat(Duration::from_millis(500), Duration::from_millis(1200));
        assert_eq!(o.down_after, 3);
        let o = ProbedOptions::heartbeat(Duration::from_secs(5), Duration::from_secs(1));
        assert_eq!(o.down_after, 1);
        let o = ProbedOptions::heartbeat(Duration::ZERO, Duration::ZERO);
        assert_eq!(o.down_after, 1);
    }
}
