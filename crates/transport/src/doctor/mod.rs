//! The probes every `doctor` command is made of (`hgbuild doctor`, `hg-coord doctor`,
//! `hg-worker doctor`): each returns a [`Check`] whose detail says what was found and, when it is
//! not ok, what to do. Blocking and dependency-free on purpose (plain TCP and Unix sockets,
//! `/proc`), so that `hgbuild` links no HTTP server or client stack.
//!
//! ```
//! use hybridgrid_transport::doctor::{Report, Verdict, check};
//! let mut r = Report::default();
//! r.push(check("config", Verdict::Ok, "defaults"));
//! assert!(r.ok());
//! assert_eq!(r.to_string().lines().next(), Some("[ ok ] config: defaults"));
//! ```

mod docker;
mod stats;
pub use docker::{DockerHost, docker_checks};
pub use stats::{fetch_stats, stats_checks};

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

pub use hybridgrid_core::doctor::{Check, Report, Verdict, check};

/// The address to dial for a listen address: `0.0.0.0` and `[::]` become loopback.
pub fn dial_addr(listen: &str) -> String {
    if let Some(port) = listen.strip_prefix("0.0.0.0:") {
        format!("127.0.0.1:{port}")
    } else if let Some(port) = listen.strip_prefix("[::]:") {
        format!("[::1]:{port}")
    } else {
        listen.to_owned()
    }
}

/// The port of `host:port`, if it has one.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

fn resolve(addr: &str) -> Result<SocketAddr, String> {
    addr.to_socket_addrs()
        .map_err(|e| format!("{addr}: {e}"))?
        .next()
        .ok_or_else(|| format!("{addr}: resolves to no address"))
}

/// Opens a TCP connection to `addr` within `timeout`.
pub fn tcp_connect(addr: &str, timeout: Duration) -> Result<TcpStream, String> {
    let sa = resolve(addr)?;
    TcpStream::connect_timeout(&sa, timeout).map_err(|e| format!("{addr}: {e}"))
}

/// `GET path` over HTTP/1.0 on `addr` (plain text), with a bearer token when given;
/// returns the status and body.
pub fn http_get(
    addr: &str,
    path: &str,
    token: Option<&str>,
    timeout: Duration,
) -> Result<(u16, String), String> {
    let mut s = tcp_connect(addr, timeout)?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    exchange(
        &mut s,
        &format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n{auth}\r\n"),
        timeout,
    )
    .map_err(|e| format!("GET http://{addr}{path}: {e}"))
}

/// One HTTP/1.0 exchange on an open stream: no chunking, the body ends at close.
fn exchange<S: Read + Write + Timeouts>(
    s: &mut S,
    request: &str,
    timeout: Duration,
) -> Result<(u16, String), String> {
    s.timeouts(timeout).map_err(|e| e.to_string())?;
    s.write_all(request.as_bytes()).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    // At most 16 MiB: a doctor never needs more, and a confused peer cannot exhaust memory.
    s.take(16 << 20)
        .read_to_end(&mut raw)
        .map_err(|e| e.to_string())?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| "not an HTTP response".to_owned())?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("not an HTTP status line: {:?}", head.lines().next()))?;
    Ok((status, body.to_owned()))
}

trait Timeouts {
    fn timeouts(&self, t: Duration) -> std::io::Result<()>;
}
impl Timeouts for TcpStream {
    fn timeouts(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}
impl Timeouts for std::os::unix::net::UnixStream {
    fn timeouts(&self, t: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(t))?;
        self.set_write_timeout(Some(t))
    }
}

