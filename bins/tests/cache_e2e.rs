//! End-to-end tests of the compile cache: the real `hgbuild` binary in front of the real `gcc`
//! (through a logging shim, so a test can tell whether the compiler ran at all), a cache directory
//! per test, and for the shared tier a real coordinator, worker and Redis on 127.0.0.1:6379.
#![allow(clippy::unwrap_used)]
mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::*;

/// No coordinator listens here: misses compile locally (`fallback coordinator_unreachable`).
const NO_COORD: &str = "127.0.0.1:1";

struct Project {
    dir: TempDir,
    bin: PathBuf,
    calls: PathBuf,
}

impl Project {
    /// A temp dir with `bin/gcc` (logs its arguments, then runs the real gcc) and `src/` holding
    /// `t.c` (includes `<stdio.h>` and `inc/a.h`, and has an unused variable for `-Wall`).
    fn new(tag: &str) -> Project {
        let dir = TempDir::new(tag);
        let bin = dir.path().join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let calls = dir.path().join("gcc-calls.log");
        let shim = bin.join("gcc");
        std::fs::write(
            &shim,
            format!(
                "#!/bin/sh\necho \"$*\" >> '{}'\nexec /usr/bin/gcc \"$@\"\n",
                calls.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o755)).unwrap();
        let p = Project { dir, bin, calls };
        p.write_sources(&p.src());
        p
    }

    fn src(&self) -> PathBuf {
        self.dir.path().join("src")
    }

    fn write_sources(&self, at: &Path) {
        std::fs::create_dir_all(at.join("inc")).unwrap();
        std::fs::write(
            at.join("t.c"),
            "#include <stdio.h>\n#include \"inc/a.h\"\n#ifndef B\n#define B 3\n#endif\nint f(void) { int unused; return A + B; }\n",
        )
        .unwrap();
        std::fs::write(at.join("inc/a.h"), "#define A 1\n").unwrap();
        backdate(&at.join("t.c"));
        backdate(&at.join("inc/a.h"));
    }

    /// `hgbuild gcc <args>` in `cwd` with this project's HOME, stats log and shim on PATH.
    fn hgbuild(&self, cwd: &Path, coord: &str, args: &[&str]) -> (i32, String, String) {
        let path = format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = hgbuild(self.dir.path(), coord);
        c.current_dir(cwd).env("PATH", path).arg("gcc").args(args);
        run(&mut c)
    }

    fn gcc_calls(&self) -> usize {
        std::fs::read_to_string(&self.calls)
            .map(|s| s.lines().count())
            .unwrap_or(0)
    }

    fn stats_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("stats.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// The last `cache_miss <reason>` line.
    fn last_miss(&self) -> String {
        self.stats_lines()
            .into_iter()
            .rfind(|l| l.starts_with("cache_miss"))
            .unwrap_or_default()
    }

    fn last_served(&self) -> String {
        self.stats_lines()
            .into_iter()
            .rfind(|l| {
                !l.starts_with("cache_miss")
                    && !l.starts_with("cache_evictions")
                    && !l.starts_with("note ")
            })
            .unwrap_or_default()
    }

    fn cache_dir(&self) -> PathBuf {
        self.dir.path().join(".hybridgrid/cache")
    }
}

/// Dates a file an hour back: hgbuild records no direct-mode entry for a header modified
/// during the compile (or just before it), and these tests write their sources just before.
fn backdate(path: &Path) {
    let t = std::time::SystemTime::now() - std::time::Duration::from_secs(3600);
    let f = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
        .unwrap();
}

fn plain_gcc(cwd: &Path, args: &[&str]) -> (i32, String, String) {
    run(Command::new("gcc").current_dir(cwd).args(args))
}

fn read(p: PathBuf) -> Vec<u8> {
    std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Entry files of a cache directory (`ab/cdef…`), with their sizes.
fn entries(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    for shard in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if !shard.file_type().unwrap().is_dir() {
            continue;
        }
        for e in std::fs::read_dir(shard.path()).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') {
                out.push((e.path(), e.metadata().unwrap().len()));
            }
        }
    }
    out
}

