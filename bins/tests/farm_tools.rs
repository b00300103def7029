//! End-to-end: real build tools drive their compiles through `hgbuild` against a real coordinator
//! and two workers on loopback — `hgbuild make`, `hgbuild ninja`, `hgbuild cmake` (configure, then
//! `--build`, twice), CMake + Ninja with `CMAKE_C_COMPILER_LAUNCHER=hgbuild`, and a cargo build
//! whose build script compiles C through the `cc` crate with `CC="hgbuild cc"`. Each checks that
//! the compiles went to the workers and that every object equals a plain local build, byte for
//! byte (`-g` included: both builds run in the same directory, which debug info records).
//! Needs `make`, `cmake`, `ninja` and `cc` (scripts/ci-deps/farm-tools.sh installs them).

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use support::*;

const FILES: &[&str] = &["alpha", "beta", "gamma", "delta", "omega"];

/// A small C project in `dir/src`: a shared header with macros (their columns end up in the
/// line tables) and one source per [`FILES`] entry.
fn write_project(src: &Path) {
    std::fs::create_dir_all(src.join("include")).expect("mkdir src");
    std::fs::write(
        src.join("include/tools.h"),
        "#ifndef TOOLS_H\n#define TOOLS_H\n#define SQUARE(x) ((x) * (x))\n#define PICK(a, b) ((a) > (b) ? (a) : (b))\nstatic inline int tools_twice(int v) { return v + v; }\n#endif\n",
    )
    .expect("write header");
    for (i, name) in FILES.iter().enumerate() {
        std::fs::write(
            src.join(format!("{name}.c")),
            format!(
                "#include <string.h>\n#include \"tools.h\"\n\nint {name}_value(int x);\n\nint {name}_value(int x) {{\n    int y = SQUARE(x) + {i};\n    return PICK(y, tools_twice(x)) + (int)strlen(__FILE__);\n}}\n"
            ),
        )
        .expect("write source");
    }
}

fn cmakelists(src: &Path) {
    let sources: Vec<String> = FILES.iter().map(|f| format!("{f}.c")).collect();
    std::fs::write(
        src.join("CMakeLists.txt"),
        format!(
            "cmake_minimum_required(VERSION 3.13)\nproject(hgtools C)\nadd_library(hgtools STATIC {})\ntarget_include_directories(hgtools PRIVATE include)\n",
            sources.join(" ")
        ),
    )
    .expect("write CMakeLists.txt");
}

