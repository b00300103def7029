//! Shared pieces of the `hg-agents` end-to-end tests: the real binary as a child process with its
//! log captured, a private `redis-server`, the programs of `scripts/ci-deps`, and re-running a
//! test inside a network namespace with loopback only.
#![allow(dead_code, clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_hg-agents");
pub const T: Duration = Duration::from_secs(60);

/// The install prefix of `scripts/ci-deps` (`HG_TEST_PREFIX`, default `/opt/hybridgrid-test`).
pub fn deps() -> PathBuf {
    PathBuf::from(std::env::var("HG_TEST_PREFIX").unwrap_or_else(|_| "/opt/hybridgrid-test".into()))
}

/// A program under the prefix; panics naming the install script when it is missing.
pub fn dep(rel: &str) -> String {
    let p = deps().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/ci-deps/agents.sh`",
        p.display()
    );
    p.display().to_string()
}

/// `PATH` with node 22 and the npm bins (claude, the inspector) first.
pub fn path_with_deps() -> String {
    format!(
        "{}:{}:{}",
        deps().join("npm/node_modules/.bin").display(),
        deps().join("py-time/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A `hg-agents` process, SIGKILLed on drop; its stderr kept in memory and in a file.
pub struct Proc {
    pub child: Child,
    log: Arc<Mutex<String>>,
    pub name: String,
}

impl Proc {
    pub fn spawn(name: &str, args: &[&str], env: &[(String, String)], dir: &Path) -> Proc {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .env("NO_COLOR", "1")
            .env("RUST_BACKTRACE", "0")
            .env("RUNNER_ID", name);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap();
        let stderr = child.stderr.take().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let (l2, path) = (log.clone(), dir.join(format!("{name}.log")));
        std::thread::spawn(move || {
            let mut f = std::fs::File::create(path).unwrap();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(f, "{line}");
                l2.lock().unwrap().push_str(&(line + "\n"));
            }
        });
        Proc {
            child,
            log,
            name: name.to_owned(),
        }
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    pub fn wait_log(&self, what: &str) {
        self.wait_log_for(what, T);
    }

    pub fn wait_log_for(&self, what: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.log().contains(what) {
            assert!(
                Instant::now() < deadline,
                "{} never logged {what:?}; log:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

pub async fn wait_for(what: &str, f: impl Fn() -> bool) {
    wait_for_up_to(what, T, f).await;
}

pub async fn wait_for_up_to(what: &str, timeout: Duration, f: impl Fn() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private redis-server on a free loopback port; `aof` turns on append-only persistence (so the
/// fencing counter survives a restart).
pub struct PrivateRedis {
    child: Option<Child>,
    pub port: u16,
    dir: PathBuf,
    aof: bool,
}

impl PrivateRedis {
    pub fn start(dir: &Path) -> PrivateRedis {
        Self::start_with(dir, true)
    }

    pub fn start_with(dir: &Path, aof: bool) -> PrivateRedis {
        let mut r = PrivateRedis {
            child: None,
            port: free_port(),
            dir: dir.to_owned(),
            aof,
        };
        r.spawn();
        r
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                if self.aof { "yes" } else { "no" },
                "--appendfsync",
                "always",
                "--dir",
            ])
            .arg(&self.dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (apt-get install redis-server)");
        self.child = Some(child);
        let deadline = Instant::now() + T;
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "private redis-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    pub fn restart(&mut self) {
        let _ = Command::new("redis-cli")
            .args(["-p", &self.port.to_string(), "shutdown", "nosave"])
            .status();
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        std::thread::sleep(Duration::from_millis(500));
        self.spawn();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// Runs the calling test again inside `unshare -n` (loopback only, brought up) and asserts it
/// passed there. Returns `true` when the caller is already inside and should do the work.
pub fn in_netns(test_name: &str) -> bool {
    if std::env::var_os("HG_IN_NETNS").is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let child = Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HG_IN_NETNS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("unshare -n (needs root or user namespaces; apt-get install util-linux iproute2)");
    // Read the output while waiting (a full pipe would stall the inner test); bounded: the inner
    // test has its own timeouts, this is the last guard.
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let out = match rx.recv_timeout(Duration::from_secs(240)) {
        Ok(out) => out.unwrap(),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{test_name} inside the network namespace did not finish in 240 s");
        }
    };
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed inside the network namespace ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}
