//! mDNS across two network namespaces joined by a veth pair: an announcer in one, a browser in the
//! other, each a re-executed copy of this test binary (`ip netns exec`). Needs root and `ip`;
//! without them the test fails.
//!
//! Roles, chosen by `HG_MDNS_ROLE`: unset = the orchestrating parent; `announce` = announce a
//! worker until stdin closes; `browse` = print `HG:UP ...` / `HG:DOWN ...` for the worker.

use futures::StreamExt;
use hybridgrid_core::{
    Capabilities, Discovery, DiscoverySource, Toolchain, WorkerEvent, WorkerId, WorkerInfo,
};
use hybridgrid_discovery::{MdnsAnnouncer, MdnsDiscovery};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TEST_NAME: &str = "mdns_worker_seen_across_namespaces";
const PORT: u16 = 50052;
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test]
async fn mdns_worker_seen_across_namespaces() {
    match std::env::var("HG_MDNS_ROLE").as_deref() {
        Ok("announce") => announce().await,
        Ok("browse") => browse().await,
        _ => orchestrate().await,
    }
}

const SUITE_TEST: &str = "mdns_discovery_conforms";

/// The Discovery conformance suite on `MdnsDiscovery`: the suite runs in namespace B, and each
/// worker it adds is an announcer process in namespace A (removed by closing its stdin).
#[tokio::test]
async fn mdns_discovery_conforms() {
    match std::env::var("HG_MDNS_ROLE").as_deref() {
        Ok("announce") => announce().await,
        Ok("suite") => suite::run().await,
        _ => {
            let netns = Netns::create();
            let mut child = netns.spawn_test(&netns.b, SUITE_TEST, "suite", "-");
            drop(child.stdin.take());
            let status = tokio::time::timeout(Duration::from_secs(240), child.wait())
                .await
                .expect("the suite finishes within 240 s")
                .expect("wait for the suite");
            assert!(
                status.success(),
                "the suite in namespace {} failed: {status}",
                netns.b
            );
        }
    }
}

mod suite {
    use super::*;
    use async_trait::async_trait;
    use hybridgrid_testkit::discovery::{DiscoveryFixture, run_discovery_suite};
    use std::collections::HashMap;
    use std::sync::Arc;

    struct MdnsFixture {
        discovery: Arc<MdnsDiscovery>,
        announcers: tokio::sync::Mutex<HashMap<WorkerId, Child>>,
    }

    #[async_trait]
    impl DiscoveryFixture for MdnsFixture {
        fn discovery(&self) -> Arc<dyn Discovery> {
            self.discovery.clone()
        }
        async fn add(&self, worker: WorkerInfo) {
            let ns_a = std::env::var("HG_MDNS_NS_A").expect("HG_MDNS_NS_A set by the parent");
            let mut child = spawn_in(&ns_a, SUITE_TEST, "announce", worker.id.as_str(), None);
            let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
            let line = next_line(&mut lines, "announcement").await;
            assert!(line.starts_with("ANNOUNCED "), "{line}");
            // Keep draining its output so it never blocks on a full pipe.
            tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
            self.announcers.lock().await.insert(worker.id, child);
        }
        async fn remove(&self, id: &WorkerId) {
            let child = self.announcers.lock().await.remove(id);
            if let Some(mut child) = child {
                drop(child.stdin.take()); // it unregisters (goodbye) and exits
                let _ = tokio::time::timeout(WAIT, child.wait()).await;
            }
        }
    }

    pub(super) async fn run() {
        run_discovery_suite(|| async {
            Box::new(MdnsFixture {
                discovery: Arc::new(MdnsDiscovery::new().expect("browse")),
                announcers: tokio::sync::Mutex::new(HashMap::new()),
            }) as Box<dyn DiscoveryFixture>
        })
        .await;
    }
}

fn worker(id: &str) -> WorkerInfo {
    let mut capabilities = Capabilities::of_this_host(3);
    capabilities.toolchains = vec![Toolchain {
        name: "gcc".into(),
        version: "12.2.0".into(),
        target: "x86_64-linux-gnu".into(),
        binary_hash: "cd".repeat(32),
    }];
    WorkerInfo {
        id: WorkerId::new(id),
        addr: String::new(),
        capabilities,
        protocol_version: hybridgrid_core::PROTOCOL_VERSION,
        source: DiscoverySource::Registration,
    }
}

fn role_id() -> String {
    std::env::var("HG_MDNS_ID").expect("HG_MDNS_ID set by the parent")
}

/// Child: announce, say so, and keep announcing until the parent closes stdin.
async fn announce() {
    let announcer = MdnsAnnouncer::announce(&worker(&role_id()), PORT).expect("announce");
    println!("HG:ANNOUNCED {}", announcer.fullname());
    let _ = tokio::task::spawn_blocking(|| {
        let mut rest = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut rest)
    })
    .await;
    drop(announcer); // sends the goodbye
    println!("HG:GONE");
}

