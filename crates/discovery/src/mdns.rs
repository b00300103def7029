//! mDNS: workers announce `_hybridgrid._tcp.local.` with their capabilities in TXT records;
//! [`MdnsDiscovery`] browses for them.
//!
//! TXT keys: `id`, `arch`, `os`, `cpus`, `slots`, `version` (protocol), `port` (gRPC port, also
//! in the SRV record), `exec` (executor kinds, comma-separated), `tls` (BLAKE3 fingerprint of the
//! worker's certificate, when TLS is on), `tc` (toolchain count) and `tc0`, `tc1`, ... one per
//! toolchain as `name|version|target|binary_hash`. One key per toolchain keeps every entry under
//! the 255-byte limit of a TXT string.
//!
//! Anyone on the LAN can announce anything: a TXT record says where to look, never whom to trust.
//! Wrap [`MdnsDiscovery`] in a [`crate::ProbedDiscovery`] so that each announced worker is asked
//! (over mutual TLS) before it is used.
//!
//! [`MdnsInterfaces`] says which interfaces mDNS may use: never loopback, and with
//! [`MdnsInterfaces::Only`] just the interface that holds one address (the one a daemon serves
//! on), so a daemon bound to one network never announces itself on the others.

use crate::DiscoveryError;
use crate::fanout::Fanout;
use futures::stream::BoxStream;
use hybridgrid_core::{
    Capabilities, Discovery, DiscoverySource, Toolchain, WorkerEvent, WorkerId, WorkerInfo,
};
use mdns_sd::{ServiceDaemon, ServiceEvent, ServiceInfo};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

/// The UDP port of mDNS.
pub const MDNS_PORT: u16 = 5353;

/// The interfaces mDNS may send and listen on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum MdnsInterfaces {
    /// Every interface except loopback.
    #[default]
    AllButLoopback,
    /// Only the interface holding this address.
    Only(IpAddr),
}

impl MdnsInterfaces {
    /// Where a daemon listening on `listen` should use mDNS: `None` for a loopback address
    /// (nothing off this host could reach it, so nothing is announced or browsed), the interface
    /// of a specific address, or every non-loopback interface for `0.0.0.0` / `::`.
    pub fn for_listen_addr(listen: IpAddr) -> Option<Self> {
        if listen.is_loopback() {
            None
        } else if listen.is_unspecified() {
            Some(MdnsInterfaces::AllButLoopback)
        } else {
            Some(MdnsInterfaces::Only(listen))
        }
    }

    fn apply(self, daemon: &ServiceDaemon) -> Result<(), DiscoveryError> {
        use mdns_sd::IfKind;
        let r = match self {
            MdnsInterfaces::AllButLoopback => {
                daemon.disable_interface(vec![IfKind::LoopbackV4, IfKind::LoopbackV6])
            }
            MdnsInterfaces::Only(ip) => daemon
                .disable_interface(IfKind::All)
                .and_then(|()| daemon.enable_interface(IfKind::Addr(ip))),
        };
        r.map_err(|e| mdns_error("select the mDNS interfaces", e))
    }
}

/// What a worker announces besides its [`WorkerInfo`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Announcement {
    /// The gRPC port (SRV record and TXT `port`).
    pub port: u16,
    /// TXT `tls`: the BLAKE3 fingerprint of the worker's certificate, when TLS is on.
    pub tls_fingerprint: Option<String>,
    /// Where to announce.
    pub interfaces: MdnsInterfaces,
}

/// Checks that UDP port 5353 can be bound the way mDNS binds it (shared, `SO_REUSEADDR`), on the
/// wildcard address; the error says why not (another program holds it exclusively, or the
/// system refuses). A firewall dropping the packets is not detectable here.
pub fn check_mdns_port() -> std::io::Result<()> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, MDNS_PORT)).into())
}

/// Starts an mDNS daemon on `interfaces`, logging (once, at `warn`) the first error it reports
/// later, such as a socket it cannot open.
fn start_daemon(interfaces: MdnsInterfaces) -> Result<ServiceDaemon, DiscoveryError> {
    let daemon = ServiceDaemon::new().map_err(|e| mdns_error("start the mDNS daemon", e))?;
    interfaces.apply(&daemon)?;
    if let Ok(monitor) = daemon.monitor() {
        let spawned = std::thread::Builder::new()
            .name("hg-mdns-monitor".into())
            .spawn(move || {
                while let Ok(event) = monitor.recv() {
                    if let mdns_sd::DaemonEvent::Error(error) = event {
                        tracing::warn!(%error, "mDNS error (udp/5353); if workers are not found, allow 5353/udp (e.g. `sudo ufw allow 5353/udp`) or list them in coordinator.static_workers");
                        break;
                    }
                }
            });
        if let Err(error) = spawned {
            tracing::debug!(%error, "mDNS monitor thread not started");
        }
    }
    Ok(daemon)
}

