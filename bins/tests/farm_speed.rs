//! Issue 18: the compiler's output through `hgbuild` is exactly the compiler's (stdout, stderr,
//! exit code, object) in every path: no coordinator, one that accepts and never answers, one
//! that dies mid-build, a broken config, an unwritable cache, remote and local compiles with
//! warnings and errors. The farm's own messages go to the log file and, once, to the summary of
//! `hgbuild make`. And the local cores are farm capacity: `local_by_choice` compiles overlap the
//! remote ones.

mod support;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::*;

/// A file that compiles with a warning under `-Wall`.
const WARNS: &str = "int f(int a) { int unused; return a + 1; }\n";
/// A file that does not compile.
const FAILS: &str = "int g(void) { return missing_name; }\n";
/// A file that compiles cleanly.
const CLEAN: &str = "int h(int a) { return a * 3; }\n";

fn sources(dir: &Path) {
    std::fs::write(dir.join("warns.c"), WARNS).expect("write warns.c");
    std::fs::write(dir.join("fails.c"), FAILS).expect("write fails.c");
    std::fs::write(dir.join("clean.c"), CLEAN).expect("write clean.c");
}

/// A loopback address where nothing listens (a port bound, then released).
fn closed_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    let a = l.local_addr().expect("addr").to_string();
    drop(l);
    a
}

/// The compiles each case runs: (source, args after `gcc`).
fn compiles() -> Vec<(&'static str, Vec<&'static str>)> {
    vec![
        (
            "warns",
            vec!["-Wall", "-O2", "-c", "warns.c", "-o", "warns.o"],
        ),
        ("fails", vec!["-Wall", "-c", "fails.c", "-o", "fails.o"]),
        ("clean", vec!["-O2", "-g", "-c", "clean.c", "-o", "clean.o"]),
        (
            "depfile",
            vec!["-O2", "-MD", "-c", "clean.c", "-o", "dep.o"],
        ),
    ]
}