const ARGS: &[&str] = &["-O2", "-Wall", "-DB=2", "-MD", "-c", "t.c", "-o", "t.o"];

#[test]
fn a_hit_is_byte_identical_and_runs_no_compiler() {
    let p = Project::new("cache-hit");
    let src = p.src();
    let (code, _, plain_err) = plain_gcc(&src, ARGS);
    assert_eq!(code, 0);
    assert!(plain_err.contains("unused variable"), "{plain_err}");
    let (obj, dep) = (read(src.join("t.o")), read(src.join("t.d")));
    std::fs::remove_file(src.join("t.o")).unwrap();
    std::fs::remove_file(src.join("t.d")).unwrap();

    let (code, _, err) = p.hgbuild(&src, NO_COORD, ARGS);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("unused variable"), "{err}");
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    assert!(
        p.stats_lines()
            .contains(&"cache_miss new_source_or_flags".to_owned())
    );
    assert_eq!(read(src.join("t.o")), obj);
    assert_eq!(read(src.join("t.d")), dep);

    for round in 0..2 {
        std::fs::remove_file(src.join("t.o")).unwrap();
        std::fs::remove_file(src.join("t.d")).unwrap();
        let calls = p.gcc_calls();
        let (code, out, err) = p.hgbuild(&src, NO_COORD, ARGS);
        assert_eq!(code, 0, "{err}");
        assert_eq!(p.last_served(), "cache_hit local", "round {round}");
        assert_eq!(
            p.gcc_calls(),
            calls,
            "a hit must not run the compiler (no probe, no preprocessor)"
        );
        assert_eq!(err, plain_err, "warnings replayed exactly");
        assert!(out.is_empty());
        assert_eq!(read(src.join("t.o")), obj, "object byte-identical");
        assert_eq!(read(src.join("t.d")), dep, "depfile byte-identical");
    }
}

#[test]
fn a_changed_header_or_define_is_a_miss() {
    let p = Project::new("cache-change");
    let src = p.src();
    let args = ["-O2", "-c", "t.c", "-o", "t.o"];
    assert_eq!(p.hgbuild(&src, NO_COORD, &args).0, 0);
    let first = read(src.join("t.o"));
    assert_eq!(p.hgbuild(&src, NO_COORD, &args).0, 0);
    assert_eq!(p.last_served(), "cache_hit local");

    std::fs::write(src.join("inc/a.h"), "#define A 41\n").unwrap();
    let before = p.gcc_calls();
    let (code, _, err) = p.hgbuild(&src, NO_COORD, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    let changed = read(src.join("t.o"));
    assert_ne!(changed, first, "the header change must reach the object");
    assert_eq!(p.last_miss(), "cache_miss headers_changed");
    let calls = std::fs::read_to_string(&p.calls).unwrap();
    let last: Vec<&str> = calls.lines().skip(before).collect();
    assert!(
        last.len() == 1 && last[0].starts_with("-O2 -c t.c -o t.o -MD -MF "),
        "with no shared tier a local miss runs the compile once, unpreprocessed, its headers \
         taken from a depfile of its own (depend mode): {last:?}"
    );
    plain_gcc(&src, &["-O2", "-c", "t.c", "-o", "plain.o"]);
    assert_eq!(changed, read(src.join("plain.o")));

    let (code, _, _) = p.hgbuild(&src, NO_COORD, &["-O2", "-DB=7", "-c", "t.c", "-o", "t.o"]);
    assert_eq!(code, 0);
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    assert_eq!(p.last_miss(), "cache_miss new_source_or_flags");
    plain_gcc(&src, &["-O2", "-DB=7", "-c", "t.c", "-o", "plain.o"]);
    assert_eq!(read(src.join("t.o")), read(src.join("plain.o")));

    // Back to the first header: the older manifest entry matches again.
    std::fs::write(src.join("inc/a.h"), "#define A 1\n").unwrap();
    assert_eq!(p.hgbuild(&src, NO_COORD, &args).0, 0);
    assert_eq!(p.last_served(), "cache_hit local");
    assert_eq!(read(src.join("t.o")), first);
}

#[test]
fn same_code_at_another_path_hits_without_debug_info_only() {
    let p = Project::new("cache-paths");
    let other = p.dir.path().join("checkout2");
    p.write_sources(&other);
    let args = ["-O2", "-c", "t.c", "-o", "t.o"];
    assert_eq!(p.hgbuild(&p.src(), NO_COORD, &args).0, 0);
    let (code, _, err) = p.hgbuild(&other, NO_COORD, &args);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.last_served(), "cache_hit local");
    assert_eq!(read(other.join("t.o")), read(p.src().join("t.o")));

    // With -g the object records the working directory: a hit there would be wrong.
    let g = ["-O2", "-g", "-c", "t.c", "-o", "t.o"];
    assert_eq!(p.hgbuild(&p.src(), NO_COORD, &g).0, 0);
    assert_eq!(p.hgbuild(&other, NO_COORD, &g).0, 0);
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    plain_gcc(&other, &["-O2", "-g", "-c", "t.c", "-o", "plain.o"]);
    assert_eq!(read(other.join("t.o")), read(other.join("plain.o")));
}

