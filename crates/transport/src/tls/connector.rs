//! Dialling a peer: plain TCP on loopback (or with an explicit `insecure`), TLS with the farm CA
//! everywhere else, checking that the peer's certificate carries the identity the caller expects
//! (the coordinator dials worker `w1` and accepts only a certificate for `worker:w1`).

use super::explain::explain_handshake;
use super::{PeerIdentity, Role, TlsMaterial};
use hyper_util::rt::TokioIo;
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::net::TcpStream;
use tonic::transport::{Channel, Endpoint, Uri};

/// Refuses plain text to or on a non-loopback `host:port` unless `insecure` is set; the message
/// names the address and the settings that would allow it.
pub fn check_plaintext(addr: &str, insecure: bool) -> Result<(), String> {
    if insecure || is_loopback(addr) {
        return Ok(());
    }
    Err(format!(
        "refusing plain-text gRPC with {addr}: it is not a loopback address; configure tls.ca, \
         tls.cert and tls.key (see `hg-coord cert`), or set tls.insecure: true to allow plain text \
         on a trusted network"
    ))
}

fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn is_loopback(addr: &str) -> bool {
    let host = host_of(addr);
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// The identity a dialled peer's certificate must carry: its role, and (when set) its name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expect {
    /// Required role.
    pub role: Role,
    /// Required name (a worker's id), or any.
    pub name: Option<String>,
}

impl Expect {
    fn admits(&self, got: &PeerIdentity) -> bool {
        got.role == self.role && self.name.as_ref().is_none_or(|n| n == &got.name)
    }
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.name {
            Some(n) => write!(f, "{}:{n}", self.role),
            None => write!(f, "{}:*", self.role),
        }
    }
}

/// Connects TCP then TLS to the URI's host, verifying the server against the farm CA and, when
/// `expect` is set, that it carries that identity.
#[derive(Clone)]
pub struct TlsConnector {
    config: Arc<rustls::ClientConfig>,
    material: Arc<TlsMaterial>,
    expect: Option<Expect>,
    handshake_timeout: Duration,
}

impl TlsConnector {
    /// A connector with `material`'s trust anchor and (optional) client certificate.
    pub fn new(
        material: Arc<TlsMaterial>,
        expect: Option<Expect>,
    ) -> Result<Self, super::TlsError> {
        Ok(Self {
            config: material.client_config()?,
            material,
            expect,
            handshake_timeout: Duration::from_secs(10),
        })
    }

    /// Connects to `host:port` and completes the handshake; the error explains a refusal.
    pub async fn connect(
        &self,
        host: &str,
        port: u16,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ConnectError> {
        let peer = format!("{host}:{port}");
        let tcp = TcpStream::connect((host, port))
            .await
            .map_err(|e| ConnectError(format!("cannot connect to {peer}: {e}")))?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::try_from(host.to_owned())
            .map_err(|e| ConnectError(format!("{host:?} is not a valid TLS server name: {e}")))?;
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = tokio::time::timeout(self.handshake_timeout, connector.connect(name, tcp))
            .await
            .map_err(|_| {
                ConnectError(format!(
                    "TLS handshake with {peer} did not finish within {:?}",
                    self.handshake_timeout
                ))
            })?
            .map_err(|e| {
                let rustls_err = e
                    .get_ref()
                    .and_then(|inner| inner.downcast_ref::<rustls::Error>());
                match rustls_err {
                    Some(r) => {
                        ConnectError(explain_handshake(&peer, self.material.own.as_ref(), r))
                    }
                    None => ConnectError(format!("TLS handshake with {peer} failed: {e}")),
                }
            })?;
        if let Some(want) = &self.expect {
            let got = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(PeerIdentity::of);
            if !got.as_ref().is_some_and(|g| want.admits(g)) {
                return Err(ConnectError(format!(
                    "{peer} presented the identity {}, expected {want}",
                    got.map_or_else(|| "(none)".to_owned(), |g| g.to_string())
                )));
            }
        }
        Ok(tls)
    }
}

/// A connection that could not be made; the message names the peer and the cause.
#[derive(Debug)]
pub struct ConnectError(pub String);

impl std::fmt::Display for ConnectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConnectError {}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TokioIo<tokio_rustls::client::TlsStream<TcpStream>>;
    type Error = ConnectError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, ConnectError>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ConnectError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| ConnectError(format!("{uri} has no host")))?
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = uri.port_u16().unwrap_or(443);
            this.connect(&host, port).await.map(TokioIo::new)
        })
    }
}

/// How to reach a peer.
#[derive(Clone)]
pub struct Dial {
    /// TLS material; `None` means plain text (allowed only where [`check_plaintext`] allows it).
    pub tls: Option<Arc<TlsMaterial>>,
    /// Allow plain text off loopback.
    pub insecure: bool,
    /// The identity the peer's certificate must carry.
    pub expect: Option<Expect>,
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// Per-request timeout, if any.
    pub timeout: Option<Duration>,
    /// HTTP/2 keep-alive pings, if any.
    pub keep_alive: Option<Duration>,
}

impl Dial {
    /// Plain text on loopback with the given connect timeout.
    pub fn plain(connect_timeout: Duration) -> Self {
        Self {
            tls: None,
            insecure: false,
            expect: None,
            connect_timeout,
            timeout: None,
            keep_alive: None,
        }
    }
}

fn endpoint(addr: &str, how: &Dial) -> Result<Endpoint, String> {
    let mut ep = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .connect_timeout(how.connect_timeout)
        .tcp_nodelay(true);
    if let Some(t) = how.timeout {
        ep = ep.timeout(t);
    }
    if let Some(k) = how.keep_alive {
        ep = ep.http2_keep_alive_interval(k).keep_alive_timeout(k);
    }
    Ok(ep)
}

/// A channel to `addr` (`host:port`) as `how` says, connected now. Every error names the
/// address and the cause (a TLS refusal explained).
pub async fn dial(addr: &str, how: &Dial) -> Result<Channel, String> {
    let ep = endpoint(addr, how)?;
    match &how.tls {
        None => {
            check_plaintext(addr, how.insecure)?;
            ep.connect()
                .await
                .map_err(|e| format!("cannot connect to {addr}: {}", chain(&e)))
        }
        Some(m) => {
            let connector =
                TlsConnector::new(m.clone(), how.expect.clone()).map_err(|e| e.to_string())?;
            ep.connect_with_connector(connector)
                .await
                .map_err(|e| chain(&e))
        }
    }
}

/// Like [`dial`], connecting on first use (and again after a connection is lost).
pub fn dial_lazy(addr: &str, how: &Dial) -> Result<Channel, String> {
    let ep = endpoint(addr, how)?;
    match &how.tls {
        None => {
            check_plaintext(addr, how.insecure)?;
            Ok(ep.connect_lazy())
        }
        Some(m) => {
            let connector =
                TlsConnector::new(m.clone(), how.expect.clone()).map_err(|e| e.to_string())?;
            Ok(ep.connect_with_connector_lazy(connector))
        }
    }
}

/// An error and its causes, innermost last, without repeats ("transport error: ...").
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut parts: Vec<String> = vec![e.to_string()];
    let mut cur = e.source();
    while let Some(s) = cur {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        cur = s.source();
    }
    // The innermost cause is the one that names the problem; lead with it.
    if parts.len() > 1 && parts[0] == "transport error" {
        parts.remove(0);
    }
    parts.join(": ")
}