/// The processes listening on TCP `port` (any address), as `pid N (name)`, read from `/proc`.
/// Empty when nothing listens or the owner is not visible (another user's process, no `/proc`).
pub fn listeners_of(port: u16) -> Vec<String> {
    let mut inodes = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let (Some(local), Some(state), Some(inode)) = (f.get(1), f.get(3), f.get(9)) else {
                continue;
            };
            let p = local
                .rsplit_once(':')
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if *state == "0A" && p == Some(port) && *inode != "0" {
                inodes.push(format!("socket:[{inode}]"));
            }
        }
    }
    if inodes.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return out;
    };
    for p in procs.flatten() {
        let name = p.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|s| s.bytes().all(|b| b.is_ascii_digit()))
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(p.path().join("fd")) else {
            continue;
        };
        let holds = fds.flatten().any(|fd| {
            std::fs::read_link(fd.path())
                .is_ok_and(|l| inodes.iter().any(|i| l.as_os_str() == i.as_str()))
        });
        if holds {
            let comm = std::fs::read_to_string(p.path().join("comm")).unwrap_or_default();
            let entry = format!("pid {pid} ({})", comm.trim());
            if !out.contains(&entry) {
                out.push(entry);
            }
        }
    }
    out
}

/// Whether `addr` (a listen address) is served, and by whom: `what` names the service
/// (`hg-coord gRPC`), `program` the process that should listen there, `start` how to start it.
pub fn port_check(what: &str, listen: &str, program: &str, start: &str) -> Check {
    let name = format!("{what} port {listen}");
    let Some(port) = port_of(listen) else {
        return check(
            name,
            Verdict::Fail,
            format!("{listen:?} is not host:port: fix the address in the config"),
        );
    };
    let addr = dial_addr(listen);
    let owners = listeners_of(port);
    let shown = if owners.is_empty() {
        String::from("owner not visible")
    } else {
        owners.join(", ")
    };
    match tcp_connect(&addr, Duration::from_secs(2)) {
        Err(e) => check(
            name,
            Verdict::Fail,
            format!("nothing answers on {addr} ({e}); {program} should listen there: {start}"),
        ),
        Ok(_) if !owners.is_empty() && !owners.iter().any(|o| comm_matches(o, program)) => check(
            name,
            Verdict::Fail,
            format!(
                "{addr} is held by {shown}, not {program}: stop that process or move {program} to another port (see the listen address in the config)"
            ),
        ),
        Ok(_) => check(name, Verdict::Ok, format!("listening: {shown}")),
    }
}

fn comm_matches(owner: &str, program: &str) -> bool {
    // /proc/PID/comm is cut at 15 bytes.
    let comm = owner
        .split_once('(')
        .map_or("", |(_, c)| c.trim_end_matches(')'));
    !comm.is_empty() && program.starts_with(comm)
}

/// `GET /health` on `addr` answered `200` (the guide's "Service running").
pub fn health_check(what: &str, http: &str, start: &str) -> Check {
    let addr = dial_addr(http);
    let name = format!("{what} /health");
    match http_get(&addr, "/health", None, Duration::from_secs(3)) {
        Ok((200, _)) => check(name, Verdict::Ok, format!("http://{addr}/health: 200 OK")),
        Ok((code, body)) => check(
            name,
            Verdict::Fail,
            format!(
                "http://{addr}/health answered {code}: {}; check its log",
                body.trim()
            ),
        ),
        Err(e) => check(name, Verdict::Fail, format!("{e}: {start}")),
    }
}

/// Whether mDNS can be used here: UDP 5353 bound as mDNS responders bind it (shared with avahi)
/// and the group 224.0.0.251 joined. A warning when not: static workers still work.
pub fn mdns_check() -> Check {
    use socket2::{Domain, Protocol, Socket, Type};
    let name = "mDNS (5353/udp)";
    let attempt = || -> std::io::Result<()> {
        let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        s.set_reuse_address(true)?;
        s.set_reuse_port(true)?;
        s.bind(&SocketAddr::from(([0, 0, 0, 0], 5353)).into())?;
        s.join_multicast_v4(
            &std::net::Ipv4Addr::new(224, 0, 0, 251),
            &std::net::Ipv4Addr::UNSPECIFIED,
        )
    };
    match attempt() {
        Ok(()) => check(
            name,
            Verdict::Ok,
            "5353/udp can be bound and 224.0.0.251 joined; if workers are still not found, allow 5353/udp in the firewall (sudo ufw allow 5353/udp) and keep them on the same network segment",
        ),
        Err(e) => check(
            name,
            Verdict::Warn,
            format!(
                "cannot use 5353/udp here ({e}): workers will not be discovered by mDNS; allow it (sudo ufw allow 5353/udp, a multicast route on the LAN interface) or list workers in coordinator.static_workers"
            ),
        ),
    }
}