/// A coordinator and two workers, up.
fn farm(dir: &Path) -> (Daemon, Daemon, Daemon) {
    let coord = Daemon::coordinator(dir, &[]);
    let w1 = Daemon::worker(dir, "w1", "127.0.0.2", &coord.grpc, None);
    let w2 = Daemon::worker(dir, "w2", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    (coord, w1, w2)
}

fn tasks_done(http: &str) -> u64 {
    stats(http)["tasks_done"].as_u64().unwrap_or(0)
}

/// Every `*.o` below `root`, as (path relative to `root`, contents), sorted.
fn objects(root: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else if p.extension().is_some_and(|x| x == "o") {
                let rel = p.strip_prefix(root).expect("below root").to_owned();
                out.push((rel, std::fs::read(&p).expect("read object")));
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Asserts that `farm` holds exactly the objects of `plain` (`n` of them), byte for byte.
fn assert_same_objects(plain: &[(PathBuf, Vec<u8>)], farm: &[(PathBuf, Vec<u8>)], n: usize) {
    assert_eq!(plain.len(), n, "plain objects: {:?}", names(plain));
    let names_farm = names(farm);
    assert_eq!(names(plain), names_farm, "object sets differ");
    for ((p, a), (_, b)) in plain.iter().zip(farm) {
        assert!(a == b, "{} differs from the plain build", p.display());
    }
}

fn names(objs: &[(PathBuf, Vec<u8>)]) -> Vec<PathBuf> {
    objs.iter().map(|(p, _)| p.clone()).collect()
}

/// `cmd` with the environment `hgbuild` needs to reach the coordinator (as [`hgbuild`] sets it).
fn with_farm_env<'a>(cmd: &'a mut Command, dir: &Path, coord_grpc: &str) -> &'a mut Command {
    cmd.env("HG_COORDINATOR", coord_grpc)
        .env("HOME", dir)
        .env("HGBUILD_STATS_FILE", dir.join("stats.log"))
        .env_remove("HG_CONFIG")
        .env_remove("MAKEFLAGS")
}

fn ok(what: &str, (code, out, err): (i32, String, String)) -> String {
    assert_eq!(code, 0, "{what} failed:\n{out}\n{err}");
    err
}

#[test]
fn hgbuild_make_and_hgbuild_ninja_compile_remotely_with_identical_objects() {
    let tmp = TempDir::new("tools-make");
    let dir = tmp.path();
    let src = dir.join("src");
    write_project(&src);
    let (coord, _w1, _w2) = farm(dir);
    let n = FILES.len();
    let stems: Vec<String> = FILES.iter().map(|s| (*s).to_owned()).collect();
    let cflags = format!("-O2 -g -MD -I{}/include", src.display());

    // make: `$(CC)` is make's default `cc`, found in the masquerade directory.
    let build = dir.join("make");
    write_makefile(&build, &src, &stems, &cflags);
    ok(
        "plain make",
        run(Command::new("make").args(["-s", "-C"]).arg(&build)),
    );
    let plain = dir.join("make.plain");
    std::fs::rename(&build, &plain).expect("move plain build");
    write_makefile(&build, &src, &stems, &cflags);
    let before = tasks_done(&coord.http);
    let err = ok(
        "hgbuild make",
        run(hgbuild(dir, &coord.grpc)
            .args(["make", "-s", "-C"])
            .arg(&build)),
    );
    let remote = assert_farm_served(&err, n);
    assert_eq!(tasks_done(&coord.http) - before, remote as u64);
    assert_same_outputs(&plain, &build, &stems);

    // ninja: a hand-written build.ninja calling `cc`.
    let nbuild = dir.join("ninja");
    let ninja_file = |d: &Path| {
        std::fs::create_dir_all(d).expect("mkdir ninja");
        let mut f = format!(
            "cflags = -O2 -g -I{}/include\nrule cc\n  command = cc $cflags -MD -MF $out.d -c $in -o $out\n  depfile = $out.d\n",
            src.display()
        );
        for s in FILES {
            f.push_str(&format!("build {s}.o: cc {}/{s}.c\n", src.display()));
        }
        std::fs::write(d.join("build.ninja"), f).expect("write build.ninja");
    };
    ninja_file(&nbuild);
    ok(
        "plain ninja",
        run(Command::new("ninja").arg("-C").arg(&nbuild)),
    );
    let nplain = objects(&nbuild);
    std::fs::remove_dir_all(&nbuild).expect("clean ninja build");
    ninja_file(&nbuild);
    let before = tasks_done(&coord.http);
    let err = ok(
        "hgbuild ninja",
        run(hgbuild(dir, &coord.grpc).args(["ninja", "-C"]).arg(&nbuild)),
    );
    let remote = assert_farm_served(&err, n);
    assert_eq!(tasks_done(&coord.http) - before, remote as u64);
    assert_same_objects(&nplain, &objects(&nbuild), n);
}

#[test]
fn hgbuild_cmake_configure_then_build_twice_compiles_remotely() {
    let tmp = TempDir::new("tools-cmake");
    let dir = tmp.path();
    let src = dir.join("src");
    write_project(&src);
    cmakelists(&src);
    let (coord, _w1, _w2) = farm(dir);
    let n = FILES.len();
    let b = dir.join("b");
    let configure = ["-S", "src", "-B", "b", "-G", "Unix Makefiles"];
    let release = "-DCMAKE_BUILD_TYPE=RelWithDebInfo";

    ok(
        "plain cmake",
        run(Command::new("cmake")
            .current_dir(dir)
            .args(configure)
            .arg(release)),
    );
    ok(
        "plain cmake --build",
        run(Command::new("cmake").args(["--build"]).arg(&b)),
    );
    let plain = objects(&b);
    std::fs::remove_dir_all(&b).expect("clean build dir");

    ok(
        "hgbuild cmake (configure)",
        run(hgbuild(dir, &coord.grpc)
            .current_dir(dir)
            .arg("cmake")
            .args(configure)
            .arg(release)),
    );
    let cache = std::fs::read_to_string(b.join("CMakeCache.txt")).expect("CMakeCache.txt");
    let compiler = cache
        .lines()
        .find(|l| l.starts_with("CMAKE_C_COMPILER:"))
        .unwrap_or_default();
    assert!(
        !compiler.contains("hgbuild-"),
        "the temporary masquerade dir was recorded: {compiler}"
    );
    assert!(
        cache
            .lines()
            .any(|l| l.starts_with("CMAKE_C_COMPILER_LAUNCHER") && l.ends_with("hgbuild")),
        "no launcher recorded"
    );
    let before = tasks_done(&coord.http);
    let err = ok(
        "hgbuild cmake --build",
        run(hgbuild(dir, &coord.grpc).args(["cmake", "--build"]).arg(&b)),
    );
    let remote = assert_farm_served(&err, n);
    assert_eq!(tasks_done(&coord.http) - before, remote as u64);
    assert_same_objects(&plain, &objects(&b), n);

    // A later build of the same directory still finds its compiler (it used to be the removed
    // masquerade directory): change one source and build again.
    let alpha = src.join("alpha.c");
    let mut text = std::fs::read_to_string(&alpha).expect("read alpha.c");
    text.push_str("int alpha_extra(void) { return 7; }\n");
    std::fs::write(&alpha, text).expect("write alpha.c");
    let before = tasks_done(&coord.http);
    let err = ok(
        "second hgbuild cmake --build",
        run(hgbuild(dir, &coord.grpc).args(["cmake", "--build"]).arg(&b)),
    );
    assert!(err.contains("1 compiled remotely"), "{err}");
    assert_eq!(tasks_done(&coord.http) - before, 1);
}

#[test]
fn cmake_ninja_with_compiler_launcher_compiles_remotely() {
    let tmp = TempDir::new("tools-launcher");
    let dir = tmp.path();
    let src = dir.join("src");
    write_project(&src);
    cmakelists(&src);
    let (coord, _w1, _w2) = farm(dir);
    let n = FILES.len();
    let b = dir.join("b");
    let configure = [
        "-S",
        "src",
        "-B",
        "b",
        "-G",
        "Ninja",
        "-DCMAKE_BUILD_TYPE=RelWithDebInfo",
    ];

    ok(
        "plain cmake -G Ninja",
        run(Command::new("cmake").current_dir(dir).args(configure)),
    );
    ok("plain ninja", run(Command::new("ninja").arg("-C").arg(&b)));
    let plain = objects(&b);
    std::fs::remove_dir_all(&b).expect("clean build dir");

    let mut cmake = Command::new("cmake");
    with_farm_env(&mut cmake, dir, &coord.grpc)
        .current_dir(dir)
        .args(configure)
        .arg(format!("-DCMAKE_C_COMPILER_LAUNCHER={HGBUILD}"));
    ok("cmake with launcher", run(&mut cmake));
    let before = tasks_done(&coord.http);
    let mut ninja = Command::new("ninja");
    with_farm_env(&mut ninja, dir, &coord.grpc)
        .args(["-j4", "-C"])
        .arg(&b);
    ok("ninja with launcher", run(&mut ninja));
    let (_, summary, _) = run(hgbuild(dir, &coord.grpc).arg("--stats"));
    let remote = assert_farm_served(&summary, n);
    assert_eq!(tasks_done(&coord.http) - before, remote as u64);
    assert_same_objects(&plain, &objects(&b), n);
}

/// The cargo and rustup homes of the user running the tests (the test gives hgbuild its own HOME).
fn tool_homes() -> Vec<(&'static str, PathBuf)> {
    let home = PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into()));
    let cargo = std::env::var_os("CARGO_HOME").map_or_else(|| home.join(".cargo"), PathBuf::from);
    let rustup =
        std::env::var_os("RUSTUP_HOME").map_or_else(|| home.join(".rustup"), PathBuf::from);
    vec![("CARGO_HOME", cargo), ("RUSTUP_HOME", rustup)]
}

