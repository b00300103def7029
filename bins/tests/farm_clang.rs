//! clang through the farm (issue 17 item 3): `hgbuild make CC=clang` builds Lua 5.4 against a real
//! coordinator and two workers on loopback. The client preprocesses with `-frewrite-includes`, the
//! workers' scan accepts the `#if 0` groups that text keeps its includes in, and every object and
//! depfile equals a plain `make CC=clang` build in the same directory, byte for byte — with DWARF 4
//! debug info and without. clang's default `-g` (DWARF 5, whose line table carries an MD5 of every
//! source file that a compile of shipped text cannot compute) is compiled locally, counted as
//! `debug_file_checksums`, with identical objects too.
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

#[test]
fn clang_default_debug_info_compiles_locally_with_identical_objects() {
    let tmp = TempDir::new("clang-dwarf5");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems: Vec<String> = copy_sources(&lua_dir("5.4"), &src)
        .into_iter()
        .take(8)
        .collect();
    let coord = Daemon::coordinator(dir, &[]);
    let _w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    let n = stems.len();
    let (farm, plain, err, remote) = plain_then_farm(
        dir,
        &coord,
        "dwarf5",
        &src,
        &stems,
        "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD",
    );
    assert_eq!(remote, 0, "{err}");
    assert!(
        err.contains(&format!(
            "{n} not distributable (debug_file_checksums: {n})"
        )),
        "{err}"
    );
    assert_same_outputs(&plain, &farm, &stems);
}
