//! [`StaticDiscovery`]: workers listed in config, whose capabilities are learnt by probing them.

use crate::DiscoveryError;
use crate::fanout::Fanout;
use async_trait::async_trait;
use futures::stream::BoxStream;
use hybridgrid_core::{
    BoxError, CancellationToken, Discovery, DiscoverySource, WorkerEvent, WorkerInfo,
};
use std::future::Future;
use std::net::Ipv6Addr;
use std::sync::{Arc, Once};
use std::time::Duration;

/// Asks the worker at `addr` (`host:port`) who it is and what it can do (the coordinator's gRPC
/// "info" call in production; a fake in tests).
///
/// Any `Fn(String) -> impl Future<Output = Result<WorkerInfo, BoxError>>` is a prober.
#[async_trait]
pub trait Prober: Send + Sync + 'static {
    /// One probe. An error counts as a failed attempt.
    async fn probe(&self, addr: &str) -> Result<WorkerInfo, BoxError>;
}

#[async_trait]
impl<F, Fut> Prober for F
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<WorkerInfo, BoxError>> + Send + 'static,
{
    async fn probe(&self, addr: &str) -> Result<WorkerInfo, BoxError> {
        (self)(addr.to_owned()).await
    }
}

/// Timing of a [`StaticDiscovery`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StaticOptions {
    /// Pause between two probe rounds. Default 5 s.
    pub interval: Duration,
    /// How long one probe may take before it counts as failed. Default 3 s.
    pub probe_timeout: Duration,
    /// Consecutive failed probes after which an up worker is reported `Down`. Default 3.
    pub down_after: u32,
}

impl Default for StaticOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(5),
            probe_timeout: Duration::from_secs(3),
            down_after: 3,
        }
    }
}

/// Discovery over a fixed list of `host:port` addresses (`coordinator.static_workers`).
///
/// Each address is probed every [`StaticOptions::interval`], all at once. The first successful
/// probe sends `Up` (with `source: Static` and `addr` set to the listed address, whatever the
/// worker says); a later probe with different details sends `Up` again (or `Down` for the old id
/// then `Up`, if the worker came back with a new id); [`StaticOptions::down_after`] consecutive
/// failures send `Down`. Probing goes on forever, so a worker that comes back is seen again.
///
/// Probing starts at the first [`Discovery::watch`] (which must be called inside a Tokio runtime)
/// and stops when this value is dropped.
pub struct StaticDiscovery {
    addrs: Arc<Vec<String>>,
    prober: Arc<dyn Prober>,
    options: StaticOptions,
    fanout: Arc<Fanout>,
    started: Once,
    stop: CancellationToken,
}

impl std::fmt::Debug for StaticDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StaticDiscovery")
            .field("addrs", &self.addrs)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl StaticDiscovery {
    /// Validates every address (`host:port`, `[v6]:port`; no scheme, no duplicates) with default
    /// options. The error names the first bad entry.
    pub fn new(addrs: Vec<String>, prober: Arc<dyn Prober>) -> Result<Self, DiscoveryError> {
        for (i, addr) in addrs.iter().enumerate() {
            check_addr(addr)?;
            if addrs[..i].contains(addr) {
                return Err(DiscoveryError::InvalidAddress {
                    addr: addr.clone(),
                    reason: "listed twice",
                });
            }
        }
        Ok(Self {
            addrs: Arc::new(addrs),
            prober,
            options: StaticOptions::default(),
            fanout: Arc::new(Fanout::default()),
            started: Once::new(),
            stop: CancellationToken::new(),
        })
    }

    /// Replaces the timing options.
    pub fn with_options(mut self, options: StaticOptions) -> Self {
        self.options = options;
        self
    }
}

impl Discovery for StaticDiscovery {
    fn watch(&self) -> BoxStream<'static, WorkerEvent> {
        let stream = self.fanout.subscribe();
        self.started.call_once(|| {
            let poller = Poller {
                addrs: self.addrs.clone(),
                prober: self.prober.clone(),
                options: self.options,
                fanout: self.fanout.clone(),
            };
            tokio::spawn(poller.run(self.stop.clone()));
        });
        stream
    }
}