/// The DNS-SD service type hybridgrid workers announce.
pub const SERVICE_TYPE: &str = "_hybridgrid._tcp.local.";

/// Longest `key=value` in one TXT string.
const TXT_ENTRY_MAX: usize = 255;

fn mdns_error(what: &'static str, source: mdns_sd::Error) -> DiscoveryError {
    DiscoveryError::Mdns {
        what,
        source: Box::new(source),
    }
}

/// Announces one worker on the local network until dropped (dropping sends the goodbye).
pub struct MdnsAnnouncer {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for MdnsAnnouncer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsAnnouncer")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

impl MdnsAnnouncer {
    /// Announces `info` on every non-loopback interface (its `addr` is not sent: browsers see
    /// the host's addresses and `port`). Fails when a TXT entry would exceed 255 bytes or a
    /// toolchain field contains `|`.
    pub fn announce(info: &WorkerInfo, port: u16) -> Result<Self, DiscoveryError> {
        Self::announce_with(
            info,
            &Announcement {
                port,
                ..Announcement::default()
            },
        )
    }

    /// Announces `info` as `how` says.
    pub fn announce_with(info: &WorkerInfo, how: &Announcement) -> Result<Self, DiscoveryError> {
        let port = how.port;
        let properties = encode_txt(info, port, how.tls_fingerprint.as_deref())?;
        let daemon = start_daemon(how.interfaces)?;
        let label: String = info
            .id
            .as_str()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let host = format!("hg-{label}.local.");
        let service = ServiceInfo::new(SERVICE_TYPE, info.id.as_str(), &host, "", port, properties)
            .map_err(|e| mdns_error("build the service record", e))?
            .enable_addr_auto();
        let fullname = service.get_fullname().to_owned();
        daemon
            .register(service)
            .map_err(|e| mdns_error("register the service", e))?;
        tracing::info!(worker = %info.id, %fullname, port, "announcing over mDNS");
        Ok(Self { daemon, fullname })
    }

    /// The announced instance's full DNS-SD name.
    pub fn fullname(&self) -> &str {
        &self.fullname
    }
}

/// How long dropping an announcer waits for mdns-sd to send the goodbye, and then to stop.
const GOODBYE_WAIT: Duration = Duration::from_secs(2);

impl Drop for MdnsAnnouncer {
    /// Sends the goodbye (so browsers see the worker leave at once rather than when its record
    /// expires) and stops the daemon, blocking up to a few seconds.
    fn drop(&mut self) {
        match self.daemon.unregister(&self.fullname) {
            Ok(done) => {
                if done.recv_timeout(GOODBYE_WAIT).is_err() {
                    tracing::debug!(fullname = %self.fullname, "mDNS goodbye not confirmed");
                }
            }
            Err(error) => tracing::debug!(%error, fullname = %self.fullname, "mDNS unregister"),
        }
        match self.daemon.shutdown() {
            Ok(done) => {
                let _ = done.recv_timeout(GOODBYE_WAIT);
            }
            Err(error) => tracing::debug!(%error, "mDNS daemon shutdown"),
        }
    }
}

/// Workers found over mDNS: a resolved announcement sends `Up` (`source: Mdns`, `addr` built from
/// the first announced IPv4 address, else IPv6, and the port); a removal or expiry sends `Down`.
///
/// Browsing starts at construction on mdns-sd's own thread (no Tokio runtime needed) and stops
/// when this value is dropped.
pub struct MdnsDiscovery {
    daemon: ServiceDaemon,
    fanout: Arc<Fanout>,
}

impl std::fmt::Debug for MdnsDiscovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MdnsDiscovery")
            .field("known", &self.fanout.snapshot().len())
            .finish_non_exhaustive()
    }
}

impl MdnsDiscovery {
    /// Starts browsing for [`SERVICE_TYPE`] on every non-loopback interface.
    pub fn new() -> Result<Self, DiscoveryError> {
        Self::on(MdnsInterfaces::AllButLoopback)
    }