#[test]
fn corrupted_entries_are_detected_and_recompiled() {
    let p = Project::new("cache-corrupt");
    let src = p.src();
    let args = ["-O2", "-c", "t.c", "-o", "t.o"];
    assert_eq!(p.hgbuild(&src, NO_COORD, &args).0, 0);
    let good = read(src.join("t.o"));
    let found = entries(&p.cache_dir());
    assert!(!found.is_empty());
    for (path, len) in &found {
        // Flip one payload byte of one entry, truncate the others.
        let mut bytes = read(path.clone());
        if *len > 200 {
            let i = bytes.len() - 10;
            bytes[i] ^= 0xff;
        } else {
            bytes.truncate(bytes.len() / 2);
        }
        std::fs::write(path, bytes).unwrap();
    }
    std::fs::remove_file(src.join("t.o")).unwrap();
    let (code, _, err) = p.hgbuild(&src, NO_COORD, &args);
    assert_eq!(code, 0, "{err}");
    // Reported in the log file, not in the compile's stderr.
    assert!(!err.contains("corrupt"), "{err}");
    let farm_log = std::fs::read_to_string(p.dir.path().join("hgbuild.log")).unwrap_or_default();
    assert!(farm_log.contains("corrupt cache entry"), "{farm_log}");
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    assert_eq!(read(src.join("t.o")), good);
    assert!(p.stats_lines().iter().any(|l| l == "cache_corrupt 1"));
    // Recompiled and stored again: the next run hits.
    assert_eq!(p.hgbuild(&src, NO_COORD, &args).0, 0);
    assert_eq!(p.last_served(), "cache_hit local");
    assert_eq!(read(src.join("t.o")), good);
}

#[test]
fn eviction_keeps_the_cache_under_its_bound() {
    let p = Project::new("cache-evict");
    let src = p.src();
    let bound: u64 = 6_000;
    for i in 0..8 {
        std::fs::write(
            src.join(format!("u{i}.c")),
            format!("int g{i}[64] = {{ {i} }};\nint h{i}(int x) {{ return x * {i}; }}\n"),
        )
        .unwrap();
        // A source written just before its compile is not cached (it may be mid-write).
        backdate(&src.join(format!("u{i}.c")));
        let mut c = hgbuild(p.dir.path(), NO_COORD);
        c.current_dir(&src)
            .env("HG_CACHE_MAX_SIZE_GB", format!("{}", bound as f64 / 1e9))
            .args(["gcc", "-c", &format!("u{i}.c"), "-o", &format!("u{i}.o")]);
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "{err}");
        let total: u64 = entries(&p.cache_dir()).iter().map(|e| e.1).sum();
        assert!(total <= bound, "after compile {i}: {total} bytes > {bound}");
    }
    let evicted: u64 = p
        .stats_lines()
        .iter()
        .filter_map(|l| l.strip_prefix("cache_evictions "))
        .map(|n| n.parse::<u64>().unwrap())
        .sum();
    assert!(evicted > 0, "8 objects cannot fit in {bound} bytes");
    let (_, out, _) = run(hgbuild(p.dir.path(), NO_COORD).arg("--stats"));
    assert!(out.contains("evictions"), "{out}");
}

