//! End-to-end: the real `hg-coord`, `hg-worker` and `hgbuild` processes on 127.0.0.x build a real
//! C code base (Lua, from the `lua-src` crate), and every object must equal a plain local build.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

const CFLAGS: &str = "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD";

/// Plain local build of `stems` from `src` in `dir/<name>` with `make -j2`, then moved to
/// `dir/<name>.plain`; returns (build dir, reference dir). The farm build then runs in the same
/// build directory, because with `-g` an object records the directory it was compiled in.
fn plain_build(
    dir: &std::path::Path,
    name: &str,
    src: &std::path::Path,
    stems: &[String],
) -> (std::path::PathBuf, std::path::PathBuf) {
    let build = dir.join(name);
    let plain = dir.join(format!("{name}.plain"));
    write_makefile(&build, src, stems, CFLAGS);
    let (code, _, err) = run(Command::new("make").args(["-s", "-j2", "-C"]).arg(&build));
    assert_eq!(code, 0, "plain build failed: {err}");
    std::fs::rename(&build, &plain).expect("move plain build aside");
    write_makefile(&build, src, stems, CFLAGS);
    (build, plain)
}

fn workers_with_done(stats: &serde_json::Value) -> Vec<(String, u64)> {
    stats["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .map(|w| {
                    (
                        w["id"].as_str().unwrap_or("").to_owned(),
                        w["done"].as_u64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn farm_build_matches_local_build_and_spreads_over_workers() {
    let tmp = TempDir::new("spread");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    assert!(
        stems.len() >= 30,
        "need at least 30 translation units, have {}",
        stems.len()
    );
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let _w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    // w3 cannot see the client's source tree at all: it must work from what the client ships.
    let _w3 = Daemon::worker(dir, "w3", "127.0.0.4", &coord.grpc, Some(&src));
    wait_workers_up(&coord.http, 3);

    let (farm, plain) = plain_build(dir, "build", &src, &stems);
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["make", "-s", "-j12", "-C"])
        .arg(&farm));
    assert_eq!(code, 0, "farm build failed: {err}");
    let remote = assert_farm_served(&err, stems.len());
    assert_same_outputs(&plain, &farm, &stems);

    let s = stats(&coord.http);
    let busy: Vec<_> = workers_with_done(&s)
        .into_iter()
        .filter(|(_, d)| *d > 0)
        .collect();
    assert!(busy.len() >= 2, "work was not spread: {busy:?}");
    assert!(
        busy.iter().any(|(id, _)| id == "w3"),
        "the worker without the source tree did no work: {busy:?}"
    );
    assert_eq!(s["tasks_failed"], 0, "fallbacks: {s}");
    assert_eq!(s["tasks_done"].as_u64(), Some(remote as u64), "{s}");
}

#[test]
fn build_survives_a_worker_killed_mid_build() {
    let tmp = TempDir::new("kill");
    let dir = tmp.path();
    let src = dir.join("src");
    // Two Lua releases side by side: enough work to kill a worker in the middle of it.
    let mut stems = copy_sources(&lua_dir("5.4"), &src);
    let src53 = dir.join("src53");
    let stems53 = copy_sources(&lua_dir("5.3"), &src53);
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let mut w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    let _w3 = Daemon::worker(dir, "w3", "127.0.0.4", &coord.grpc, None);
    wait_workers_up(&coord.http, 3);

    let (farm, plain) = plain_build(dir, "build54", &src, &stems);
    let (farm53, plain53) = plain_build(dir, "build53", &src53, &stems53);
    let script = format!(
        "make -s -j12 -C {} && make -s -j12 -C {}",
        farm.display(),
        farm53.display()
    );
    let build = hgbuild(dir, &coord.grpc)
        .args(["sh", "-c", &script])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start build");

    // Kill w2 once it is busy.
    wait_worker_busy(&coord.http, "w2");
    w2.child.kill().expect("SIGKILL w2");
    let _ = w2.child.wait();

    let out = build.wait_with_output().expect("build finished");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build failed after the kill: {err}");
    assert_same_outputs(&plain, &farm, &stems);
    assert_same_outputs(&plain53, &farm53, &stems53);
    stems.extend(stems53);

    // The circuit opened on the kill; on a slow machine the build can outlast its open period,
    // so it may be half-open (probing) by now, but never closed again without a success.
    let opened = wait_until(Duration::from_secs(10), || {
        stats(&coord.http)["workers"].as_array().is_some_and(|ws| {
            ws.iter().any(|w| {
                w["id"] == "w2"
                    && w["circuit"]["times_opened"].as_u64() >= Some(1)
                    && w["circuit"]["state"] != "closed"
            })
        })
    });
    assert!(opened, "w2's circuit did not open: {}", stats(&coord.http));
    let (_, metrics) = http_get(&coord.http, "/metrics");
    assert!(
        metrics.contains("hybridgrid_circuit_state{worker=\"w2\"} 2")
            || metrics.contains("hybridgrid_circuit_state{worker=\"w2\"} 1"),
        "metrics: {metrics}"
    );
}

#[test]
fn syntax_error_returns_compiler_diagnostics_and_opens_no_circuit() {
    let tmp = TempDir::new("syntax");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("bad.c"), "int f(void) {\n  return 1\n}\n").expect("write bad.c");
    std::fs::write(
        dir.join("warn.c"),
        "int g(int x) { int unused; return x; }\n",
    )
    .expect("write warn.c");
    for (file, flags) in [("bad.c", vec!["-c"]), ("warn.c", vec!["-Wall", "-c"])] {
        let (pcode, _, perr) = run(Command::new("cc")
            .args(&flags)
            .arg(file)
            .args(["-o", "plain.o"])
            .current_dir(dir));
        let (hcode, _, herr) = run(hgbuild(dir, &coord.grpc)
            .arg("cc")
            .args(&flags)
            .arg(file)
            .args(["-o", "farm.o"])
            .current_dir(dir));
        assert_eq!(
            hcode, pcode,
            "{file}: exit codes differ; hgbuild stderr: {herr}"
        );
        assert_eq!(herr, perr, "{file}: diagnostics differ");
    }
    let s = stats(&coord.http);
    for w in s["workers"].as_array().expect("workers") {
        assert_eq!(w["circuit"]["state"], "closed", "{s}");
        assert_eq!(w["failed"], 0, "{s}");
    }
    assert_eq!(
        s["tasks_compile_errors"], 1,
        "the syntax error ran on the worker: {s}"
    );
}