    /// Starts browsing for [`SERVICE_TYPE`] on `interfaces`.
    pub fn on(interfaces: MdnsInterfaces) -> Result<Self, DiscoveryError> {
        let daemon = start_daemon(interfaces)?;
        let events = daemon
            .browse(SERVICE_TYPE)
            .map_err(|e| mdns_error("browse for workers", e))?;
        let fanout = Arc::new(Fanout::default());
        let sink = fanout.clone();
        std::thread::Builder::new()
            .name("hg-mdns-browse".into())
            .spawn(move || {
                let mut names: HashMap<String, WorkerId> = HashMap::new();
                // Ends when the daemon shuts down and closes the channel.
                while let Ok(event) = events.recv() {
                    handle(&sink, &mut names, event);
                }
            })
            .map_err(|source| DiscoveryError::Mdns {
                what: "start the browse thread",
                source: Box::new(source),
            })?;
        Ok(Self { daemon, fanout })
    }
}

impl Discovery for MdnsDiscovery {
    fn watch(&self) -> BoxStream<'static, WorkerEvent> {
        self.fanout.subscribe()
    }
}

impl Drop for MdnsDiscovery {
    fn drop(&mut self) {
        if let Err(error) = self.daemon.shutdown() {
            tracing::debug!(%error, "mDNS daemon shutdown");
        }
    }
}

fn handle(fanout: &Fanout, names: &mut HashMap<String, WorkerId>, event: ServiceEvent) {
    match event {
        ServiceEvent::ServiceResolved(service) => {
            let props: HashMap<String, String> = service
                .txt_properties
                .iter()
                .map(|p| (p.key().to_owned(), p.val_str().to_owned()))
                .collect();
            let mut ips: Vec<IpAddr> = service.addresses.iter().map(|a| a.to_ip_addr()).collect();
            ips.sort_by_key(|ip| (!ip.is_ipv4(), ip.is_loopback(), *ip));
            let Some(ip) = ips.first() else {
                tracing::debug!(fullname = %service.fullname, "mDNS service without address");
                return;
            };
            let addr = match ip {
                IpAddr::V4(v4) => format!("{v4}:{}", service.port),
                IpAddr::V6(v6) => format!("[{v6}]:{}", service.port),
            };
            match decode_txt(&props, addr) {
                Ok(info) => {
                    if let Some(old) = names.insert(service.fullname.clone(), info.id.clone())
                        && old != info.id
                    {
                        fanout.down(&old);
                    }
                    if fanout.up(info.clone()) {
                        tracing::info!(worker = %info.id, addr = %info.addr, "mDNS worker up");
                    }
                }
                Err(reason) => {
                    tracing::warn!(fullname = %service.fullname, %reason, "ignoring mDNS announcement");
                }
            }
        }
        ServiceEvent::ServiceRemoved(_, fullname) => {
            if let Some(id) = names.remove(&fullname) {
                tracing::info!(worker = %id, %fullname, "mDNS worker down");
                fanout.down(&id);
            }
        }
        _ => {}
    }
}

/// The TXT properties announcing `info`.
pub(crate) fn encode_txt(
    info: &WorkerInfo,
    port: u16,
    tls_fingerprint: Option<&str>,
) -> Result<HashMap<String, String>, DiscoveryError> {
    let caps = &info.capabilities;
    let mut txt = HashMap::from([
        ("port".to_owned(), port.to_string()),
        ("id".to_owned(), info.id.as_str().to_owned()),
        ("arch".to_owned(), caps.arch.clone()),
        ("os".to_owned(), caps.os.clone()),
        ("cpus".to_owned(), caps.cpus.to_string()),
        ("slots".to_owned(), caps.slots.to_string()),
        ("version".to_owned(), info.protocol_version.to_string()),
        ("exec".to_owned(), caps.executors.join(",")),
        ("tc".to_owned(), caps.toolchains.len().to_string()),
    ]);
    for (i, tc) in caps.toolchains.iter().enumerate() {
        let fields = [&tc.name, &tc.version, &tc.target, &tc.binary_hash];
        if fields.iter().any(|f| f.contains('|')) {
            return Err(DiscoveryError::Txt {
                key: format!("tc{i}"),
                reason: "a toolchain field contains `|`".into(),
            });
        }
        let joined = fields.map(String::as_str).join("|");
        txt.insert(format!("tc{i}"), joined);
    }
    if let Some(fp) = tls_fingerprint {
        txt.insert("tls".to_owned(), fp.to_owned());
    }
    if let Some(e) = caps.executors.iter().find(|e| e.contains(',')) {
        return Err(DiscoveryError::Txt {
            key: "exec".into(),
            reason: format!("executor kind {e:?} contains `,`"),
        });
    }
    for (key, value) in &txt {
        if key.len() + 1 + value.len() > TXT_ENTRY_MAX {
            return Err(DiscoveryError::Txt {
                key: key.clone(),
                reason: format!(
                    "{} bytes, more than the {TXT_ENTRY_MAX} a TXT string holds",
                    key.len() + 1 + value.len()
                ),
            });
        }
    }
    Ok(txt)
}

