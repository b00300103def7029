//! Issue 18: a coordinator or a worker SIGKILLed while a compile is in flight on the worker
//! (its `cc1` running, not between two compiles) leaves `hgbuild gcc`'s stdout, stderr, exit code
//! and object exactly plain gcc's: the client falls back to a local compile, adds nothing to the
//! compiler's stderr, and does not hang.
//!
//! The translation unit is heavy enough at `-O2` (a second or more of `cc1`) that the test sees
//! the worker's compiler process and kills the daemon while it runs. The error case fails late,
//! in RTL expansion (`__attribute__((error))`), so it too is mid-compile when the kill comes.

mod support;

use std::fs::File;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// How long `hgbuild gcc` may take after the kill before the test calls it hung.
const HANG_LIMIT: Duration = Duration::from_secs(120);

/// A translation unit that keeps `cc1 -O2` busy for a while, then `tail`.
fn heavy_source(tail: &str) -> String {
    let mut s = String::from("extern void sink(int);\n");
    for i in 0..150 {
        s.push_str(&format!(
            "int f{i}(int *a, int n) {{ int s = {i}; for (int i = 0; i < n; i++) {{ \
             s += a[i] * {m} + (s >> 3); if (s & 1) s ^= a[(i * 7) % n]; else s += {i}; }} \
             sink(s); return s; }}\n",
            m = i + 1
        ));
    }
    s.push_str(tail);
    s
}

/// A warning under `-Wall`; compiles.
const WARN_TAIL: &str = "int w(int a) { int unused; return a + 1; }\n";
/// An error reported only after optimisation (the call survives it), so `cc1` runs long first.
const ERROR_TAIL: &str = "extern void stop(void) __attribute__((error(\"reached the end\")));\n\
                          int w(int a) { if (a) stop(); return a; }\n";

/// Which daemon dies mid-compile.
#[derive(Clone, Copy, Debug)]
enum Victim {
    Coordinator,
    Worker,
}

/// `(pid, parent pid, comm)` of every process.
fn processes() -> Vec<(u32, u32, String)> {
    let mut out = Vec::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return out;
    };
    for e in dir.flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // "pid (comm) state ppid ...": comm may hold spaces and parentheses; it ends at the last ')'.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        let comm = stat[open + 1..close].to_owned();
        let ppid = stat[close + 1..]
            .split_whitespace()
            .nth(1)
            .and_then(|p| p.parse().ok())
            .unwrap_or(0);
        out.push((pid, ppid, comm));
    }
    out
}

/// True when a `cc1` descending from process `root` is running.
fn compiler_running_under(root: u32) -> bool {
    let procs = processes();
    let parent = |pid: u32| procs.iter().find(|p| p.0 == pid).map(|p| p.1);
    procs.iter().filter(|p| p.2 == "cc1").any(|p| {
        let mut cur = p.1;
        for _ in 0..64 {
            if cur == root {
                return true;
            }
            match parent(cur) {
                Some(pp) if pp != 0 && pp != cur => cur = pp,
                _ => return false,
            }
        }
        false
    })
}

/// Waits for `child` to exit, at most [`HANG_LIMIT`]; kills it and fails the test past that.
fn wait_bounded(child: &mut Child, what: &str) -> std::process::ExitStatus {
    let end = Instant::now() + HANG_LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait hgbuild") {
            return status;
        }
        if Instant::now() > end {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what}: hgbuild gcc hung after the daemon died");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Plain gcc's output and object for `args` in `dir` (the object removed afterwards).
fn plain(dir: &Path, args: &[&str], obj: &str) -> (Output, Option<Vec<u8>>) {
    let out = Command::new("gcc")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run gcc");
    let bytes = std::fs::read(dir.join(obj)).ok();
    let _ = std::fs::remove_file(dir.join(obj));
    (out, bytes)
}

/// One case: a fresh coordinator and worker; `hgbuild gcc` on the heavy file; `victim` SIGKILLed
/// once the worker's `cc1` runs; the result compared with plain gcc's byte for byte.
fn case(tmp: &TempDir, victim: Victim, name: &str, tail: &str) {
    let what = format!("{victim:?} killed, {name}");
    let dir = tmp.path().join(format!("{victim:?}-{name}"));
    std::fs::create_dir_all(&dir).expect("mkdir case");
    std::fs::write(dir.join("heavy.c"), heavy_source(tail)).expect("write heavy.c");
    let args = ["-Wall", "-O2", "-c", "heavy.c", "-o", "heavy.o"];
    let (want, want_obj) = plain(&dir, &args, "heavy.o");

    let mut coord = Daemon::coordinator(&dir, &[]);
    let mut worker = Daemon::worker(&dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);

    let stdout = dir.join("hgbuild.stdout");
    let stderr = dir.join("hgbuild.stderr");
    let mut child = hgbuild(&dir, &coord.grpc)
        .env("HG_LOG_FILE", dir.join("hgbuild.log"))
        .env("HG_CACHE_ENABLED", "false")
        .arg("gcc")
        .args(args)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .stdout(File::create(&stdout).expect("create stdout file"))
        .stderr(File::create(&stderr).expect("create stderr file"))
        .spawn()
        .expect("spawn hgbuild");

    // The compile must be on the worker, its compiler running, when the daemon dies.
    let worker_pid = worker.pid();
    let started = wait_until(Duration::from_secs(60), || {
        compiler_running_under(worker_pid) || child.try_wait().ok().flatten().is_some()
    });
    assert!(
        started && compiler_running_under(worker_pid),
        "{what}: the compile never ran on the worker (hgbuild exited: {:?}); stats log:\n{}",
        child.try_wait().ok().flatten(),
        std::fs::read_to_string(dir.join("stats.log")).unwrap_or_default()
    );
    let killed = match victim {
        Victim::Coordinator => &mut coord.child,
        Victim::Worker => &mut worker.child,
    };
    killed.kill().expect("SIGKILL the daemon");
    let _ = killed.wait();

    let status = wait_bounded(&mut child, &what);
    let got_err = std::fs::read(&stderr).expect("read stderr");
    let got_out = std::fs::read(&stdout).expect("read stdout");
    assert_eq!(
        String::from_utf8_lossy(&got_err),
        String::from_utf8_lossy(&want.stderr),
        "{what}: stderr differs from plain gcc's"
    );
    assert_eq!(got_out, want.stdout, "{what}: stdout differs");
    assert_eq!(status.code(), want.status.code(), "{what}: exit code");
    let got_obj = std::fs::read(dir.join("heavy.o")).ok();
    assert!(
        got_obj == want_obj,
        "{what}: object differs from plain gcc's"
    );
    let stats = std::fs::read_to_string(dir.join("stats.log")).unwrap_or_default();
    assert!(
        !stats.lines().any(|l| l.starts_with("remote ")),
        "{what}: the result cannot have come from the killed farm: {stats}"
    );
}

#[test]
fn a_coordinator_killed_mid_compile_leaves_the_output_exactly_gccs() {
    let tmp = TempDir::new("midcompile-coord");
    case(&tmp, Victim::Coordinator, "warning", WARN_TAIL);
    case(&tmp, Victim::Coordinator, "error", ERROR_TAIL);
}

#[test]
fn a_worker_killed_mid_compile_leaves_the_output_exactly_gccs() {
    let tmp = TempDir::new("midcompile-worker");
    case(&tmp, Victim::Worker, "warning", WARN_TAIL);
    case(&tmp, Victim::Worker, "error", ERROR_TAIL);
}
