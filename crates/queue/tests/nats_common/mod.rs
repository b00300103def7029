//! Shared by the `nats_*` tests: the shared server's URL, stream cleanup, a loopback proxy that
//! injects faults at exact points of the NATS protocol, and a private `nats-server` that a test
//! may kill and restart.

#![allow(dead_code, clippy::unwrap_used)] // each test crate uses part of this; a panic is the report

use hybridgrid_queue::{NatsQueue, NatsQueueConfig};
use hybridgrid_testkit::service_url;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

pub fn nats_url() -> String {
    service_url("HG_TEST_NATS_URL", "nats://127.0.0.1:4222")
}

fn server_addr() -> String {
    nats_url()
        .trim_start_matches("nats://")
        .trim_end_matches('/')
        .to_owned()
}

pub async fn open(name: &str, config: NatsQueueConfig) -> NatsQueue {
    NatsQueue::connect_with(&nats_url(), name, config)
        .await
        .expect("NATS JetStream must be running on 127.0.0.1:4222 (scripts/services.sh nats)")
}

/// `ack_wait` of 1 s and 1 s request timeouts, so that expiries and failures show quickly.
pub fn short_ack_wait() -> NatsQueueConfig {
    NatsQueueConfig {
        ack_wait: Duration::from_secs(1),
        request_timeout: Duration::from_secs(1),
        ..Default::default()
    }
}

/// Deletes a queue's streams on the shared server when dropped, also when the test fails.
pub struct Cleanup(pub String);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let name = self.0.clone();
        // Drop cannot await, and the test's runtime may be unwinding: use a runtime of our own.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let q = NatsQueue::connect(&nats_url(), &name).await.unwrap();
                q.destroy().await.unwrap();
            });
        })
        .join();
    }
}

/// A fault the [`Proxy`] injects once, at the first client publish (`PUB`/`HPUB`) whose subject
/// starts with the given prefix.
#[derive(Clone, Debug)]
pub enum Fault {
    /// That publish never reaches the server: every connection is closed at that point and new
    /// ones are refused until [`Proxy::restore`] (a crash, or a partition, mid-operation).
    CutBefore(String),
    /// That publish reaches the server, but nothing the server sends gets through to the client
    /// (the publish's acknowledgement included) until [`Proxy::resume`]: a lost reply.
    StallRepliesAfter(String),
}

impl Fault {
    fn prefix(&self) -> &str {
        match self {
            Fault::CutBefore(p) | Fault::StallRepliesAfter(p) => p,
        }
    }
}

struct Shared {
    server: String,
    up: AtomicBool,
    /// Bumped by a cut: every open connection closes.
    cuts: watch::Sender<u64>,
    /// While true, server-to-client bytes are held back.
    stalled: watch::Sender<bool>,
    fault: parking_lot::Mutex<Option<Fault>>,
}

/// A loopback TCP proxy to a NATS server that reads the client side of the protocol, so a test
/// can cut or stall a connection at an exact step of an operation.
pub struct Proxy {
    addr: std::net::SocketAddr,
    shared: Arc<Shared>,
    accept: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// A proxy to the shared server.
    pub async fn start() -> Self {
        Self::to(server_addr()).await
    }

    /// A proxy to `server` (`host:port`).
    pub async fn to(server: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shared = Arc::new(Shared {
            server,
            up: AtomicBool::new(true),
            cuts: watch::channel(0).0,
            stalled: watch::channel(false).0,
            fault: parking_lot::Mutex::new(None),
        });
        let accept = tokio::spawn({
            let shared = Arc::clone(&shared);
            async move {
                let mut conns = JoinSet::new();
                while let Ok((inbound, _)) = listener.accept().await {
                    if !shared.up.load(Ordering::SeqCst) {
                        continue; // dropped: the client sees the connection close at once
                    }
                    conns.spawn(relay(inbound, Arc::clone(&shared)));
                }
            }
        });
        Self {
            addr,
            shared,
            accept,
        }
    }

    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Closes every open connection now and refuses new ones until [`Proxy::restore`].
    pub fn cut(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        self.shared.cuts.send_modify(|n| *n += 1);
    }

    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Arms a fault; it fires once.
    pub fn arm(&self, fault: Fault) {
        *self.shared.fault.lock() = Some(fault);
    }

    /// Whether the armed fault has fired.
    pub fn fired(&self) -> bool {
        self.shared.fault.lock().is_none()
    }

    /// Lets held-back server bytes through again (after [`Fault::StallRepliesAfter`]).
    pub fn resume(&self) {
        self.shared.stalled.send_replace(false);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn relay(inbound: TcpStream, shared: Arc<Shared>) {
    let mut cuts = shared.cuts.subscribe();
    let Ok(outbound) = TcpStream::connect(&shared.server).await else {
        return;
    };
    let (client_in, client_out) = inbound.into_split();
    let (server_in, server_out) = outbound.into_split();
    tokio::select! {
        _ = client_to_server(client_in, server_out, &shared) => {}
        _ = server_to_client(server_in, client_out, &shared) => {}
        _ = cuts.changed() => {}
    }
}

async fn client_to_server(
    from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut from = BufReader::new(from);
    loop {
        let mut frame = Vec::new();
        if from.read_until(b'\n', &mut frame).await? == 0 {
            return Ok(());
        }
        let line = String::from_utf8_lossy(&frame).into_owned();
        let words: Vec<&str> = line.split_whitespace().collect();
        let op = words.first().map(|w| w.to_ascii_uppercase());
        if matches!(op.as_deref(), Some("PUB" | "HPUB")) && words.len() >= 3 {
            let total: usize = words[words.len() - 1]
                .parse()
                .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidData, line.clone()))?;
            let mut body = vec![0; total + 2];
            from.read_exact(&mut body).await?;
            frame.extend_from_slice(&body);
            let subject = words[1];
            let fired = {
                let mut fault = shared.fault.lock();
                match &*fault {
                    Some(f) if subject.starts_with(f.prefix()) => fault.take(),
                    _ => None,
                }
            };
            match fired {
                Some(Fault::CutBefore(_)) => {
                    shared.up.store(false, Ordering::SeqCst);
                    shared.cuts.send_modify(|n| *n += 1);
                    return Ok(());
                }
                // Before forwarding, so the reply cannot slip through.
                Some(Fault::StallRepliesAfter(_)) => {
                    shared.stalled.send_replace(true);
                }
                None => {}
            }
        }
        to.write_all(&frame).await?;
    }
}

async fn server_to_client(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    shared: &Shared,
) -> std::io::Result<()> {
    let mut stalled = shared.stalled.subscribe();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let n = from.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                return Ok(());
            }
        }
        to.write_all(&buf[..n]).await?;
    }
}

/// A `nats-server -js` of the test's own, on a free loopback port with its own store directory,
/// that the test can kill (SIGKILL) and restart on the same port and store. Killed and its
/// store removed when dropped.
pub struct PrivateServer {
    port: u16,
    dir: PathBuf,
    child: Option<Child>,
}

impl PrivateServer {
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let dir = std::env::temp_dir().join(format!("hg-nats-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut server = Self {
            port,
            dir,
            child: None,
        };
        server.spawn();
        server
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn spawn(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server must be installed (scripts/services.sh nats)");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private nats-server did not listen on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `kill -9`: no shutdown, no flush.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