#[test]
fn driver_language_and_client_env_reach_the_worker() {
    let tmp = TempDir::new("driver");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    // C++ in a .c file: g++ compiles it as C++; a worker that took the extension would fail.
    std::fs::write(
        dir.join("cxx.c"),
        "namespace ns { int f() { return 1; } }\nint g() { return ns::f(); }\n",
    )
    .expect("write");
    // __DATE__ and __TIME__ expand on the worker: SOURCE_DATE_EPOCH must travel with the task.
    std::fs::write(
        dir.join("date.c"),
        "const char *when = __DATE__ \" \" __TIME__;\n",
    )
    .expect("write");
    for (driver, file) in [("g++", "cxx.c"), ("gcc", "date.c")] {
        let out = format!("{file}.farm.o");
        let (code, _, err) = run(hgbuild(dir, &coord.grpc)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args([driver, "-O2", "-g", "-c", file, "-o", &out])
            .current_dir(dir));
        assert_eq!(code, 0, "{driver} {file}: {err}");
        let plain = format!("{file}.plain.o");
        let (code, _, err) = run(Command::new(driver)
            .env("SOURCE_DATE_EPOCH", "1700000000")
            .args(["-O2", "-g", "-c", file, "-o", &plain])
            .current_dir(dir));
        assert_eq!(code, 0, "{err}");
        let (a, b) = (
            std::fs::read(dir.join(&out)).expect("farm object"),
            std::fs::read(dir.join(&plain)).expect("plain object"),
        );
        assert!(
            a == b,
            "{driver} {file}: the farm's object differs from the local one"
        );
    }
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    assert_eq!(
        log.matches("remote w1").count(),
        2,
        "both compiles ran on the worker: {log}"
    );
}