impl Drop for StaticDiscovery {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// What the poller knows of one address.
#[derive(Default)]
struct Seen {
    up: Option<WorkerInfo>,
    failures: u32,
}

struct Poller {
    addrs: Arc<Vec<String>>,
    prober: Arc<dyn Prober>,
    options: StaticOptions,
    fanout: Arc<Fanout>,
}

impl Poller {
    async fn run(self, stop: CancellationToken) {
        let mut seen: Vec<Seen> = self.addrs.iter().map(|_| Seen::default()).collect();
        loop {
            let probes = self.addrs.iter().map(|addr| {
                let prober = self.prober.clone();
                let timeout = self.options.probe_timeout;
                async move {
                    match tokio::time::timeout(timeout, prober.probe(addr)).await {
                        Ok(result) => result,
                        Err(_) => Err(format!("no answer within {timeout:?}").into()),
                    }
                }
            });
            let results = tokio::select! {
                () = stop.cancelled() => return,
                results = futures::future::join_all(probes) => results,
            };
            for ((addr, seen), result) in self.addrs.iter().zip(&mut seen).zip(results) {
                self.record(addr, seen, result);
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(self.options.interval) => {}
            }
        }
    }

    fn record(&self, addr: &str, seen: &mut Seen, result: Result<WorkerInfo, BoxError>) {
        match result {
            Ok(mut info) => {
                info.source = DiscoverySource::Static;
                info.addr = addr.to_owned();
                seen.failures = 0;
                if let Some(old) = &seen.up
                    && old.id != info.id
                {
                    tracing::info!(%addr, old = %old.id, new = %info.id, "static worker changed id");
                    self.fanout.down(&old.id);
                }
                if seen.up.as_ref() != Some(&info) {
                    tracing::info!(%addr, worker = %info.id, "static worker up");
                    self.fanout.up(info.clone());
                    seen.up = Some(info);
                }
            }
            Err(error) => {
                seen.failures = seen.failures.saturating_add(1);
                tracing::debug!(%addr, failures = seen.failures, %error, "static worker probe failed");
                if seen.failures >= self.options.down_after
                    && let Some(old) = seen.up.take()
                {
                    tracing::warn!(%addr, worker = %old.id, failures = seen.failures, %error, "static worker down");
                    self.fanout.down(&old.id);
                }
            }
        }
    }
}

/// Checks one `host:port` entry.
fn check_addr(addr: &str) -> Result<(), DiscoveryError> {
    let bad = |reason| DiscoveryError::InvalidAddress {
        addr: addr.to_owned(),
        reason,
    };
    if addr.contains("://") {
        return Err(bad("expected host:port without a scheme"));
    }
    let port = if let Some(rest) = addr.strip_prefix('[') {
        let (v6, port) = rest
            .split_once("]:")
            .ok_or_else(|| bad("expected [ipv6]:port"))?;
        v6.parse::<Ipv6Addr>()
            .map_err(|_| bad("not an IPv6 address between the brackets"))?;
        port
    } else {
        let (host, port) = addr
            .rsplit_once(':')
            .ok_or_else(|| bad("expected host:port (the port is missing)"))?;
        if host.contains(':') {
            return Err(bad("an IPv6 address must be written [addr]:port"));
        }
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_');
        if host.is_empty() || !host.chars().all(valid) {
            return Err(bad(
                "the host is empty or has characters not allowed in a name",
            ));
        }
        port
    };
    match port.parse::<u16>() {
        Ok(0) | Err(_) => Err(bad("the port must be a number from 1 to 65535")),
        Ok(_) => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_validated() {
        for good in [
            "10.0.0.7:50052",
            "worker-1.lan:9000",
            "[::1]:50052",
            "localhost:1",
        ] {
            assert!(check_addr(good).is_ok(), "{good}");
        }
        for bad in [
            "10.0.0.7",
            "http://10.0.0.7:50052",
            ":50052",
            "host:0",
            "host:65536",
            "host:port",
            "::1:50052",
            "[zz]:1",
            "[::1]50052",
            "ho st:1",
            " host:1",
        ] {
            match check_addr(bad) {
                Err(DiscoveryError::InvalidAddress { addr, .. }) => assert_eq!(addr, bad),
                other => panic!("{bad}: {other:?}"),
            }
        }
    }
}
