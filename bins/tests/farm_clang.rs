//! clang through the farm (issue 17 item 3): `hgbuild make CC=clang` builds Lua 5.4 against a real
//! coordinator and two workers on loopback. The client preprocesses with `-frewrite-includes`, the
//! workers' scan accepts the `#if 0` groups that text keeps its includes in, and every object and
//! depfile equals a plain `make CC=clang` build in the same directory, byte for byte — with DWARF 4
//! debug info and without. clang's default `-g` (DWARF 5, whose line table carries an MD5 of every
//! source file that a compile of shipped text cannot compute) is compiled **rooted**: the client
//! ships the files the compile read and the workers (which cannot see the client's sources) run
//! the original command at the client's paths, with identical objects too; a system header that
//! differs on the worker sends the compile back to the client (`system_headers_differ`).
//! Needs `make` and `clang` (scripts/ci-deps/farm-tools.sh installs clang).

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

fn tasks_done(http: &str) -> u64 {
    stats(http)["tasks_done"].as_u64().unwrap_or(0)
}

/// Builds `stems` of `src` with `make CC=clang` plainly in `dir/name`, moves that build to
/// `dir/name.plain`, then builds again at the same path through `hgbuild make`; returns
/// (farm build, plain build, hgbuild's stderr, remote tasks the coordinator counted).
fn plain_then_farm(
    dir: &Path,
    coord: &Daemon,
    name: &str,
    src: &Path,
    stems: &[String],
    cflags: &str,
) -> (std::path::PathBuf, std::path::PathBuf, String, u64) {
    let build = dir.join(name);
    let plain = dir.join(format!("{name}.plain"));
    write_makefile(&build, src, stems, cflags);
    let (code, _, err) = run(Command::new("make")
        .args(["-s", "-j2", "CC=clang", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "plain make failed: {err}");
    std::fs::rename(&build, &plain).expect("move plain build aside");
    write_makefile(&build, src, stems, cflags);
    let before = tasks_done(&coord.http);
    // -j4: fewer jobs than the farm's 8 slots, so no compile is kept local by choice.
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j4", "CC=clang", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "hgbuild make failed: {err}");
    let remote = tasks_done(&coord.http) - before;
    (build, plain, err, remote)
}

#[test]
fn clang_builds_lua_remotely_with_identical_objects() {
    let tmp = TempDir::new("clang-lua");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    assert!(stems.len() >= 30, "Lua sources: {stems:?}");
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let _w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    let n = stems.len();

    // DWARF 4 debug info: every compile on a worker, objects and depfiles identical.
    let (farm, plain, err, remote) = plain_then_farm(
        dir,
        &coord,
        "dwarf4",
        &src,
        &stems,
        "-O2 -gdwarf-4 -Wall -std=gnu99 -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -MD",
    );
    assert_eq!(remote, n as u64, "{err}");
    assert!(err.contains(&format!("{n} compiled remotely")), "{err}");
    assert_same_outputs(&plain, &farm, &stems);
    let s = stats(&coord.http);
    let done: u64 = s["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["done"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(done, n as u64, "{s}");

    // No debug info, and -D/-U in order (the worker gets them as #define/#undef lines).
    let (farm, plain, err, remote) = plain_then_farm(
        dir,
        &coord,
        "nodebug",
        &src,
        &stems,
        "-O2 -std=gnu99 -DLUA_USE_LINUX -DLUAI_MAXCCALLS=150 -ULUAI_MAXCCALLS -DLUAI_MAXCCALLS=180 -MD",
    );
    assert_eq!(remote, n as u64, "{err}");
    assert_same_outputs(&plain, &farm, &stems);
}

/// The Lua stems whose compile reads `/usr/include/ctype.h` (checked below with `clang -M`).
const READS_CTYPE: &[&str] = &["lbaselib", "liolib", "lstrlib"];

#[test]
fn clang_default_debug_info_compiles_remotely_rooted_with_identical_objects() {
    let tmp = TempDir::new("clang-dwarf5");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems: Vec<String> = copy_sources(&lua_dir("5.4"), &src)
        .into_iter()
        .take(12)
        .collect();
    let coord = Daemon::coordinator(dir, &[]);
    // The workers do not see the client's sources: the source directory is an empty tmpfs in
    // their mount namespace, so every file they compile is one the client shipped.
    let w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, Some(&src));
    let _w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, Some(&src));
    wait_workers_up(&coord.http, 2);
    assert!(
        w1.log_text()
            .contains("rooted compiles (clang DWARF 5 at the client's paths) offered"),
        "{}",
        w1.log_text()
    );
    let n = stems.len();
    // clang's default -g (DWARF 5), and DWARF 5 asked for explicitly. (With `-I../src`, clang
    // itself names some files twice and drops every MD5; such objects are identical too.)
    for (name, cflags) in [
        ("dwarf5", "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD"),
        (
            "gdwarf5",
            "-O1 -gdwarf-5 -Wall -std=gnu99 -DLUA_COMPAT_5_3 -DLUA_USE_LINUX -MD",
        ),
    ] {
        let (farm, plain, err, remote) = plain_then_farm(dir, &coord, name, &src, &stems, cflags);
        assert_eq!(remote, n as u64, "{name}: {err}");
        assert!(
            err.contains(&format!("{n} compiled remotely")),
            "{name}: {err}"
        );
        assert_same_outputs(&plain, &farm, &stems);
        // The objects really carry DWARF 5 line tables with an MD5 per file.
        let (info, lines) = debug_dump(&farm.join(format!("{}.o", stems[0])));
        assert!(info.contains("Version:       5"), "{name}: {info:.400}");
        assert!(lines.contains("MD5"), "{name}: {lines:.400}");
    }
}

/// `readelf`'s dumps of `obj`'s `.debug_info` and raw line table (binutils, on every test host).
fn debug_dump(obj: &Path) -> (String, String) {
    let dump = |what: &str| {
        let (code, out, err) = run(Command::new("readelf")
            .arg(format!("--debug-dump={what}"))
            .arg(obj));
        assert_eq!(code, 0, "readelf: {err}");
        out
    };
    (dump("info"), dump("rawline"))
}

#[test]
fn a_system_header_that_differs_on_the_worker_is_compiled_locally() {
    let tmp = TempDir::new("clang-dwarf5-header");
    let dir = tmp.path();
    let src = dir.join("src");
    let all = copy_sources(&lua_dir("5.4"), &src);
    let stems: Vec<String> = ["lapi", "lbaselib", "lstrlib", "ltable"]
        .map(String::from)
        .into_iter()
        .filter(|s| all.contains(s))
        .collect();
    assert_eq!(stems.len(), 4, "{all:?}");
    for s in &stems {
        let (code, deps, err) = run(Command::new("clang")
            .args(["-std=gnu99", "-DLUA_USE_LINUX", "-M"])
            .arg(src.join(format!("{s}.c"))));
        assert_eq!(code, 0, "{err}");
        assert_eq!(
            deps.contains("/usr/include/ctype.h"),
            READS_CTYPE.contains(&s.as_str()),
            "{s}"
        );
    }
    // The worker's ctype.h is another file: the same text and one more comment line.
    let theirs = dir.join("ctype.h");
    let mut changed = std::fs::read("/usr/include/ctype.h").expect("ctype.h");
    changed.extend_from_slice(b"/* this worker's copy */\n");
    std::fs::write(&theirs, changed).expect("write ctype.h");
    let coord = Daemon::coordinator(dir, &[]);
    let work = dir.join("work-w1");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--mount",
        "--propagation",
        "private",
        "sh",
        "-c",
        "mount --bind \"$0\" /usr/include/ctype.h && exec \"$@\"",
    ])
    .arg(&theirs)
    .arg(WORKER)
    .args(["serve", "--id", "w1", "--coordinator", &coord.grpc])
    .args(["--grpc-addr", "127.0.0.2:0", "--http-addr", "127.0.0.2:0"])
    .env("HG_WORKER_WORK_DIR", &work);
    let _w1 = Daemon::spawn_for_test(cmd, dir.join("w1.log"), "serving gRPC on");
    wait_workers_up(&coord.http, 1);
    let (farm, plain, err, remote) = plain_then_farm(
        dir,
        &coord,
        "dwarf5",
        &src,
        &stems,
        "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD",
    );
    assert_eq!(remote, 2, "{err}");
    assert!(err.contains("2 compiled remotely"), "{err}");
    assert!(err.contains("system_headers_differ: 2"), "{err}");
    assert_same_outputs(&plain, &farm, &stems);
}
