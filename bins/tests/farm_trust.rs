//! Never a wrong object (issue 10): workers whose toolchain differs in version or target never get a
//! task, and a worker that corrupts its objects is caught by sampled verification; a poisoned
//! shared-cache entry is caught and replaced; and gcc spellings or text a worker would refuse
//! never reach one. The worker's sandbox is tested in farm_sandbox.rs, the shared cache's MAC and
//! Redis credentials in farm_shared_cache.rs.

mod support;

use std::process::Command;
use std::time::Duration;
use support::*;

const CFLAGS: &str = "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD";

/// A `gcc` wrapper that lies about one thing: `flag` answers `answer`; everything else is gcc's.
fn lying_gcc(dir: &std::path::Path, name: &str, flag: &str, answer: &str) -> std::path::PathBuf {
    let bin = dir.join(name);
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("gcc");
    std::fs::write(&script, format!("#!/bin/sh\nif [ \"$1\" = \"{flag}\" ]; then echo {answer}; exit 0; fi\nexec /usr/bin/gcc \"$@\"\n"))
        .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn elf_machine(path: &std::path::Path) -> u16 {
    let b = std::fs::read(path).expect("object");
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([b[18], b[19]])
}

fn build(
    dir: &std::path::Path,
    coord: &str,
    name: &str,
    src: &std::path::Path,
    stems: &[String],
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let build = dir.join(name);
    let plain = dir.join(format!("{name}.plain"));
    write_makefile(&build, src, stems, CFLAGS);
    assert_eq!(
        run(Command::new("make").args(["-s", "-j2", "-C"]).arg(&build)).0,
        0
    );
    std::fs::rename(&build, &plain).expect("move aside");
    write_makefile(&build, src, stems, CFLAGS);
    let (code, _, err) = run(hgbuild(dir, coord)
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "farm build failed: {err}");
    (build, plain, err)
}

#[test]
fn workers_with_another_compiler_version_or_target_never_get_a_task() {
    let tmp = TempDir::new("mismatch");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems: Vec<String> = copy_sources(&lua_dir("5.4"), &src)
        .into_iter()
        .take(12)
        .collect();
    let other_version = lying_gcc(dir, "v99", "-dumpfullversion", "99.1.0");
    let other_target = lying_gcc(dir, "arm", "-dumpmachine", "aarch64-linux-gnu");
    let coord = Daemon::coordinator(dir, &[]);
    let v = other_version.to_string_lossy().into_owned();
    let t = other_target.to_string_lossy().into_owned();
    let _wv = Daemon::worker_env(
        dir,
        "wrong-version",
        "127.0.0.2",
        &coord.grpc,
        None,
        &[("HG_WORKER_COMPILERS", &v)],
    );
    let _wt = Daemon::worker_env(
        dir,
        "wrong-target",
        "127.0.0.3",
        &coord.grpc,
        None,
        &[("HG_WORKER_COMPILERS", &t)],
    );
    wait_workers_up(&coord.http, 2);

    // Only mismatched workers: every compile runs locally, with the reason counted. Those sent
    // to the farm fall back; while the farm's CPUs look taken by the texts being made for it, a
    // compile may run on a local core by choice instead (never on a worker).
    let (b1, p1, err) = build(dir, &coord.grpc, "only-wrong", &src, &stems);
    assert!(err.contains("0 compiled remotely on 0 worker(s)"), "{err}");
    let count_before = |label: &str| -> usize {
        let at = err
            .find(label)
            .unwrap_or_else(|| panic!("no {label:?} in {err}"));
        err[..at]
            .split([' ', ','])
            .rfind(|w| !w.is_empty())
            .and_then(|w| w.parse().ok())
            .unwrap_or_else(|| panic!("no count before {label:?} in {err}"))
    };
    let by_choice = count_before(" on local cores by choice");
    let fallbacks = count_before(" local fallbacks");
    assert!(fallbacks > 0, "{err}");
    assert_eq!(fallbacks + by_choice, stems.len(), "{err}");
    assert!(
        err.contains(&format!(
            "{fallbacks} local fallbacks (no_matching_toolchain: {fallbacks})"
        )),
        "{err}"
    );
    assert_same_outputs(&p1, &b1, &stems);
    let s = stats(&coord.http);
    assert_eq!(
        s["fallbacks"]["no_matching_toolchain"].as_u64(),
        Some(fallbacks as u64),
        "{s}"
    );

    // A matching worker joins: it gets every task sent to the farm, the others still none.
    let _good = Daemon::worker(dir, "good", "127.0.0.4", &coord.grpc, None);
    wait_workers_up(&coord.http, 3);
    let (b2, p2, err) = build(dir, &coord.grpc, "with-good", &src, &stems);
    let remote = assert_farm_served(&err, stems.len());
    assert!(err.contains(" on 1 worker(s)"), "{err}");
    assert_same_outputs(&p2, &b2, &stems);
    for s_ in &stems {
        assert_eq!(
            elf_machine(&b2.join(format!("{s_}.o"))),
            62,
            "not an x86-64 object"
        );
    }
    let s = stats(&coord.http);
    for w in s["workers"].as_array().expect("workers") {
        let expect = if w["id"] == "good" { remote as u64 } else { 0 };
        assert_eq!(w["done"].as_u64(), Some(expect), "{w}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_worker_that_corrupts_objects_is_caught_every_time() {
    let tmp = TempDir::new("faulty");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let coord = Daemon::coordinator(dir, &[]);
    let _bad = Daemon::worker_env(
        dir,
        "faulty",
        "127.0.0.2",
        &coord.grpc,
        None,
        &[("HG_FAULT_FLIP_OBJECT_BYTE", "1")],
    );
    wait_workers_up(&coord.http, 1);
    let _good = Daemon::worker(dir, "good", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    let build_dir = dir.join("build");
    let plain = dir.join("build.plain");
    write_makefile(&build_dir, &src, &stems, CFLAGS);
    assert_eq!(
        run(Command::new("make")
            .args(["-s", "-j2", "-C"])
            .arg(&build_dir))
        .0,
        0
    );
    std::fs::rename(&build_dir, &plain).expect("move aside");
    write_makefile(&build_dir, &src, &stems, CFLAGS);
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .env("HG_VERIFY_RATE", "1.0")
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&build_dir));
    assert_eq!(code, 0, "{err}");
    // The final objects are right, whatever the faulty worker sent.
    assert_same_outputs(&plain, &build_dir, &stems);
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    let from_faulty = log.lines().filter(|l| *l == "remote faulty").count();
    let caught = log
        .lines()
        .filter(|l| *l == "verify_mismatch faulty")
        .count();
    assert!(
        from_faulty >= 1,
        "the faulty worker got no task, nothing was proven: {log}"
    );
    assert_eq!(
        caught, from_faulty,
        "every object from the faulty worker must be caught: {log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("verify_mismatch good"))
            .count(),
        0,
        "{log}"
    );
    let open = wait_until(Duration::from_secs(5), || {
        let s = stats(&coord.http);
        s["workers"].as_array().is_some_and(|ws| {
            ws.iter().any(|w| {
                // A slow build may outlast the cooldown: the circuit is then
                // half-open, but it has opened, and for this reason.
                w["id"] == "faulty"
                    && w["circuit"]["times_opened"].as_u64() >= Some(1)
                    && w["circuit"]["state"] != "closed"
                    && w["circuit"]["reason"] == "output_mismatch"
            })
        })
    });
    assert!(
        open,
        "the faulty worker's circuit never opened for output_mismatch: {}",
        stats(&coord.http)
    );
    assert!(stats(&coord.http)["verify_mismatches"]["faulty"].as_u64() >= Some(1));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_poisoned_shared_cache_entry_is_caught_and_replaced() {
    let tmp = TempDir::new("poison");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new("redis://127.0.0.1:6379", "farm");
    let prefix = cleanup.prefix().to_owned();
    let shared = [
        ("HG_CACHE_SHARED", "redis://127.0.0.1:6379"),
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    // The faulty worker shares its corrupted objects with every client through Redis.
    let mut env = shared.to_vec();
    env.push(("HG_FAULT_FLIP_OBJECT_BYTE", "1"));
    let _bad = Daemon::worker_env(dir, "faulty", "127.0.0.2", &coord.grpc, None, &env);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("p.c"), "int p(int x) { return x * 3 + 1; }\n").expect("write");
    let (code, _, err) = run(Command::new("gcc")
        .args(["-O2", "-c", "p.c", "-o", "plain.o"])
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let plain = std::fs::read(dir.join("plain.o")).expect("plain object");
    // A client that checks nothing takes the bad object, and the worker stores it in Redis.
    let a = dir.join("a");
    std::fs::create_dir_all(&a).expect("mkdir");
    let (code, _, err) = run(hgbuild(&a, &coord.grpc)
        .env("HG_VERIFY_RATE", "0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "a.o"])
        .current_dir(&a));
    assert_eq!(code, 0, "{err}");
    assert_ne!(
        std::fs::read(a.join("a.o")).expect("a.o"),
        plain,
        "the fault switch did not corrupt anything"
    );
    // Client B (empty local cache) verifies shared hits: it catches the bad entry and replaces it.
    let b = dir.join("b");
    std::fs::create_dir_all(&b).expect("mkdir");
    let mut cmd = hgbuild(&b, "127.0.0.1:1");
    cmd.envs(shared)
        .env("HG_VERIFY_CACHE_RATE", "1.0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "b.o"])
        .current_dir(&b);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(b.join("b.o")).expect("b.o"),
        plain,
        "B used the poisoned object"
    );
    let log = std::fs::read_to_string(b.join("stats.log")).expect("stats log");
    assert!(
        log.contains("verify_mismatch shared_cache") && log.contains("cache_hit shared"),
        "{log}"
    );
    // Client C finds the repaired entry: a shared hit that verifies clean.
    let c = dir.join("c");
    std::fs::create_dir_all(&c).expect("mkdir");
    let mut cmd = hgbuild(&c, "127.0.0.1:1");
    cmd.envs(shared)
        .env("HG_VERIFY_CACHE_RATE", "1.0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "c.o"])
        .current_dir(&c);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(c.join("c.o")).expect("c.o"), plain);
    let log = std::fs::read_to_string(c.join("stats.log")).expect("stats log");
    assert!(
        log.contains("verified shared_cache") && !log.contains("verify_mismatch"),
        "{log}"
    );
}

// ---- The compiler sandbox, through a real worker ---------------------------------------------

#[test]
fn gcc_long_aliases_and_text_a_worker_would_refuse_never_reach_a_worker() {
    let tmp = TempDir::new("noship");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker(dir, "w", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("h.h"), "#define V 1\n").expect("write");
    std::fs::write(dir.join("p.c"), "int p(int x) { return x + 1; }\n").expect("write");
    // Passes directives-only preprocessing verbatim; on a worker it would read the worker's h.h.
    std::fs::write(
        dir.join("dep.c"),
        "_Pragma(\"GCC dependency \\\"h.h\\\"\")\nint d;\n",
    )
    .expect("write");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-O2", "--prefix=/tmp/hg-evil", "-c", "p.c", "-o", "a.o"],
            "local_only unsupported_flag:--prefix",
        ),
        (
            &[
                "-O2",
                "--for-assembler=-alh=listing.txt",
                "-c",
                "p.c",
                "-o",
                "b.o",
            ],
            "local_only unsupported_flag:--for-assembler",
        ),
        (
            &[
                "-O2",
                "--for-assembler",
                "-alh=listing.txt",
                "-c",
                "p.c",
                "-o",
                "c.o",
            ],
            "local_only unsupported_flag:--for-assembler",
        ),
        (
            &["-O2", "-std=c11", "-c", "dep.c", "-o", "d.o"],
            "fallback reads_worker_files",
        ),
    ];
    for (args, expect) in cases {
        let (code, _, err) = run(hgbuild(dir, &coord.grpc)
            .env("HG_CACHE_ENABLED", "false")
            .arg("gcc")
            .args(args)
            .current_dir(dir));
        assert_eq!(code, 0, "{args:?}: {err}");
        let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
        assert_eq!(log.lines().last(), Some(expect), "{args:?}: {log}");
    }
    let s = stats(&coord.http);
    for w in s["workers"].as_array().expect("workers") {
        assert_eq!(w["done"].as_u64(), Some(0), "a worker got a task: {w}");
    }
    // The reasons are counted by `--stats` too.
    let (code, out, _) = run(hgbuild(dir, &coord.grpc).arg("--stats"));
    assert_eq!(code, 0);
    assert!(
        out.contains("unsupported_flag:--prefix: 1")
            && out.contains("unsupported_flag:--for-assembler: 2"),
        "{out}"
    );
    assert!(out.contains("reads_worker_files: 1"), "{out}");
}

// ---- Shared cache trust --------------------------------------------------------------------