/// Child: report the worker's arrival (with what was decoded) and departure.
async fn browse() {
    let id = WorkerId::new(role_id());
    let discovery = MdnsDiscovery::new().expect("browse");
    let mut events = discovery.watch();
    loop {
        match tokio::time::timeout(WAIT, events.next()).await {
            Ok(Some(WorkerEvent::Up(info))) if info.id == id => {
                let expected = worker(id.as_str());
                let same = info.capabilities == expected.capabilities
                    && info.protocol_version == expected.protocol_version
                    && info.source == DiscoverySource::Mdns;
                println!(
                    "HG:UP {} {}",
                    info.addr,
                    if same { "caps-ok" } else { "caps-differ" }
                );
                if !same {
                    println!("HG:INFO {info:?}");
                }
            }
            Ok(Some(WorkerEvent::Down(down))) if down == id => {
                println!("HG:DOWN {down}");
                return;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => {
                println!("HG:TIMEOUT");
                return;
            }
        }
    }
}

/// Two namespaces joined by a veth pair; deleted (with the pair) on drop.
struct Netns {
    a: String,
    b: String,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run `ip {}`: {e}", args.join(" ")));
    assert!(
        out.status.success(),
        "`ip {}` failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn create() -> Self {
        let tag = &uuid::Uuid::new_v4().simple().to_string()[..8];
        let ns = Netns {
            a: format!("hgmdns-a-{tag}"),
            b: format!("hgmdns-b-{tag}"),
        };
        let (va, vb) = (format!("hgva{tag}"), format!("hgvb{tag}"));
        ip(&["netns", "add", &ns.a]);
        ip(&["netns", "add", &ns.b]);
        ip(&["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        ip(&["link", "set", &va, "netns", &ns.a]);
        ip(&["link", "set", &vb, "netns", &ns.b]);
        for (ns, dev, addr) in [(&ns.a, &va, "10.77.0.1/24"), (&ns.b, &vb, "10.77.0.2/24")] {
            ip(&["-n", ns, "addr", "add", addr, "dev", dev]);
            ip(&["-n", ns, "link", "set", dev, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        ns
    }

    fn spawn(&self, ns: &str, role: &str, id: &str) -> Child {
        spawn_in(ns, TEST_NAME, role, id, None)
    }

    /// Runs test `test` of this binary in `ns` as `role`, telling it namespace A's name; its
    /// output goes to ours.
    fn spawn_test(&self, ns: &str, test: &str, role: &str, id: &str) -> Child {
        spawn_in(ns, test, role, id, Some(&self.a))
    }
}

/// Re-executes test `test` of this binary in namespace `ns` as `role` (stdin piped; stdout piped
/// unless `ns_a` is given, in which case the child inherits ours and learns namespace A's name).
fn spawn_in(ns: &str, test: &str, role: &str, id: &str, ns_a: Option<&str>) -> Child {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns])
        .arg(exe)
        .args([test, "--exact", "--nocapture", "--test-threads=1"])
        .env("HG_MDNS_ROLE", role)
        .env("HG_MDNS_ID", id)
        .stdin(Stdio::piped())
        .kill_on_drop(true);
    match ns_a {
        Some(a) => cmd.env("HG_MDNS_NS_A", a),
        None => cmd.stdout(Stdio::piped()),
    };
    cmd.spawn().expect("spawn child test process")
}

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in [&self.a, &self.b] {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// The next `HG:` line from a child, or a panic naming what was awaited.
async fn next_line(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    what: &str,
) -> String {
    loop {
        let line = tokio::time::timeout(WAIT, lines.next_line())
            .await
            .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
            .expect("read child output")
            .unwrap_or_else(|| panic!("child exited before {what}"));
        // libtest prints "test <name> ... " without a newline before the test runs.
        if let Some(at) = line.find("HG:") {
            return line[at + 3..].to_owned();
        }
    }
}

async fn orchestrate() {
    let netns = Netns::create();
    let id = format!("w-{}", uuid::Uuid::new_v4().simple());

    let mut browser = netns.spawn(&netns.b, "browse", &id);
    let mut browsed = BufReader::new(browser.stdout.take().expect("stdout")).lines();
    let mut announcer = netns.spawn(&netns.a, "announce", &id);
    let mut announced = BufReader::new(announcer.stdout.take().expect("stdout")).lines();

    let line = next_line(&mut announced, "announcement").await;
    assert!(line.starts_with("ANNOUNCED "), "{line}");

    let line = next_line(&mut browsed, "the worker coming up").await;
    assert_eq!(
        line,
        format!("UP 10.77.0.1:{PORT} caps-ok"),
        "browser saw: {line}"
    );

    // Closing the announcer's stdin makes it unregister (goodbye packet).
    drop(announcer.stdin.take());
    let line = next_line(&mut announced, "the announcer stopping").await;
    assert_eq!(line, "GONE");
    let line = next_line(&mut browsed, "the worker going down").await;
    assert_eq!(line, format!("DOWN {id}"));

    for (name, child) in [("announcer", &mut announcer), ("browser", &mut browser)] {
        let status = tokio::time::timeout(WAIT, child.wait())
            .await
            .unwrap_or_else(|_| panic!("{name} did not exit"))
            .expect("wait");
        assert!(status.success(), "{name} exited with {status}");
    }
}
