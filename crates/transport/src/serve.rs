//! Running a daemon's servers: bind its listeners, serve gRPC and the admin HTTP surface until a
//! stop token fires, and hand back a [`Handle`] with the bound addresses. Every role that serves
//! (farm coordinator and worker, agent runners, orchestrator) starts the same way.

use axum::Router;
use futures::StreamExt;
use hybridgrid_core::CancellationToken;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;
use tracing::info;

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A listen address could not be bound.
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        /// `gRPC` or `HTTP`.
        what: &'static str,
        /// The address.
        addr: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// A config value is unusable; the message names the key.
    #[error("invalid config: {0}")]
    Config(String),
}

/// A running daemon: its bound addresses, and how to stop it.
pub struct Handle<S> {
    /// The daemon's shared state.
    pub state: Arc<S>,
    /// Bound gRPC address.
    pub grpc_addr: SocketAddr,
    /// Bound HTTP address.
    pub http_addr: SocketAddr,
    stop: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl<S> Handle<S> {
    /// A handle over `state` whose background `tasks` end when `stop` fires.
    pub fn new(
        state: Arc<S>,
        (grpc_addr, http_addr): (SocketAddr, SocketAddr),
        stop: CancellationToken,
        tasks: Vec<JoinHandle<()>>,
    ) -> Self {
        Self {
            state,
            grpc_addr,
            http_addr,
            stop,
            tasks,
        }
    }

    /// Stops serving and waits for the servers to finish.
    pub async fn shutdown(self) {
        self.stop.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }

    /// A token that stops the daemon when cancelled.
    pub fn stop_token(&self) -> CancellationToken {
        self.stop.clone()
    }
}

/// Binds `addr` for the `what` server (`gRPC`, `HTTP`).
pub async fn bind(what: &'static str, addr: &str) -> Result<TcpListener, StartError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            what,
            addr: addr.to_owned(),
            source,
        })
}

/// The address `listener` is bound to.
pub fn local_addr(l: &TcpListener) -> SocketAddr {
    l.local_addr()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// Accepted connections with `TCP_NODELAY` set: tonic's `Server::tcp_nodelay` does not reach a
/// listener we bind ourselves, and without it small replies wait out the peer's delayed ACK (~40 ms).
fn nodelay(
    listener: TcpListener,
) -> impl futures::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    TcpListenerStream::new(listener).map(|conn| {
        conn.inspect(|c| {
            let _ = c.set_nodelay(true);
        })
    })
}

/// How a gRPC server accepts connections and bounds the work one connection can cause.
#[derive(Clone)]
pub struct GrpcOptions {
    /// TLS (required off loopback unless `insecure`); `None` serves plain text.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Allow plain text on a non-loopback address.
    pub insecure: bool,
    /// Requests served at once on one connection (HTTP/2 streams beyond it wait).
    pub concurrency_per_connection: usize,
    /// A request not answered within this is failed with `DEADLINE_EXCEEDED` (`CANCELLED`).
    pub request_timeout: std::time::Duration,
    /// TLS handshakes must finish within this.
    pub handshake_timeout: std::time::Duration,
}

impl Default for GrpcOptions {
    fn default() -> Self {
        Self {
            tls: None,
            insecure: false,
            concurrency_per_connection: 64,
            request_timeout: std::time::Duration::from_secs(600),
            handshake_timeout: std::time::Duration::from_secs(10),
        }
    }
}

impl GrpcOptions {
    /// Refuses plain text on a non-loopback listen address unless `insecure` is set.
    pub fn check_listen(&self, what: &str, addr: &SocketAddr) -> Result<(), StartError> {
        if self.tls.is_none() && !self.insecure && !addr.ip().is_loopback() {
            return Err(StartError::Config(format!(
                "{what} {addr} is not a loopback address and TLS is not configured: refusing to \
                 serve plain-text gRPC there. Configure tls.ca, tls.cert and tls.key (see \
                 `hg-coord cert`), bind a loopback address, or set tls.insecure: true"
            )));
        }
        Ok(())
    }
}

/// TLS connections accepted on `listener`, each handshake in its own task (a slow or silent
/// peer cannot hold up the others), within `timeout`; failed handshakes are logged and dropped.
fn tls_incoming(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    timeout: std::time::Duration,
    stop: CancellationToken,
    daemon: &'static str,
) -> impl futures::Stream<Item = std::io::Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>>>
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = stop.cancelled() => break,
            };
            let (tcp, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(daemon, error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                match tokio::time::timeout(timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(tls)) => {
                        let _ = tx.send(Ok(tls)).await;
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(daemon, peer = %peer, error = %e, "TLS handshake failed")
                    }
                    Err(_) => {
                        tracing::warn!(daemon, peer = %peer, "TLS handshake timed out")
                    }
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}

/// Serves the gRPC service `svc` on `listener` until `stop` fires, with `opts`' TLS and bounds.
/// One service per listener, served without tonic's router (which would pull axum into every
/// binary that links tonic, `hgbuild` included).
pub fn spawn_grpc<S>(
    svc: S,
    listener: TcpListener,
    stop: CancellationToken,
    daemon: &'static str,
    opts: &GrpcOptions,
) -> JoinHandle<()>
where
    S: tower_service::Service<
            http::Request<tonic::body::Body>,
            Response = http::Response<tonic::body::Body>,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let builder = tonic::transport::Server::builder()
        .concurrency_limit_per_connection(opts.concurrency_per_connection.max(1))
        .max_concurrent_streams(
            u32::try_from(opts.concurrency_per_connection.max(1)).unwrap_or(u32::MAX),
        )
        .timeout(opts.request_timeout)
        .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
        .http2_keepalive_timeout(Some(std::time::Duration::from_secs(10)));
    let tls = opts.tls.clone();
    let handshake = opts.handshake_timeout;
    tokio::spawn(async move {
        let r = match tls {
            None => {
                builder
                    .serve_with_incoming_shutdown(svc, nodelay(listener), stop.cancelled_owned())
                    .await
            }
            Some(cfg) => {
                let incoming = tls_incoming(listener, cfg, handshake, stop.clone(), daemon);
                builder
                    .serve_with_incoming_shutdown(svc, incoming, stop.cancelled_owned())
                    .await
            }
        };
        if let Err(e) = r {
            tracing::error!(daemon, error = %e, "gRPC server failed");
        }
    })
}

/// Serves the admin HTTP `router` on `listener` until `stop` fires.
pub fn spawn_http(
    router: Router,
    listener: TcpListener,
    stop: CancellationToken,
    daemon: &'static str,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        if let Err(e) = crate::admin::serve(listener, router, stop.cancelled_owned()).await {
            tracing::error!(daemon, error = %e, "HTTP server failed");
        }
    })
}

/// Waits for SIGINT or SIGTERM, or for `stop` to be cancelled.
pub async fn wait_for_signal(stop: CancellationToken) {
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => info!("SIGINT received, shutting down"),
        _ = term => info!("SIGTERM received, shutting down"),
        _ = stop.cancelled() => {}
    }
}

/// Increments a gauge now and decrements it when dropped, so a request that is cancelled at an
/// `.await` (client gone, coordinator dropped the call) cannot leave the gauge counted up.
pub struct GaugeGuard(Gauge);

impl GaugeGuard {
    /// Increments `gauge`; returns the guard and the gauge's new value.
    pub fn hold(gauge: &Gauge) -> (Self, i64) {
        let now = gauge.inc() + 1;
        (Self(gauge.clone()), now)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Label set of a metric family: a list of `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A histogram of wall times from 5 ms to 5 min.
pub fn duration_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
    ])
}