#[test]
fn concurrent_writers_of_one_key_are_safe() {
    let p = Project::new("cache-concurrent");
    let src = p.src();
    let path = format!(
        "{}:{}",
        p.bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let children: Vec<_> = (0..6)
        .map(|i| {
            hgbuild(p.dir.path(), NO_COORD)
                .current_dir(&src)
                .env("PATH", &path)
                .args(["gcc", "-O2", "-c", "t.c", "-o", &format!("c{i}.o")])
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    plain_gcc(&src, &["-O2", "-c", "t.c", "-o", "plain.o"]);
    let plain = read(src.join("plain.o"));
    for i in 0..6 {
        assert_eq!(read(src.join(format!("c{i}.o"))), plain, "writer {i}");
    }
    assert!(
        entries(&p.cache_dir())
            .iter()
            .all(|(path, _)| !path.to_string_lossy().contains(".tmp")),
        "no temporary file left behind"
    );
    let (code, _, err) = p.hgbuild(&src, NO_COORD, &["-O2", "-c", "t.c", "-o", "again.o"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(p.last_served(), "cache_hit local");
    assert_eq!(read(src.join("again.o")), plain);
    assert!(!err.contains("corrupt"), "{err}");
}

#[test]
fn disabled_cache_stores_nothing() {
    let p = Project::new("cache-off");
    let src = p.src();
    for _ in 0..2 {
        let mut c = hgbuild(p.dir.path(), NO_COORD);
        c.current_dir(&src)
            .env("HG_CACHE_ENABLED", "false")
            .args(["gcc", "-c", "t.c", "-o", "t.o"]);
        assert_eq!(run(&mut c).0, 0);
        assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    }
    assert!(entries(&p.cache_dir()).is_empty());
}

#[test]
fn clear_cache_empties_the_local_tier() {
    let p = Project::new("cache-clear");
    let src = p.src();
    assert_eq!(p.hgbuild(&src, NO_COORD, &["-c", "t.c", "-o", "t.o"]).0, 0);
    assert!(!entries(&p.cache_dir()).is_empty());
    let (code, out, err) = run(hgbuild(p.dir.path(), NO_COORD).arg("--clear-cache"));
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("cleared"), "{out}");
    assert!(entries(&p.cache_dir()).is_empty());
    assert_eq!(p.hgbuild(&src, NO_COORD, &["-c", "t.c", "-o", "t.o"]).0, 0);
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
}

#[test]
fn worker_compile_is_a_shared_hit_for_another_client() {
    let p = Project::new("cache-shared");
    let cleanup = RedisPrefix::new("redis://127.0.0.1:6379", "farm");
    let prefix = cleanup.prefix().to_owned();
    let shared = [
        ("HG_CACHE_SHARED", "redis://127.0.0.1:6379"),
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
    ];
    let coord = Daemon::coordinator(p.dir.path(), &[]);
    let worker = Daemon::worker_with_env(p.dir.path(), "wa", "127.0.0.1", &coord.grpc, &shared);
    wait_workers_up(&coord.http, 1);

    // Client A: no shared tier of its own, compiles on the farm; only the worker writes Redis.
    let src = p.src();
    let args = ["-O2", "-MD", "-c", "t.c", "-o", "t.o"];
    // The real gcc (the logging shim would be another toolchain than the worker's).
    let mut c = hgbuild(p.dir.path(), &coord.grpc);
    c.current_dir(&src).arg("gcc").args(args);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert!(
        p.last_served().starts_with("remote "),
        "{:?}\n{}",
        p.stats_lines(),
        worker.log_text()
    );
    let obj = read(src.join("t.o"));
    let dep = read(src.join("t.d"));

    // Client B: another HOME (empty local cache), the same sources elsewhere, no coordinator.
    let b = Project::new("cache-shared-b");
    let bsrc = b.src();
    let mut c = hgbuild(b.dir.path(), NO_COORD);
    c.current_dir(&bsrc).args(["gcc"]).args(args);
    for (k, v) in shared {
        c.env(k, v);
    }
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(b.last_served(), "cache_hit shared", "{err}");
    assert_eq!(read(bsrc.join("t.o")), obj);
    assert_eq!(
        read(bsrc.join("t.d")),
        dep,
        "depfile from B's own preprocessing"
    );
    // And B's local tier now has it: the next run needs no network.
    std::fs::remove_file(bsrc.join("t.o")).unwrap();
    let mut c = hgbuild(b.dir.path(), NO_COORD);
    c.current_dir(&bsrc)
        .env("HG_CACHE_SHARED", "redis://127.0.0.1:1")
        .args(["gcc"])
        .args(args);
    let (code, _, err) = run(&mut c);
    assert_eq!(code, 0, "{err}");
    assert_eq!(b.last_served(), "cache_hit local");
    assert_eq!(read(bsrc.join("t.o")), obj);
}

#[test]
fn build_cache_events_reach_the_coordinator_stats_and_metrics() {
    let p = Project::new("cache-report");
    let coord = Daemon::coordinator(p.dir.path(), &[]);
    let src = p.src();
    std::fs::write(src.join("u.c"), "int u(int x) { return x * 3; }\n").unwrap();
    // As old as the other sources: a file written just before its compile is not cached.
    backdate(&src.join("u.c"));
    let stems = vec!["t".to_owned(), "u".to_owned()];
    for round in 0..2 {
        // A clean build directory each time: the second build is all cache hits.
        let build = p.dir.path().join(format!("build{round}"));
        write_makefile(&build, &src, &stems, "-O2");
        let mut c = hgbuild(p.dir.path(), &coord.grpc);
        c.args(["make", "-s", "-C"]).arg(&build);
        let (code, _, err) = run(&mut c);
        assert_eq!(code, 0, "{err}");
    }
    let s = stats(&coord.http);
    assert_eq!(s["client_cache"]["hit_local"], 2, "{s}");
    assert_eq!(s["client_cache"]["miss"], 2, "{s}");
    let (status, metrics) = http_get(&coord.http, "/metrics");
    assert_eq!(status, 200);
    assert!(
        metrics.contains("hybridgrid_client_cache_events_total{event=\"hit_local\"} 2"),
        "{metrics}"
    );
}

/// A local rerun (for diagnostics) reads the headers again, after the text the key hashes was made:
/// a header that changed in between must keep its result out of the cache.
#[test]
fn a_header_changed_during_the_build_step_keeps_a_local_rerun_out_of_the_cache() {
    let tmp = TempDir::new("racy-header");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("h.h"), "#define V 2\n").expect("write");
    // A warning sends the remote result back for a local rerun with exact diagnostics.
    std::fs::write(
        dir.join("w.c"),
        "#include \"h.h\"\nint f(void) { int unused; return V; }\n",
    )
    .expect("write");
    let stamp = |secs: i64| {
        let t = if secs >= 0 {
            std::time::SystemTime::now() + Duration::from_secs(secs as u64)
        } else {
            std::time::SystemTime::now() - Duration::from_secs((-secs) as u64)
        };
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(dir.join("h.h"))
            .expect("open");
        f.set_times(std::fs::FileTimes::new().set_modified(t).set_accessed(t))
            .expect("set times");
    };
    let last = || {
        std::fs::read_to_string(dir.join("stats.log"))
            .expect("stats log")
            .lines()
            .rfind(|l| l.starts_with("cache_hit") || l.starts_with("local_diagnostics"))
            .unwrap_or_default()
            .to_owned()
    };
    let compile = || {
        let _ = std::fs::remove_file(dir.join("w.o"));
        let (code, _, err) = run(hgbuild(dir, &coord.grpc)
            .args(["gcc", "-Wall", "-c", "w.c", "-o", "w.o"])
            .current_dir(dir));
        assert_eq!(code, 0, "{err}");
        assert!(err.contains("unused"), "the warning must be shown: {err}");
    };
    // Stamped after the build step started, as if rewritten while it ran: nothing may be stored.
    stamp(60);
    compile();
    compile();
    assert_eq!(
        last(),
        "local_diagnostics -",
        "a result from a racy rerun was served from the cache"
    );
    // A header older than the step: the rerun's result is stored, and the next compile hits.
    stamp(-60);
    compile();
    compile();
    assert!(
        last().starts_with("cache_hit"),
        "expected a hit, got {:?}",
        last()
    );
}

#[test]
fn depend_mode_keys_a_miss_on_the_compilers_own_depfile() {
    let p = Project::new("cache-depend");
    let src = p.src();
    let (code, _, plain_err) = plain_gcc(&src, ARGS);
    assert_eq!(code, 0);
    let (obj, dep) = (read(src.join("t.o")), read(src.join("t.d")));
    // A miss: the compiler runs once with the user's own arguments (its -MD depfile lists the
    // headers), nothing is preprocessed.
    let before = p.gcc_calls();
    let (code, _, err) = p.hgbuild(&src, NO_COORD, ARGS);
    assert_eq!((code, err.as_str()), (0, plain_err.as_str()));
    let calls = std::fs::read_to_string(&p.calls).unwrap();
    // (The first compile of a project also probes the compiler's identity: `--version`, `-dump*`.)
    let ran: Vec<&str> = calls
        .lines()
        .skip(before)
        .filter(|l| !l.starts_with("--version") && !l.starts_with("-dump"))
        .collect();
    assert_eq!(ran, [ARGS.join(" ")], "one compile, exactly as given");
    assert_eq!(
        (read(src.join("t.o")), read(src.join("t.d"))),
        (obj.clone(), dep.clone())
    );
    // The hit replays object, depfile and warnings without running the compiler.
    std::fs::remove_file(src.join("t.d")).unwrap();
    let calls = p.gcc_calls();
    let (code, _, err) = p.hgbuild(&src, NO_COORD, ARGS);
    assert_eq!((code, err.as_str()), (0, plain_err.as_str()));
    assert_eq!(p.last_served(), "cache_hit local");
    assert_eq!(p.gcc_calls(), calls);
    assert_eq!((read(src.join("t.o")), read(src.join("t.d"))), (obj, dep));
    // A header the depfile lists changes: a miss with the new object.
    std::fs::write(src.join("inc/a.h"), "#define A 5\n").unwrap();
    backdate(&src.join("inc/a.h"));
    assert_eq!(p.hgbuild(&src, NO_COORD, ARGS).0, 0);
    assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    plain_gcc(
        &src,
        &["-O2", "-Wall", "-DB=2", "-c", "t.c", "-o", "plain.o"],
    );
    assert_eq!(read(src.join("t.o")), read(src.join("plain.o")));
    // A source that uses the clock is never stored.
    std::fs::write(src.join("clock.c"), "const char *when = __DATE__;\n").unwrap();
    backdate(&src.join("clock.c"));
    for _ in 0..2 {
        assert_eq!(
            p.hgbuild(&src, NO_COORD, &["-c", "clock.c", "-o", "clock.o"])
                .0,
            0
        );
        assert_eq!(p.last_served(), "fallback coordinator_unreachable");
    }
    // -MMD leaves the system headers out of the depfile: the preprocessed key is used.
    let before = p.gcc_calls();
    assert_eq!(
        p.hgbuild(&src, NO_COORD, &["-MMD", "-c", "t.c", "-o", "m.o"])
            .0,
        0
    );
    let calls = std::fs::read_to_string(&p.calls).unwrap();
    assert!(
        calls
            .lines()
            .skip(before)
            .any(|l| l.contains("-fdirectives-only")),
        "-MMD is keyed on the preprocessed text: {calls}"
    );
}
