//! Helpers for the end-to-end tests: real daemons as processes on loopback, a tiny HTTP client,
//! and a real C code base (Lua, from the `lua-src` crate, located through cargo).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

pub const COORD: &str = env!("CARGO_BIN_EXE_hg-coord");
pub const WORKER: &str = env!("CARGO_BIN_EXE_hg-worker");
pub const HGBUILD: &str = env!("CARGO_BIN_EXE_hgbuild");

/// A temporary directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> Self {
        let p = std::env::temp_dir().join(format!("hg-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create temp dir");
        Self(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A daemon process, killed on drop; its stderr is kept in a log file.
pub struct Daemon {
    pub child: Child,
    pub grpc: String,
    pub http: String,
    pub log: PathBuf,
}

impl Daemon {
    /// Starts `cmd` as a daemon, waiting for `marker` on its stderr.
    pub fn spawn_for_test(cmd: Command, log: PathBuf, marker: &str) -> Daemon {
        Daemon::spawn(cmd, log, marker)
    }

    fn spawn(mut cmd: Command, log: PathBuf, marker: &str) -> Daemon {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        cmd.env("HG_LOG_FORMAT", "text").env("NO_COLOR", "1");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr piped");
        let (tx, rx) = mpsc::channel::<String>();
        let log2 = log.clone();
        let marker = marker.to_owned();
        std::thread::spawn(move || {
            let mut file = std::fs::File::create(&log2).expect("create log");
            let mut sent = false;
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let _ = writeln!(file, "{line}");
                if !sent && line.contains(&marker) {
                    let _ = tx.send(line);
                    sent = true;
                }
            }
        });
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|_| {
                let _ = child.kill();
                panic!(
                    "daemon did not start; log:\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            });
        let grpc = between(&line, "gRPC on ", ",").to_owned();
        let http = between(&line, "http://", "/").to_owned();
        Daemon {
            child,
            grpc,
            http,
            log,
        }
    }

    /// `hg-coord serve` on 127.0.0.1 with free ports.
    pub fn coordinator(dir: &Path, extra_env: &[(&str, &str)]) -> Daemon {
        Daemon::coordinator_at(dir, "127.0.0.1:0", "127.0.0.1:0", extra_env)
    }

    /// `hg-coord serve` on the given addresses (to restart one where it was).
    pub fn coordinator_at(
        dir: &Path,
        grpc: &str,
        http: &str,
        extra_env: &[(&str, &str)],
    ) -> Daemon {
        let mut cmd = Command::new(COORD);
        cmd.args(["serve", "--grpc-addr", grpc, "--http-addr", http])
            .env("HG_COORDINATOR_HEARTBEAT_INTERVAL", "500ms")
            .env("HG_COORDINATOR_HEARTBEAT_TIMEOUT", "2s");
        for (k, v) in extra_env {
            cmd.env(k, v);
        }
        Daemon::spawn(cmd, dir.join("coord.log"), "dashboard on")
    }

    /// `hg-worker serve` on `ip` with free ports, registering with `coord`; optionally inside a
    /// private mount namespace where `hide` is covered by an empty tmpfs.
    pub fn worker(dir: &Path, id: &str, ip: &str, coord: &str, hide: Option<&Path>) -> Daemon {
        Daemon::worker_env(dir, id, ip, coord, hide, &[])
    }

    /// [`Daemon::worker`] with extra environment variables.
    pub fn worker_env(
        dir: &Path,
        id: &str,
        ip: &str,
        coord: &str,
        hide: Option<&Path>,
        env: &[(&str, &str)],
    ) -> Daemon {
        let args = [
            "serve".to_owned(),
            "--id".into(),
            id.into(),
            "--coordinator".into(),
            coord.into(),
            "--grpc-addr".into(),
            format!("{ip}:0"),
            "--http-addr".into(),
            format!("{ip}:0"),
        ];
        let work = dir.join(format!("work-{id}"));
        std::fs::create_dir_all(&work).expect("work dir");
        let mut cmd = match hide {
            None => {
                let mut c = Command::new(WORKER);
                c.args(&args);
                c
            }
            Some(hidden) => {
                let mut c = Command::new("unshare");
                c.args([
                    "--mount",
                    "--propagation",
                    "private",
                    "sh",
                    "-c",
                    "mount -t tmpfs hg-hidden \"$0\" && exec \"$@\"",
                ])
                .arg(hidden)
                .arg(WORKER)
                .args(&args);
                c
            }
        };
        cmd.env("HG_WORKER_WORK_DIR", &work);
        cmd.envs(env.iter().copied());
        Daemon::spawn(cmd, dir.join(format!("{id}.log")), "serving gRPC on")
    }

    /// `hg-worker serve` on `ip` like [`Daemon::worker`] (no namespace), with extra environment.
    pub fn worker_with_env(
        dir: &Path,
        id: &str,
        ip: &str,
        coord: &str,
        env: &[(&str, &str)],
    ) -> Daemon {
        Daemon::worker_env(dir, id, ip, coord, None, env)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> &'a str {
    let from = s
        .find(start)
        .map(|i| i + start.len())
        .unwrap_or_else(|| panic!("{start:?} not in {s:?}"));
    let rest = &s[from..];
    &rest[..rest.find(end).unwrap_or(rest.len())]
}

/// `GET http://{addr}{path}` → (status, body).
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    // Chunked encoding: axum streams bodies in chunks; join them.
    let body = if text
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(&body)
    } else {
        body
    };
    (status, body)
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

pub fn stats(http: &str) -> serde_json::Value {
    let (code, body) = http_get(http, "/api/stats");
    assert_eq!(code, 200, "/api/stats: {body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("/api/stats not JSON ({e}): {body}"))
}

/// Polls `f` every 50 ms until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + timeout;
    while Instant::now() < end {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    f()
}

/// Waits until worker `id` has a task in flight.
pub fn wait_worker_busy(http: &str, id: &str) {
    let busy = wait_until(Duration::from_secs(60), || {
        stats(http)["workers"].as_array().is_some_and(|ws| {
            ws.iter()
                .any(|w| w["id"] == id && w["in_flight"].as_u64() > Some(0))
        })
    });
    assert!(busy, "{id} never got work: {}", stats(http));
}

/// Waits until `n` workers are up in the coordinator's stats.
pub fn wait_workers_up(http: &str, n: usize) {
    let ok = wait_until(Duration::from_secs(30), || {
        stats(http)["workers"]
            .as_array()
            .is_some_and(|w| w.iter().filter(|w| w["state"] == "up").count() >= n)
    });
    assert!(ok, "{n} workers did not come up: {}", stats(http));
}

/// The directory of a Lua release bundled by the `lua-src` crate, found through `cargo metadata`.
pub fn lua_dir(version: &str) -> PathBuf {
    farm_demo::lua_dir(Path::new(env!("CARGO_MANIFEST_DIR")), version)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Copies the `.c`/`.h` files of `from` into `to`; returns the `.c` stems, sorted.
pub fn copy_sources(from: &Path, to: &Path) -> Vec<String> {
    std::fs::create_dir_all(to).expect("mkdir src");
    let mut stems = Vec::new();
    for e in std::fs::read_dir(from).expect("read sources") {
        let p = e.expect("entry").path();
        let Some(ext) = p.extension().and_then(|e| e.to_str()) else {
            continue;
        };
        if ext == "c" || ext == "h" {
            std::fs::copy(&p, to.join(p.file_name().expect("name"))).expect("copy source");
            if ext == "c" {
                stems.push(p.file_stem().expect("stem").to_string_lossy().into_owned());
            }
        }
    }
    stems.sort();
    stems
}

/// Writes a Makefile into `build` compiling every stem of `src` to an object (with a depfile).
pub fn write_makefile(build: &Path, src: &Path, stems: &[String], cflags: &str) {
    std::fs::create_dir_all(build).expect("mkdir build");
    let objs: Vec<String> = stems.iter().map(|s| format!("{s}.o")).collect();
    let mk = format!(
        "SRC := {}\nCFLAGS := {cflags}\nOBJS := {}\nall: $(OBJS)\n%.o: $(SRC)/%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
        src.display(),
        objs.join(" ")
    );
    std::fs::write(build.join("Makefile"), mk).expect("write Makefile");
}

/// Runs `cmd`, returning (exit code, stdout, stderr).
pub fn run(cmd: &mut Command) -> (i32, String, String) {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Asserts that every object and depfile in `a` has a byte-identical twin in `b`.
pub fn assert_same_outputs(a: &Path, b: &Path, stems: &[String]) {
    for s in stems {
        for ext in ["o", "d"] {
            let fa = a.join(format!("{s}.{ext}"));
            let fb = b.join(format!("{s}.{ext}"));
            let ba = std::fs::read(&fa).unwrap_or_else(|e| panic!("{}: {e}", fa.display()));
            let bb = std::fs::read(&fb).unwrap_or_else(|e| panic!("{}: {e}", fb.display()));
            assert!(ba == bb, "{} differs from {}", fb.display(), fa.display());
        }
    }
}

/// An `hgbuild` command wired to a coordinator, with its own HOME and stats log.
pub fn hgbuild(dir: &Path, coord_grpc: &str) -> Command {
    let mut c = Command::new(HGBUILD);
    c.env("HG_COORDINATOR", coord_grpc)
        .env("HOME", dir)
        .env("HGBUILD_STATS_FILE", dir.join("stats.log"))
        .env_remove("HG_CONFIG")
        .env_remove("MAKEFLAGS");
    c
}

#[allow(unused_imports)]
pub use hybridgrid_testkit::redis::RedisPrefix;

/// The `hgbuild` summary's counts (from its stderr, or `--stats`): compiles run on the farm and
/// compiles the client ran on its own cores by choice (a farm CPU was busy and a local one idle).
/// Asserts that together they served all `n` compiles, none fell back, and at least one was
/// remote; returns the remote count.
#[allow(dead_code)]
pub fn assert_farm_served(summary: &str, n: usize) -> usize {
    let count = |label: &str| -> Option<usize> {
        let line = summary
            .lines()
            .rev()
            .find(|l| l.contains("compiled remotely"))?;
        let at = line.find(label)?;
        line[..at]
            .split([' ', ','])
            .rfind(|w| !w.is_empty())?
            .parse()
            .ok()
    };
    let remote = count(" compiled remotely").unwrap_or(0);
    let by_choice = count(" on local cores by choice").unwrap_or(0);
    assert_eq!(remote + by_choice, n, "summary: {summary}");
    assert!(remote >= 1, "no compile went to the farm: {summary}");
    assert!(summary.contains(" 0 local fallbacks"), "summary: {summary}");
    remote
}