#[test]
fn cargo_build_of_a_sys_crate_with_cc_compiles_remotely() {
    let tmp = TempDir::new("tools-cargo");
    let dir = tmp.path();
    let krate = dir.join("hgtools-sys");
    write_project(&krate.join("c"));
    std::fs::create_dir_all(krate.join("src")).expect("mkdir src");
    std::fs::write(
        krate.join("Cargo.toml"),
        "[package]\nname = \"hgtools-sys\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[build-dependencies]\ncc = \"1\"\n\n[workspace]\n",
    )
    .expect("write Cargo.toml");
    let files: Vec<String> = FILES.iter().map(|f| format!("\"c/{f}.c\"")).collect();
    std::fs::write(
        krate.join("build.rs"),
        format!(
            "fn main() {{\n    cc::Build::new().files([{}]).include(\"c/include\").compile(\"hgtools\");\n}}\n",
            files.join(", ")
        ),
    )
    .expect("write build.rs");
    std::fs::write(
        krate.join("src/lib.rs"),
        "//! Test crate.\nextern \"C\" {\n    /// From alpha.c.\n    pub fn alpha_value(x: i32) -> i32;\n}\n",
    )
    .expect("write lib.rs");
    let (coord, _w1, _w2) = farm(dir);
    let n = FILES.len();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let target = dir.join("target");
    let build = |cc: Option<String>| {
        let mut c = Command::new(&cargo);
        with_farm_env(&mut c, dir, &coord.grpc)
            .current_dir(&krate)
            .args(["build", "--offline", "--target-dir"])
            .arg(&target)
            .envs(tool_homes())
            .env_remove("CC")
            .env_remove("CFLAGS")
            .env_remove("CC_KNOWN_WRAPPER_CUSTOM")
            // The `cc` crate would put a rustc wrapper (sccache) in front of the compiler.
            .env_remove("RUSTC_WRAPPER");
        if let Some(cc) = cc {
            c.env("CC", cc);
        }
        ok("cargo build", run(&mut c))
    };
    build(None);
    let out_dirs = target.join("debug/build");
    let plain = objects(&out_dirs);
    let before = tasks_done(&coord.http);
    // The `cc` crate reruns the build script when CC changes; it then probes the compiler
    // family with `hgbuild -E <file>`.
    let err = build(Some(format!("{HGBUILD} cc")));
    assert!(
        !err.contains("Compiler family detection failed"),
        "cargo warned:\n{err}"
    );
    // At least the crate's sources (the `cc` crate also compiles a probe of its own).
    let remote = tasks_done(&coord.http) - before;
    assert!(remote >= n as u64, "{remote} remote compiles:\n{err}");
    assert_same_objects(&plain, &objects(&out_dirs), n);
}