#[test]
fn build_survives_the_coordinator_killed_and_restarted() {
    let tmp = TempDir::new("coordkill");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let mut coord = Daemon::coordinator(dir, &[]);
    let (grpc, http) = (coord.grpc.clone(), coord.http.clone());
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &grpc, None);
    let _w2 = Daemon::worker(dir, "w2", "127.0.0.3", &grpc, None);
    wait_workers_up(&http, 2);
    let (farm, plain) = plain_build(dir, "build", &src, &stems);
    let build = hgbuild(dir, &grpc)
        .args(["make", "-s", "-j8", "-C"])
        .arg(&farm)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start build");
    let busy = wait_until(Duration::from_secs(60), || {
        stats(&http)["tasks_done"].as_u64() >= Some(3)
    });
    assert!(busy, "the build never got going: {}", stats(&http));
    coord.child.kill().expect("SIGKILL coordinator");
    let _ = coord.child.wait();
    // Restart it where it was; workers must register again and the build must finish.
    let coord2 = Daemon::coordinator_at(dir, &grpc, &http, &[]);
    let out = build.wait_with_output().expect("build finished");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "build failed: {err}");
    assert_same_outputs(&plain, &farm, &stems);
    // Within one lease period (heartbeat timeout, 2 s here) after the restart, full capacity is back:
    // both workers registered, nothing allocated to tasks that no longer exist.
    let full = wait_until(Duration::from_secs(10), || {
        let s = stats(&coord2.http);
        s["workers"].as_array().is_some_and(|w| w.len() == 2)
            && s["free_slots"] == 8
            && s["total_slots"] == 8
    });
    assert!(
        full,
        "capacity not restored after the restart: {}",
        stats(&coord2.http)
    );
    // Every compile was served: remotely, or locally with its reason counted (a fallback, or a
    // local core taken by choice while no remote slot was free).
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    let served = log
        .lines()
        .filter(|l| {
            l.starts_with("remote ")
                || l.starts_with("fallback ")
                || l.starts_with("local_by_choice")
        })
        .count();
    assert_eq!(served, stems.len(), "{log}");
}

/// Largest number of `local_work <start> <end> <kind>` intervals of the stats log open at one
/// instant, counting those of `kind` (`compile` or `preprocess`).
fn max_local_overlap(log: &str, kind: &str) -> usize {
    let mut edges: Vec<(u128, i32)> = Vec::new();
    for l in log.lines() {
        let mut f = l.split_whitespace();
        if f.next() != Some("local_work") {
            continue;
        }
        let (Some(a), Some(b), Some(k)) = (
            f.next().and_then(|v| v.parse().ok()),
            f.next().and_then(|v| v.parse().ok()),
            f.next(),
        ) else {
            continue;
        };
        if k != kind {
            continue;
        }
        edges.push((a, 1));
        edges.push((b, -1));
    }
    // Ends sort before starts at the same instant: touching intervals do not overlap.
    edges.sort();
    let (mut cur, mut max) = (0i32, 0i32);
    for (_, d) in edges {
        cur += d;
        max = max.max(cur);
    }
    max as usize
}

