//! Network namespaces on one bridge for the farm's LAN tests (farm_mdns.rs, farm_version.rs):
//! every namespace, link and address is created by the test and deleted on drop, so mDNS never
//! leaves them. Needs root and `ip`; `ns_get` needs python3 inside the namespace.
#![allow(dead_code)]

use std::process::Command;

pub fn ip(args: &[&str]) {
    let out = Command::new("ip")
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

/// Namespaces on one bridge (in a namespace of its own); deleted on drop.
pub struct Lan {
    bridge_ns: String,
    hosts: Vec<(String, String)>, // (namespace, address)
}

impl Lan {
    /// One namespace per name, addresses 10.79.0.1, .2, ... in that order.
    pub fn new(names: &[&str]) -> Lan {
        let tag = &uuid_tag();
        let bridge_ns = format!("hgbr-{tag}");
        ip(&["netns", "add", &bridge_ns]);
        ip(&["-n", &bridge_ns, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &bridge_ns, "link", "set", "br0", "up"]);
        let mut lan = Lan {
            bridge_ns,
            hosts: Vec::new(),
        };
        for (i, name) in names.iter().enumerate() {
            let ns = format!("hg{name}-{tag}");
            let addr = format!("10.79.0.{}", i + 1);
            let (inner, outer) = (format!("e{i}{tag}"), format!("b{i}{tag}"));
            ip(&["netns", "add", &ns]);
            lan.hosts.push((ns.clone(), addr.clone()));
            ip(&[
                "-n",
                &lan.bridge_ns,
                "link",
                "add",
                &outer,
                "type",
                "veth",
                "peer",
                "name",
                &inner,
            ]);
            ip(&["-n", &lan.bridge_ns, "link", "set", &inner, "netns", &ns]);
            ip(&[
                "-n",
                &lan.bridge_ns,
                "link",
                "set",
                &outer,
                "master",
                "br0",
                "up",
            ]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{addr}/24"),
                "dev",
                &inner,
            ]);
            ip(&["-n", &ns, "link", "set", &inner, "up"]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
        }
        lan
    }

    pub fn ns(&self, i: usize) -> &str {
        &self.hosts[i].0
    }

    pub fn addr(&self, i: usize) -> &str {
        &self.hosts[i].1
    }

    /// `program args` inside namespace `i`.
    pub fn cmd(&self, i: usize, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", self.ns(i), program]);
        c
    }

    /// SIGKILLs every process in namespace `i`: daemons that forked inside (avahi, dbus) would
    /// outlive the namespace's name and hold their pipes open.
    pub fn kill_all(&self, i: usize) {
        if let Ok(out) = Command::new("ip")
            .args(["netns", "pids", self.ns(i)])
            .output()
        {
            for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
        }
    }
}

impl Drop for Lan {
    fn drop(&mut self) {
        for (i, (ns, _)) in self.hosts.iter().enumerate() {
            self.kill_all(i);
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.bridge_ns])
            .status();
    }
}

/// Six hex digits naming this run's namespaces and links: the low 16 bits of the process id
/// (tests of one run are processes alive at the same time, so these differ) and 8 bits of the
/// clock against a stale namespace left by a killed earlier run.
pub fn uuid_tag() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{:04x}{:02x}", std::process::id() & 0xffff, nanos & 0xff)
}

/// `GET url` from inside namespace `i` (the test itself is outside it).
pub fn ns_get(lan: &Lan, i: usize, url: &str) -> Option<String> {
    let out = lan
        .cmd(i, "python3")
        .args([
            "-c",
            "import sys, urllib.request; print(urllib.request.urlopen(sys.argv[1], timeout=5).read().decode())",
            url,
        ])
        .output()
        .ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn workers(lan: &Lan, http: &str) -> Vec<serde_json::Value> {
    ns_get(lan, 0, &format!("http://{http}/api/stats"))
        .and_then(|s| serde_json::from_str::<serde_json::Value>(&s).ok())
        .and_then(|v| v["workers"].as_array().cloned())
        .unwrap_or_default()
}

pub fn state_of(lan: &Lan, http: &str, id: &str) -> Option<(String, serde_json::Value)> {
    workers(lan, http)
        .into_iter()
        .find(|w| w["id"] == id)
        .map(|w| (w["state"].as_str().unwrap_or("").to_owned(), w))
}

pub fn tls_env(tls: &hybridgrid_farm_protocol::config::TlsSection) -> Vec<(String, String)> {
    let s = |p: &Option<std::path::PathBuf>| {
        p.as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    vec![
        ("HG_TLS_CA".into(), s(&tls.ca)),
        ("HG_TLS_CERT".into(), s(&tls.cert)),
        ("HG_TLS_KEY".into(), s(&tls.key)),
    ]
}

/// `sh -c` in namespace `i` that starts a private system bus and avahi-daemon there (a tmpfs
/// over /run, so nothing of the host's is touched; publishing on or off), then runs `then`.
/// The configuration is written to `conf`. Stop it with [`Lan::kill_all`] (the daemons fork).
pub fn avahi_sh(lan: &Lan, i: usize, conf: &std::path::Path, publish: bool, then: &str) -> Command {
    std::fs::write(
        conf,
        format!(
            "[server]\nuse-ipv6=no\nenable-dbus=yes\nratelimit-burst=1000\n[publish]\ndisable-publishing={}\n[wide-area]\nenable-wide-area=no\n",
            if publish { "no" } else { "yes" }
        ),
    )
    .expect("avahi conf");
    let script = format!(
        "mount -t tmpfs hg-run /run && mkdir -p /run/dbus /run/avahi-daemon && \
         dbus-daemon --system --fork && avahi-daemon --no-chroot --no-drop-root -D -f {} && {then}",
        conf.display()
    );
    let mut c = lan.cmd(i, "sh");
    c.args(["-c", &script]);
    c
}