/// The worker announced by `txt`, reachable at `addr`. The error says which key is missing or bad.
pub(crate) fn decode_txt(
    txt: &HashMap<String, String>,
    addr: String,
) -> Result<WorkerInfo, String> {
    let get = |key: &str| {
        txt.get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("TXT key {key:?} is missing"))
    };
    let number = |key: &str| -> Result<u32, String> {
        let raw = get(key)?;
        raw.parse()
            .map_err(|_| format!("TXT key {key:?} is not a number: {raw:?}"))
    };
    let id = get("id")?;
    if id.is_empty() {
        return Err("TXT key \"id\" is empty".into());
    }
    let count = number("tc")?;
    let mut toolchains = Vec::new();
    for i in 0..count {
        let key = format!("tc{i}");
        let raw = get(&key)?;
        let parts: Vec<&str> = raw.split('|').collect();
        let [name, version, target, hash] = parts[..] else {
            return Err(format!(
                "TXT key {key:?} is not name|version|target|hash: {raw:?}"
            ));
        };
        toolchains.push(Toolchain {
            name: name.to_owned(),
            version: version.to_owned(),
            target: target.to_owned(),
            binary_hash: hash.to_owned(),
        });
    }
    let exec = get("exec")?;
    Ok(WorkerInfo {
        id: WorkerId::new(id),
        addr,
        capabilities: Capabilities {
            arch: get("arch")?.to_owned(),
            os: get("os")?.to_owned(),
            cpus: number("cpus")?,
            slots: number("slots")?,
            toolchains,
            executors: exec
                .split(',')
                .filter(|e| !e.is_empty())
                .map(str::to_owned)
                .collect(),
        },
        protocol_version: number("version")?,
        source: DiscoverySource::Mdns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn worker() -> WorkerInfo {
        let mut caps = Capabilities::of_this_host(4);
        caps.executors = vec!["native".into(), "docker".into()];
        caps.toolchains = vec![
            Toolchain {
                name: "gcc".into(),
                version: "12.2.0".into(),
                target: "x86_64-linux-gnu".into(),
                binary_hash: "ab".repeat(32),
            },
            Toolchain {
                name: "clang".into(),
                version: "Debian clang version 14.0.6".into(),
                target: "x86_64-pc-linux-gnu".into(),
                binary_hash: String::new(),
            },
        ];
        WorkerInfo {
            id: WorkerId::random(),
            addr: "ignored:1".into(),
            capabilities: caps,
            protocol_version: hybridgrid_core::PROTOCOL_VERSION,
            source: DiscoverySource::Registration,
        }
    }

    #[test]
    fn txt_round_trips() {
        let info = worker();
        let txt = encode_txt(&info, 50052, Some("ab12")).expect("encode");
        assert_eq!(
            (txt["port"].as_str(), txt["tls"].as_str()),
            ("50052", "ab12")
        );
        assert_eq!(txt["tc"], "2");
        assert_eq!(
            txt["tc0"],
            format!("gcc|12.2.0|x86_64-linux-gnu|{}", "ab".repeat(32))
        );
        let back = decode_txt(&txt, "10.1.2.3:50052".into()).expect("decode");
        assert_eq!(back.capabilities, info.capabilities);
        assert_eq!(back.id, info.id);
        assert_eq!(back.protocol_version, info.protocol_version);
        assert_eq!(back.addr, "10.1.2.3:50052");
        assert_eq!(back.source, DiscoverySource::Mdns);
    }

    #[test]
    fn txt_errors_name_the_key() {
        let mut info = worker();
        info.capabilities.toolchains[1].version = "x".repeat(300);
        assert!(
            matches!(encode_txt(&info, 1, None), Err(DiscoveryError::Txt { key, .. }) if key == "tc1")
        );
        info.capabilities.toolchains[1].version = "a|b".into();
        assert!(
            matches!(encode_txt(&info, 1, None), Err(DiscoveryError::Txt { key, .. }) if key == "tc1")
        );

        let mut txt = encode_txt(&worker(), 1, None).expect("encode");
        txt.remove("tc1");
        let err = decode_txt(&txt, "a:1".into()).expect_err("missing tc1");
        assert!(err.contains("\"tc1\""), "{err}");
        txt.insert("tc1".into(), "only|three|parts".into());
        assert!(decode_txt(&txt, "a:1".into()).is_err());
        txt.insert("cpus".into(), "many".into());
        let err = decode_txt(&txt, "a:1".into()).expect_err("bad cpus");
        assert!(err.contains("\"cpus\"") || err.contains("\"tc1\""), "{err}");
    }
}