#[test]
fn without_j_the_build_uses_the_farms_slots_and_bounds_local_work() {
    let tmp = TempDir::new("noj");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let _w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    let (_, jobs, _) = run(hgbuild(dir, &coord.grpc).arg("--jobs"));
    let local = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Each worker offers this host's CPUs: two compiles per farm CPU and local core, plus the
    // lookahead (12) in which the largest sources start first.
    assert_eq!(
        jobs.trim(),
        (2 * (2 * local + local) + 12).to_string(),
        "2 per CPU of 2 workers and per local core, plus the lookahead"
    );
    let (farm, plain) = plain_build(dir, "build", &src, &stems);
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .env("HGBUILD_TRACE_LOCAL", "1")
        .env("HG_CLIENT_LOCAL_JOBS", "2")
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-C"])
        .arg(&farm));
    assert_eq!(code, 0, "{err}");
    assert_same_outputs(&plain, &farm, &stems);
    let s = stats(&coord.http);
    let peak = s["peak_in_flight"].as_u64().unwrap_or(0);
    assert!(
        (5..=8).contains(&peak),
        "farm-wide parallelism: peak in flight {peak} (2 local cores, 8 farm slots): {s}"
    );
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    // Local compiles and preprocessors for the farm have a bound each (the preprocessors never
    // wait behind a local compile).
    let preprocessed = max_local_overlap(&log, "preprocess");
    assert!(
        (1..=2).contains(&preprocessed),
        "preprocessing ran {preprocessed} at once, bound is 2"
    );
    let compiled = max_local_overlap(&log, "compile");
    assert!(
        compiled <= 2,
        "local compiles ran {compiled} at once, bound is 2"
    );
}

#[test]
fn a_frozen_worker_loses_its_tasks_after_one_heartbeat_timeout() {
    let tmp = TempDir::new("frozen");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    let (farm, plain) = plain_build(dir, "build", &src, &stems);
    let mut build = hgbuild(dir, &coord.grpc)
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&farm)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start build");
    wait_worker_busy(&coord.http, "w2");
    // Frozen, not dead: its connections stay open, so only the missed heartbeats can tell.
    let pid = w2.pid().to_string();
    assert_eq!(run(Command::new("kill").args(["-STOP", &pid])).0, 0);
    // Hang guard only: without the lease the frozen tasks would wait for their 5-minute deadline.
    let finished = wait_until(Duration::from_secs(150), || {
        matches!(build.try_wait(), Ok(Some(_)))
    });
    // Read the farm's view while w2 is still frozen: once it runs again its next heartbeat
    // brings it back up, which is right but not what this test looks at.
    let s = stats(&coord.http);
    let _ = run(Command::new("kill").args(["-CONT", &pid]));
    assert!(finished, "the build waited on the frozen worker");
    let out = build.wait_with_output().expect("build output");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_same_outputs(&plain, &farm, &stems);
    let w2s = s["workers"]
        .as_array()
        .and_then(|ws| ws.iter().find(|w| w["id"] == "w2").cloned())
        .expect("w2");
    assert_eq!(w2s["state"], "down", "{s}");
    assert!(
        w2s["circuit"]["failure_rate"].as_f64() > Some(0.0),
        "w2's lost tasks were not counted against its circuit: {s}"
    );
}

#[test]
fn static_workers_are_probed_and_used() {
    let tmp = TempDir::new("static");
    let dir = tmp.path();
    // A worker that registers nowhere: only the coordinator's static list knows it.
    let w = Daemon::worker_env(dir, "s1", "127.0.0.2", "127.0.0.1:1", None, &[]);
    let coord = {
        let mut cmd = Command::new(COORD);
        cmd.args([
            "serve",
            "--grpc-addr",
            "127.0.0.1:0",
            "--http-addr",
            "127.0.0.1:0",
            "--static-worker",
            &w.grpc,
        ]);
        // The worker above was given an unreachable coordinator; the static probe must find it anyway.
        Daemon::spawn_for_test(cmd, dir.join("coord.log"), "dashboard on")
    };
    let ok = wait_until(Duration::from_secs(30), || {
        stats(&coord.http)["workers"].as_array().is_some_and(|ws| {
            ws.iter()
                .any(|x| x["id"] == "s1" && x["source"] == "static" && x["state"] == "up")
        })
    });
    assert!(ok, "static worker not discovered: {}", stats(&coord.http));
    std::fs::write(dir.join("a.c"), "int a(void) { return 7; }\n").expect("write");
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .args(["gcc", "-c", "a.c", "-o", "a.o"])
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    assert!(log.contains("remote s1"), "{log}");
    assert!(
        coord.log_text().contains("worker registered")
            && coord.log_text().contains("source=static")
    );
}