/// Whether `dir` exists (or can be created) and a file can be written in it, tried for real (so
/// it also holds for root, read-only mounts and full disks). `what` names the config key.
pub fn dir_check(what: &str, dir: &Path) -> Check {
    let name = format!("{what} {}", dir.display());
    let probe = dir.join(format!(".hg-doctor-{}", std::process::id()));
    let attempt = std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&probe, b"doctor"))
        .and_then(|()| std::fs::remove_file(&probe));
    match attempt {
        Ok(()) => check(name, Verdict::Ok, "exists and is writable"),
        Err(e) => {
            let owner = {
                use std::os::unix::fs::MetadataExt;
                std::fs::metadata(dir).map_or(String::from("missing"), |m| {
                    format!("owner uid {}, mode {:o}", m.uid(), m.mode() & 0o7777)
                })
            };
            check(
                name,
                Verdict::Fail,
                format!(
                    "not writable by this user ({e}; {owner}): chown $USER {0} && chmod 755 {0}, or set {what} to a directory you own",
                    dir.display()
                ),
            )
        }
    }
}

/// Seconds since the epoch now.
fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// What the doctor reads of one certificate.
struct CertFacts {
    subject: String,
    issuer: String,
    not_after: String,
    secs_left: i64,
    names: Vec<String>,
}

fn cert_facts(der: &[u8]) -> Option<CertFacts> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let summary = crate::tls::CertSummary::parse(&rustls::pki_types::CertificateDer::from(der))?;
    Some(CertFacts {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        not_after: summary.not_after,
        secs_left: cert.validity().not_after.timestamp() - now_unix(),
        names: summary.names,
    })
}

/// Days under which a certificate's coming expiry is a warning.
const EXPIRY_WARN_DAYS: i64 = 14;

fn expiry_check(name: String, what: &str, path: &Path, f: &CertFacts, renew: &str) -> Check {
    if f.secs_left <= 0 {
        check(
            name,
            Verdict::Fail,
            format!(
                "{} ({}) expired on {}: issue a new one ({renew}) and restart",
                path.display(),
                f.subject,
                f.not_after
            ),
        )
    } else if f.secs_left < EXPIRY_WARN_DAYS * 86_400 {
        check(
            name,
            Verdict::Warn,
            format!(
                "{} expires on {} (in {} days): renew it soon ({renew})",
                path.display(),
                f.not_after,
                f.secs_left / 86_400
            ),
        )
    } else {
        check(
            name,
            Verdict::Ok,
            format!(
                "{what} {}, valid until {} ({} days)",
                f.subject,
                f.not_after,
                f.secs_left / 86_400
            ),
        )
    }
}

fn first_cert(path: &Path, what: &'static str) -> Result<Vec<u8>, String> {
    let certs = crate::tls::load_certs(what, path).map_err(|e| e.to_string())?;
    certs
        .first()
        .map(|c| c.as_ref().to_vec())
        .ok_or_else(|| format!("{what} {}: contains no certificate", path.display()))
}