/// Runs `cmd` in `cwd`; the full output.
fn output(cmd: &mut Command, cwd: &Path) -> Output {
    cmd.current_dir(cwd)
        .output()
        .unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// Plain gcc's result for each compile, with the object (if any), in `dir`.
fn plain_results(dir: &Path) -> Vec<(Output, Option<Vec<u8>>)> {
    compiles()
        .into_iter()
        .map(|(_, args)| {
            let out = output(Command::new("gcc").args(&args), dir);
            let obj = object_of(dir, &args);
            (out, obj)
        })
        .collect()
}

fn object_of(dir: &Path, args: &[&str]) -> Option<Vec<u8>> {
    let o = args.iter().position(|a| *a == "-o").map(|i| args[i + 1])?;
    let bytes = std::fs::read(dir.join(o)).ok();
    let _ = std::fs::remove_file(dir.join(o));
    bytes
}

/// Runs every compile through `hgbuild gcc` as configured by `setup`, and asserts that stdout,
/// stderr, exit code and object equal plain gcc's byte for byte.
fn assert_like_gcc(case: &str, dir: &Path, setup: &dyn Fn(&mut Command)) {
    sources(dir);
    let plain = plain_results(dir);
    for ((name, args), (want, want_obj)) in compiles().into_iter().zip(plain) {
        let mut cmd = Command::new(HGBUILD);
        cmd.env("HOME", dir)
            .env("HGBUILD_STATS_FILE", dir.join("stats.log"))
            .env("HG_LOG_FILE", dir.join("hgbuild.log"))
            .env_remove("HG_CONFIG")
            .env_remove("MAKEFLAGS")
            .arg("gcc")
            .args(&args);
        setup(&mut cmd);
        let got = output(&mut cmd, dir);
        let what = format!("{case}/{name}");
        assert_eq!(
            String::from_utf8_lossy(&got.stderr),
            String::from_utf8_lossy(&want.stderr),
            "{what}: stderr differs from plain gcc's"
        );
        assert_eq!(got.stdout, want.stdout, "{what}: stdout differs");
        assert_eq!(got.status.code(), want.status.code(), "{what}: exit code");
        assert!(
            object_of(dir, &args) == want_obj,
            "{what}: object differs from plain gcc's"
        );
    }
}

fn case_dir(tmp: &TempDir, case: &str) -> PathBuf {
    let d = tmp.path().join(case);
    std::fs::create_dir_all(&d).expect("mkdir case");
    d
}

#[test]
fn without_a_usable_coordinator_the_output_is_exactly_gccs() {
    let tmp = TempDir::new("speed-nocoord");
    let closed = closed_addr();
    // Accepts connections and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").expect("bind silent");
    let silent_addr = silent.local_addr().expect("addr").to_string();
    for cache in ["true", "false"] {
        let d = case_dir(&tmp, &format!("closed-{cache}"));
        assert_like_gcc("no coordinator", &d, &|c| {
            c.env("HG_COORDINATOR", &closed)
                .env("HG_CACHE_ENABLED", cache);
        });
        // The second pass over the same cache serves hits (replayed warnings included).
        assert_like_gcc("no coordinator, cache warm", &d, &|c| {
            c.env("HG_COORDINATOR", &closed)
                .env("HG_CACHE_ENABLED", cache);
        });
        let log = std::fs::read_to_string(d.join("hgbuild.log")).unwrap_or_default();
        assert!(
            log.contains(&format!("coordinator {closed} unreachable")),
            "the fallback is in the log file: {log:?}"
        );
        let d = case_dir(&tmp, &format!("silent-{cache}"));
        assert_like_gcc("silent coordinator", &d, &|c| {
            c.env("HG_COORDINATOR", &silent_addr)
                .env("HG_CLIENT_CONNECT_TIMEOUT", "200ms")
                .env("HG_CACHE_ENABLED", cache);
        });
    }
    drop(silent);
}

#[test]
fn bad_config_and_unwritable_cache_leave_the_output_exactly_gccs() {
    let tmp = TempDir::new("speed-badcfg");
    let closed = closed_addr();
    let d = case_dir(&tmp, "badcfg");
    let cfg = d.join("bad.yaml");
    std::fs::write(&cfg, "client: [this is not: a mapping\n").expect("write config");
    assert_like_gcc("bad config", &d, &|c| {
        c.env("HG_CONFIG", &cfg);
    });
    let log = std::fs::read_to_string(d.join("hgbuild.log")).unwrap_or_default();
    assert!(log.contains("config error"), "logged: {log:?}");
    let d = case_dir(&tmp, "nocache");
    // A regular file where the cache directory should be: nothing can be created under it.
    let blocker = d.join("not-a-dir");
    std::fs::write(&blocker, "").expect("write blocker");
    let cache_dir = blocker.join("cache");
    assert_like_gcc("unwritable cache", &d, &|c| {
        c.env("HG_COORDINATOR", &closed)
            .env("HG_CACHE_DIR", &cache_dir);
    });
    // And a stats log that cannot be written either.
    assert_like_gcc("unwritable stats and log", &d, &|c| {
        c.env("HG_COORDINATOR", &closed)
            .env("HG_CACHE_DIR", &cache_dir)
            .env("HGBUILD_STATS_FILE", blocker.join("stats.log"))
            .env("HG_LOG_FILE", blocker.join("hgbuild.log"));
    });
}

#[test]
fn remote_compiles_and_a_coordinator_dying_mid_build_leave_the_output_exactly_gccs() {
    let tmp = TempDir::new("speed-remote");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    for cache in ["true", "false"] {
        let d = case_dir(&tmp, &format!("remote-{cache}"));
        assert_like_gcc("remote", &d, &|c| {
            c.env("HG_COORDINATOR", &coord.grpc)
                .env("HG_CACHE_ENABLED", cache);
        });
        let stats = std::fs::read_to_string(d.join("stats.log")).unwrap_or_default();
        assert!(
            stats.lines().any(|l| l.starts_with("remote w1")),
            "the clean compiles ran on the worker: {stats}"
        );
    }
    // The coordinator dies between two compiles of the same build.
    let d = case_dir(&tmp, "dies");
    let grpc = coord.grpc.clone();
    drop(coord);
    assert_like_gcc("coordinator died", &d, &|c| {
        c.env("HG_COORDINATOR", &grpc);
    });
}

#[test]
fn make_summary_names_the_fallback_once_and_compiles_print_nothing_of_the_farm() {
    let tmp = TempDir::new("speed-summary");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let stems: Vec<String> = stems.into_iter().take(4).collect();
    let closed = closed_addr();
    let plain = dir.join("plain");
    write_makefile(&plain, &src, &stems, "-O2");
    let (code, _, plain_err) = run(Command::new("make").args(["-s", "-C"]).arg(&plain));
    assert_eq!(code, 0, "{plain_err}");
    let build = dir.join("build");
    write_makefile(&build, &src, &stems, "-O2");
    let (code, _, err) = run(hgbuild(dir, &closed)
        .env("HG_LOG_FILE", dir.join("hgbuild.log"))
        .args(["make", "-s", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "{err}");
    let mentions: Vec<&str> = err.lines().filter(|l| l.contains(&closed)).collect();
    assert_eq!(
        mentions.len(),
        1,
        "the unreachable coordinator is named once, in the summary: {err}"
    );
    assert!(
        mentions[0].starts_with("hgbuild: note: coordinator") && mentions[0].contains("times)"),
        "{err}"
    );
    assert!(
        err.contains(&format!("coordinator_unreachable: {}", stems.len())),
        "{err}"
    );
    // Everything before the summary is the compilers' own output.
    let before: String = err
        .lines()
        .take_while(|l| !l.starts_with("hgbuild: "))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(before, plain_err, "compiler output through hgbuild make");
    assert_same_outputs_o(&plain, &build, &stems);
}

fn assert_same_outputs_o(a: &Path, b: &Path, stems: &[String]) {
    for s in stems {
        let fa = std::fs::read(a.join(format!("{s}.o"))).expect("plain object");
        let fb = std::fs::read(b.join(format!("{s}.o"))).expect("hgbuild object");
        assert!(fa == fb, "{s}.o differs");
    }
}

#[test]
fn local_cores_compile_by_choice_when_the_farm_is_full_and_objects_match() {
    let tmp = TempDir::new("speed-choice");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems: Vec<String> = copy_sources(&lua_dir("5.4"), &src)
        .into_iter()
        .take(12)
        .collect();
    let coord = Daemon::coordinator(dir, &[]);
    // One remote slot: the farm is full whenever a compile is on it.
    let _w = Daemon::worker_env(
        dir,
        "w1",
        "127.0.0.2",
        &coord.grpc,
        None,
        &[("HG_WORKER_MAX_CONCURRENT_TASKS", "1")],
    );
    wait_workers_up(&coord.http, 1);
    let local = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (_, jobs, _) = run(hgbuild(dir, &coord.grpc).arg("--jobs"));
    assert_eq!(
        jobs.trim(),
        (2 * (1 + local) + 12).to_string(),
        "-j: two per farm slot and local core, plus the lookahead"
    );
    const FLAGS: &str = "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD";
    let build = dir.join("build");
    let plain = dir.join("build.plain");
    write_makefile(&build, &src, &stems, FLAGS);
    let (code, _, err) = run(Command::new("make").args(["-s", "-j2", "-C"]).arg(&build));
    assert_eq!(code, 0, "plain build: {err}");
    std::fs::rename(&build, &plain).expect("move plain build aside");
    write_makefile(&build, &src, &stems, FLAGS);
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "{err}");
    assert_same_outputs(&plain, &build, &stems);
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    let count = |prefix: &str| log.lines().filter(|l| l.starts_with(prefix)).count();
    let by_choice = count("local_by_choice ");
    assert!(by_choice > 0, "no compile ran locally by choice: {log}");
    assert!(count("remote ") > 0, "no compile ran remotely: {log}");
    assert_eq!(count("fallback "), 0, "by choice is not a fallback: {log}");
    assert_eq!(by_choice + count("remote "), stems.len(), "{log}");
    assert!(
        err.contains(&format!("{by_choice} on local cores by choice")),
        "summary: {err}"
    );
    let (_, out, _) = run(hgbuild(dir, &coord.grpc).arg("--stats"));
    assert!(
        out.contains(&format!("\"local_by_choice\": {by_choice}")),
        "--stats: {out}"
    );
    let reported = wait_until(std::time::Duration::from_secs(10), || {
        stats(&coord.http)["local_by_choice"].as_u64() == Some(by_choice as u64)
    });
    assert!(reported, "/api/stats: {}", stats(&coord.http));
}