/// The `tls:` section's files: the CA and this side's certificate readable, not expired (a
/// warning under 14 days), issued by that CA, and (for a server) naming `host` when given.
pub fn tls_checks(
    ca: Option<&Path>,
    cert: Option<&Path>,
    key: Option<&Path>,
    host: Option<&str>,
) -> Vec<Check> {
    let mut out = Vec::new();
    let Some(ca) = ca.filter(|p| !p.as_os_str().is_empty()) else {
        out.push(check(
            "TLS",
            Verdict::Ok,
            "off (tls.ca not set): plain text, loopback only; for a LAN see docs/SECURITY.md (hg-coord cert init)",
        ));
        return out;
    };
    let renew_ca = "hg-coord cert init --dir DIR, then reissue every certificate";
    let ca_facts = match first_cert(ca, "tls.ca").map(|d| cert_facts(&d)) {
        Ok(Some(f)) => {
            out.push(expiry_check(
                "TLS CA (tls.ca)".into(),
                "CA",
                ca,
                &f,
                renew_ca,
            ));
            Some(f)
        }
        Ok(None) => {
            out.push(check(
                "TLS CA (tls.ca)",
                Verdict::Fail,
                format!("{}: not a parsable X.509 certificate", ca.display()),
            ));
            None
        }
        Err(e) => {
            out.push(check("TLS CA (tls.ca)", Verdict::Fail, e));
            None
        }
    };
    let Some(cert) = cert else {
        if key.is_some() {
            out.push(check(
                "TLS certificate (tls.cert)",
                Verdict::Fail,
                "tls.key is set but tls.cert is not",
            ));
        }
        return out;
    };
    let name = "TLS certificate (tls.cert)";
    let renew = "hg-coord cert issue --dir CA_DIR --role ROLE --name NAME --host HOST";
    let facts = match first_cert(cert, "tls.cert").map(|d| cert_facts(&d)) {
        Ok(Some(f)) => f,
        Ok(None) => {
            out.push(check(
                name,
                Verdict::Fail,
                format!("{}: not a parsable X.509 certificate", cert.display()),
            ));
            return out;
        }
        Err(e) => {
            out.push(check(name, Verdict::Fail, e));
            return out;
        }
    };
    out.push(expiry_check(
        name.into(),
        "certificate",
        cert,
        &facts,
        renew,
    ));
    if let Some(ca_facts) = &ca_facts {
        out.push(if facts.issuer == ca_facts.subject {
            check(
                "TLS issuer",
                Verdict::Ok,
                format!("{} is issued by tls.ca ({})", cert.display(), facts.issuer),
            )
        } else {
            check(
                "TLS issuer",
                Verdict::Fail,
                format!(
                    "{} is issued by {:?}, but tls.ca {} is {:?}: peers will refuse it (certificate verify failed); use the farm's CA file, or reissue the certificate from it ({renew})",
                    cert.display(),
                    facts.issuer,
                    ca.display(),
                    ca_facts.subject
                ),
            )
        });
    }
    if let Some(host) = host.filter(|h| !h.is_empty() && *h != "0.0.0.0" && *h != "::") {
        out.push(if facts.names.iter().any(|n| n == host) {
            check(
                "TLS names",
                Verdict::Ok,
                format!("names {} (includes {host})", facts.names.join(", ")),
            )
        } else {
            check(
                "TLS names",
                Verdict::Fail,
                format!(
                    "{} names {:?}, not {host}: peers dialing {host} will refuse it (hostname mismatch); reissue it with --host {host}",
                    cert.display(),
                    facts.names
                ),
            )
        });
    }
    if key.is_none() {
        out.push(check(
            "TLS key (tls.key)",
            Verdict::Fail,
            "tls.cert is set but tls.key is not",
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dial_addr_maps_wildcards_to_loopback() {
        assert_eq!(dial_addr("0.0.0.0:9000"), "127.0.0.1:9000");
        assert_eq!(dial_addr("[::]:9000"), "[::1]:9000");
        assert_eq!(dial_addr("10.0.0.1:9000"), "10.0.0.1:9000");
        assert_eq!(port_of("10.0.0.1:9000"), Some(9000));
    }

    #[test]
    fn a_listener_of_this_process_is_found() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let me = format!("pid {} (", std::process::id());
        assert!(
            listeners_of(port).iter().any(|o| o.starts_with(&me)),
            "{:?}",
            listeners_of(port)
        );
    }
}
