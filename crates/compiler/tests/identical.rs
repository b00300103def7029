//! With the real `gcc`/`g++` and `clang`/`clang++` on this machine: a plain compile and
//! *preprocess locally, compile in another directory* give byte-identical objects and depfiles.
//! (clang comes from `scripts/ci-deps/farm-tools.sh`; a missing clang fails the clang tests.)

#![allow(clippy::unwrap_used)]

use hybridgrid_compiler::{CompileJob, CompilerKind, Invocation, parse_for};
use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

const HEADER: &str = r#"#ifndef H_H
#define H_H
#define SQ(x) ((x) * (x))
#define LOG(fmt, ...) printf("%s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__)
static inline int twice(int a) { return SQ(a) + SQ(a + 1); }
#endif
"#;

const C_SRC: &str = r#"#include "h.h"
#include <stdio.h>
#include <assert.h>
#ifndef VAL
#define VAL 2
#endif
struct point { int x, y; };
int g(int x) {
    struct point p = { SQ(x), twice(x) };
    LOG("%d %d", p.x, p.y);
    assert(x != 42);
    return p.x * VAL + p.y + __LINE__;
}
const char *where(void) { return __FILE__; }
"#;

const CXX_SRC: &str = r#"#include "h.h"
#include <string>
#include <vector>
#include <map>
namespace {
std::map<std::string, int> table = {{"a", SQ(2)}, {"b", twice(3)}};
template <typename T> T sum(const std::vector<T>& v) { T s{}; for (auto& x : v) s += x; return s; }
}
int lookup(const std::string& k) { auto it = table.find(k); return it == table.end() ? -1 : it->second; }
double avg(const std::vector<double>& v) { return v.empty() ? 0 : sum(v) / v.size(); }
const char *file() { return __FILE__; }
"#;

struct Case {
    driver: &'static str,
    /// Files under the project root.
    files: Vec<(&'static str, &'static str)>,
    /// Client working directory, relative to the project root.
    cwd: &'static str,
    /// Arguments; `{root}` is replaced by the absolute project root.
    args: Vec<&'static str>,
    /// Client environment (forwarded to the worker as `CLIENT_ENV` says).
    env: &'static [(&'static str, &'static str)],
}

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compiler");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn stderr_of(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().expect("spawn compiler");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stderr
}

/// Diagnostics without GCC's source excerpt lines (`    5 | int x;` and `      |     ^~~`).
fn without_excerpts(stderr: &[u8]) -> String {
    String::from_utf8_lossy(stderr)
        .lines()
        .filter(|l| {
            let t = l.trim_start();
            let digits = t.chars().take_while(|c| c.is_ascii_digit()).count();
            !t[digits..].trim_start().starts_with('|')
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Runs the case both ways and returns the job (for further checks).
fn check(case: Case) -> CompileJob {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let root = base.join("client/project");
    for (name, text) in &case.files {
        let p = root.join(name);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
    let cwd = root.join(case.cwd);
    std::fs::create_dir_all(&cwd).unwrap();
    for d in ["obj", "deps"] {
        std::fs::create_dir_all(cwd.join(d)).unwrap();
    }
    let root_s = root.to_str().unwrap();
    let args: Vec<OsString> = case
        .args
        .iter()
        .map(|a| OsString::from(a.replace("{root}", root_s)))
        .collect();
    // The worker directory is reached through a symlink: `PWD` keeps GCC on the path as given.
    std::fs::create_dir_all(base.join("worker-real")).unwrap();
    std::os::unix::fs::symlink(base.join("worker-real"), base.join("worker")).unwrap();
    both_ways(
        case.driver,
        &cwd,
        &args,
        &base.join("worker/job-1"),
        case.env,
    )
}

/// Compiles `args` in `cwd` plainly, then preprocessed locally and compiled remotely in
/// `worker` (created; must be empty), and asserts identical objects, depfiles and diagnostics.
fn both_ways(
    driver: &str,
    cwd: &Path,
    args: &[OsString],
    worker: &Path,
    env: &[(&str, &str)],
) -> CompileJob {
    let forwarded: Vec<(&str, &str)> = env
        .iter()
        .filter(|(k, _)| hybridgrid_compiler::CLIENT_ENV.contains(k))
        .copied()
        .collect();
    let kind = CompilerKind::detect(Path::new(driver)).unwrap();
    let job = match parse_for(kind, args) {
        Invocation::Distributable(j) => j,
        Invocation::Local(r) => panic!("{args:?} ran locally: {r:?}"),
    };
    let obj = cwd.join(job.output());
    let dep = job.depfile().map(|d| cwd.join(&d.path));

    // 1. Plain local build.
    let plain_err = stderr_of(
        Command::new(driver)
            .args(args)
            .current_dir(cwd)
            .envs(env.iter().copied()),
    );
    let plain_obj = read(&obj);
    let plain_dep = dep.as_ref().map(|d| read(d));
    std::fs::remove_file(&obj).unwrap();
    if let Some(d) = &dep {
        std::fs::remove_file(d).unwrap();
    }

    // 2. Preprocess on the client: same depfile, and no object.
    let pre = Command::new(driver)
        .envs(env.iter().copied())
        .args(job.preprocess_args())
        .current_dir(cwd)
        .output()
        .unwrap();
    assert!(
        pre.status.success(),
        "preprocess failed: {}",
        String::from_utf8_lossy(&pre.stderr)
    );
    let text = job
        .ship_text(pre.stdout.clone(), &std::fs::canonicalize(cwd).unwrap())
        .unwrap();
    assert!(!obj.exists(), "preprocessing wrote the object");
    if let (Some(d), Some(want)) = (&dep, &plain_dep) {
        let got = read(d);
        assert!(
            &got == want,
            "depfile differs:\n--- plain\n{}\n--- preprocess\n{}",
            String::from_utf8_lossy(want),
            String::from_utf8_lossy(&got)
        );
    }

    // 3. Exact remote compile in a directory unrelated to the client's.
    std::fs::create_dir_all(worker).unwrap();
    let cmd = job.remote_command(&text, worker).unwrap();
    cmd.write_input().unwrap();
    let out = Command::new(driver)
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .envs(cmd.env.iter().map(|(k, v)| (k, v)))
        .envs(forwarded.iter().copied())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "remote {:?} failed: {}",
        cmd.args,
        String::from_utf8_lossy(&out.stderr)
    );
    // Diagnostics: the local preprocessing reports the directive warnings, the worker the rest,
    // with the client's file names and line:column; only the quoted source excerpts are missing.
    let split = [pre.stderr.clone(), out.stderr.clone()].concat();
    assert_eq!(
        without_excerpts(&split),
        without_excerpts(&plain_err),
        "diagnostics differ"
    );
    let remote_obj = read(&cmd.output);
    assert!(
        remote_obj == plain_obj,
        "object differs for {args:?} (remote args {:?}); compare with `cmp`: plain {} bytes, remote {} bytes",
        cmd.args,
        plain_obj.len(),
        remote_obj.len()
    );

    // 4. Simple remote compile (`remote_args`): exact whenever there is no debug info.
    if !job.debug_info() && !job.is_clang() {
        let w2 = worker.join("simple");
        std::fs::create_dir_all(&w2).unwrap();
        std::fs::write(w2.join("in.i"), &text).unwrap();
        run(Command::new(driver)
            .envs(forwarded.iter().copied())
            .args(job.remote_args("in.i", "out.o"))
            .current_dir(&w2));
        assert!(
            read(&w2.join("out.o")) == plain_obj,
            "remote_args object differs"
        );
    }
    job
}

fn c_files() -> Vec<(&'static str, &'static str)> {
    vec![("inc/h.h", HEADER), ("src/foo.c", C_SRC)]
}

#[test]
fn c_debug_optimised_with_depfile() {
    let job = check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "",
        args: vec![
            "-c",
            "-O2",
            "-g",
            "-Iinc",
            "-DVAL=3",
            "-MD",
            "-o",
            "obj/foo.o",
            "src/foo.c",
        ],
        env: &[],
    });
    assert!(job.debug_info());
}

#[test]
fn c_no_debug_mmd_mf_mp() {
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "",
        args: vec![
            "-c",
            "src/foo.c",
            "-O2",
            "-Wall",
            "-Iinc",
            "-MMD",
            "-MF",
            "deps/foo.d",
            "-MP",
            "-ofoo-nodebug.o",
        ],
        env: &[],
    });
}

#[test]
fn c_default_output_and_target_quoting() {
    check(Case {
        driver: "gcc",
        files: vec![("inc/h.h", HEADER), ("src/foo.c", C_SRC)],
        cwd: "",
        args: vec![
            "-c",
            "-g",
            "-O1",
            "-Iinc",
            "-MD",
            "src/foo.c",
            "-o",
            "obj/o$x.o",
        ],
        env: &[],
    });
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "",
        args: vec!["-c", "-g", "-Iinc", "-MD", "src/foo.c"],
        env: &[],
    });
}

#[test]
fn c_working_directory_with_quote_backslash_and_space() {
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "we\"ird \\ dir",
        args: vec![
            "-c",
            "-g",
            "-O2",
            "-I../inc",
            "-MD",
            "../src/foo.c",
            "-o",
            "obj/foo.o",
        ],
        env: &[],
    });
}

#[test]
fn c_out_of_tree_build_with_parent_dirs() {
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "build/release",
        args: vec![
            "-c",
            "-O2",
            "-g",
            "-I../../inc",
            "-MD",
            "-MT",
            "obj/foo.o",
            "../../src/foo.c",
            "-o",
            "obj/foo.o",
        ],
        env: &[],
    });
}

#[test]
fn c_absolute_paths_cmake_style() {
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "build",
        args: vec![
            "-c",
            "-O2",
            "-g",
            "-I{root}/inc",
            "-fPIC",
            "-MD",
            "-MT",
            "obj/foo.o",
            "-MF",
            "obj/foo.o.d",
            "-o",
            "obj/foo.o",
            "{root}/src/foo.c",
        ],
        env: &[],
    });
}

#[test]
fn c_user_prefix_maps() {
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "",
        args: vec![
            "-c",
            "-O2",
            "-g",
            "-Iinc",
            "-fdebug-prefix-map={root}=/buildroot",
            "src/foo.c",
            "-o",
            "obj/foo.o",
        ],
        env: &[],
    });
    check(Case {
        driver: "gcc",
        files: c_files(),
        cwd: "build",
        args: vec![
            "-c",
            "-g",
            "-I{root}/inc",
            "-ffile-prefix-map={root}=.",
            "{root}/src/foo.c",
        ],
        env: &[],
    });
}

#[test]
fn c_kernel_style_depfile_and_forced_include() {
    check(Case {
        driver: "gcc",
        files: vec![
            ("inc/h.h", HEADER),
            ("src/foo.c", C_SRC),
            (
                "inc/config.h",
                "#define CONFIG_FOO 1\n#define VAL CONFIG_FOO\n",
            ),
            ("sys/sys.h", "typedef int sys_t;\n"),
        ],
        cwd: "",
        args: vec![
            "-Wp,-MD,obj/.foo.o.d",
            "-nostdinc",
            "-isystem",
            "/usr/lib/gcc/x86_64-linux-gnu/12/include",
            "-isystem",
            "/usr/include",
            "-isystem",
            "/usr/include/x86_64-linux-gnu",
            "-include",
            "inc/config.h",
            "-Iinc",
            "-isystem",
            "sys",
            "-Wp,-D_FORTIFY_SOURCE=2",
            "-O2",
            "-g",
            "-fno-common",
            "-fno-PIE",
            "-std=gnu11",
            "-c",
            "-o",
            "obj/foo.o",
            "src/foo.c",
        ],
        env: &[],
    });
}

#[test]
fn cxx_debug_templates_anonymous_namespace() {
    check(Case {
        driver: "g++",
        files: vec![("inc/h.h", HEADER), ("src/foo.cc", CXX_SRC)],
        cwd: "",
        args: vec![
            "-c",
            "-std=c++17",
            "-O1",
            "-g",
            "-fPIC",
            "-Iinc",
            "-MD",
            "src/foo.cc",
            "-o",
            "obj/foo.o",
        ],
        env: &[],
    });
}

#[test]
fn cxx_no_debug_and_cxx_driver_on_dot_c() {
    check(Case {
        driver: "g++",
        files: vec![("inc/h.h", HEADER), ("src/foo.cc", CXX_SRC)],
        cwd: "",
        args: vec![
            "-c",
            "-O2",
            "-Iinc",
            "src/foo.cc",
            "-o",
            "obj/foo.o",
            "-MMD",
        ],
        env: &[],
    });
    // g++ compiles `.c` as C++.
    let job = check(Case {
        driver: "g++",
        files: vec![("inc/h.h", HEADER), ("src/foo.c", CXX_SRC)],
        cwd: "",
        args: vec!["-c", "-g", "-Iinc", "src/foo.c"],
        env: &[],
    });
    assert_eq!(job.language(), hybridgrid_compiler::Language::Cxx);
}

#[test]
fn c_explicit_language_on_odd_extension() {
    check(Case {
        driver: "gcc",
        files: vec![("inc/h.h", HEADER), ("gen/foo.inc", C_SRC)],
        cwd: "",
        args: vec![
            "-x",
            "c",
            "-c",
            "-g",
            "-O2",
            "-Iinc",
            "-MD",
            "gen/foo.inc",
            "-o",
            "obj/gen.o",
        ],
        env: &[],
    });
}

const WARN_SRC: &str = r#"#include "h.h"
#warning "generated file is stale"
#if UNDEFINED_THING
#endif
int g(int x) { int unused; return twice(x) + SQ(x) + 1; }
"#;

#[test]
fn c_diagnostics_are_reported_once_with_client_names() {
    check(Case {
        driver: "gcc",
        files: vec![("inc/h.h", HEADER), ("src/warn.c", WARN_SRC)],
        cwd: "",
        args: vec![
            "-c",
            "-g",
            "-O2",
            "-Wall",
            "-Wundef",
            "-Iinc",
            "src/warn.c",
            "-o",
            "obj/w.o",
        ],
        env: &[],
    });
    check(Case {
        driver: "gcc",
        files: vec![("inc/h.h", HEADER), ("src/warn.c", WARN_SRC)],
        cwd: "build",
        args: vec!["-c", "-Wall", "-I{root}/inc", "{root}/src/warn.c"],
        env: &[],
    });
}

const PRAGMA_H: &str = r#"#pragma once
#pragma GCC system_header
#pragma GCC visibility push(hidden)
int hidden_fn(void);
#pragma GCC visibility pop
static const int level_in_header = __INCLUDE_LEVEL__;
static inline const char *header_file(void) { return __FILE__; }
"#;

const PRAGMA_SRC: &str = r#"#include "once.h"
#include "once.h"
#pragma GCC dependency "once.h"
#pragma pack(push, 1)
struct packed { char a; int b; };
#pragma pack(pop)
_Pragma("GCC diagnostic push")
_Pragma("GCC diagnostic ignored \"-Wunused-variable\"")
int f(void) {
    int unused;
    struct packed v = { 1, 2 };
    return v.b + hidden_fn() + __COUNTER__ + __COUNTER__ + __INCLUDE_LEVEL__ + level_in_header;
}
_Pragma("GCC diagnostic pop")
const char *names[] = { __FILE__, __BASE_FILE__, __FILE_NAME__ };
const char *hf(void) { return header_file(); }
"#;

#[test]
fn c_pragmas_and_special_macros() {
    check(Case {
        driver: "gcc",
        files: vec![("inc/once.h", PRAGMA_H), ("src/p.c", PRAGMA_SRC)],
        cwd: "",
        args: vec![
            "-c", "-g", "-O2", "-Wall", "-Iinc", "src/p.c", "-o", "obj/p.o",
        ],
        env: &[],
    });
    check(Case {
        driver: "gcc",
        files: vec![("inc/once.h", PRAGMA_H), ("src/p.c", PRAGMA_SRC)],
        cwd: "b",
        args: vec!["-c", "-g", "-Wall", "-I{root}/inc", "{root}/src/p.c"],
        env: &[],
    });
}

const DATE_SRC: &str = r#"const char *built = __DATE__ " " __TIME__;
#define STAMP(x) x __DATE__
const char *stamp = STAMP("v1 ");
"#;

#[test]
fn c_reproducible_timestamps_with_source_date_epoch() {
    check(Case {
        driver: "gcc",
        files: vec![("src/date.c", DATE_SRC)],
        cwd: "",
        args: vec!["-c", "-O2", "-g", "src/date.c", "-o", "obj/date.o"],
        env: &[("SOURCE_DATE_EPOCH", "1700000000")],
    });
}

/// Negative controls: the comparison does see the differences the exact path avoids.
#[test]
fn differences_are_detected() {
    let tmp = tempfile::tempdir().unwrap();
    let root = std::fs::canonicalize(tmp.path()).unwrap();
    std::fs::create_dir_all(root.join("inc")).unwrap();
    std::fs::write(root.join("inc/h.h"), HEADER).unwrap();
    std::fs::write(root.join("foo.c"), C_SRC).unwrap();
    let args: Vec<OsString> = ["-c", "-O2", "-g", "-Iinc", "foo.c", "-o", "plain.o"]
        .iter()
        .map(OsString::from)
        .collect();
    let Invocation::Distributable(job) = parse_for(CompilerKind::Gcc, &args) else {
        panic!()
    };
    run(Command::new("gcc").args(&args).current_dir(&root));
    let plain = read(&root.join("plain.o"));
    let text = run(Command::new("gcc")
        .args(job.preprocess_args())
        .current_dir(&root));

    // `remote_args` with debug info: DW_AT_producer also lists -fdirectives-only.
    let w = root.join("w");
    std::fs::create_dir_all(&w).unwrap();
    std::fs::write(w.join("in.i"), &text).unwrap();
    run(Command::new("gcc")
        .args(job.remote_args("in.i", "out.o"))
        .current_dir(&w));
    let simple = read(&w.join("out.o"));
    assert_ne!(simple, plain);
    let needle = b"-fdirectives-only";
    assert!(simple.windows(needle.len()).any(|w| w == needle));

    // The exact command without its working-directory map: DW_AT_comp_dir is the worker's.
    let cmd = job.remote_command(&text, &root.join("x")).unwrap();
    cmd.write_input().unwrap();
    let cwd_map = format!("-fdebug-prefix-map={}=", cmd.cwd.display());
    let args: Vec<&OsString> = cmd
        .args
        .iter()
        .filter(|a| !a.to_string_lossy().starts_with(&cwd_map))
        .collect();
    assert_eq!(args.len() + 1, cmd.args.len());
    run(Command::new("gcc")
        .args(args)
        .current_dir(&cmd.cwd)
        .envs(cmd.env.clone()));
    assert_ne!(read(&cmd.output), plain);

    // With the map, identical.
    run(Command::new("gcc")
        .args(&cmd.args)
        .current_dir(&cmd.cwd)
        .envs(cmd.env.clone()));
    assert_eq!(read(&cmd.output), plain);
}

/// Where cargo unpacked the `lua-src` dev-dependency's Lua 5.4 sources.
fn lua_sources() -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let meta: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lua-src" && p["version"].as_str().unwrap().starts_with("548."))
        .expect("lua-src 548 in cargo metadata")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = Path::new(&manifest).parent().unwrap().to_owned();
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lua-5.4")
        })
        .expect("lua-5.4 sources")
}

/// A real C code base: every Lua 5.4 source, out-of-tree (`../src/x.c`), `-O2 -g -MD`.
#[test]
fn lua_objects_are_identical() {
    let src = lua_sources();
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let client = base.join("client/lua");
    std::fs::create_dir_all(client.join("src")).unwrap();
    std::fs::create_dir_all(client.join("build/obj")).unwrap();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".c") || name.ends_with(".h") {
            std::fs::copy(&path, client.join("src").join(&name)).unwrap();
            if let Some(stem) = name.strip_suffix(".c") {
                sources.push(stem.to_owned());
            }
        }
    }
    sources.sort();
    assert!(sources.len() >= 30, "found only {sources:?}");
    for (n, stem) in sources.iter().enumerate() {
        let args: Vec<OsString> = [
            "-c",
            "-O2",
            "-g",
            "-Wall",
            "-std=gnu99",
            "-DLUA_COMPAT_5_3",
            "-DLUA_USE_LINUX",
            "-I../src",
            "-MD",
            "-o",
            &format!("obj/{stem}.o"),
            &format!("../src/{stem}.c"),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        both_ways(
            "gcc",
            &client.join("build"),
            &args,
            &base.join(format!("worker/{n}")),
            &[],
        );
    }
}

/// Every Lua 5.4 source compiled for `lua_objects_are_identical`-style checks with `driver`.
fn lua_both_ways(driver: &str, flags: &[&str]) {
    let src = lua_sources();
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let client = base.join("client/lua");
    std::fs::create_dir_all(client.join("src")).unwrap();
    std::fs::create_dir_all(client.join("build/obj")).unwrap();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".c") || name.ends_with(".h") {
            std::fs::copy(&path, client.join("src").join(&name)).unwrap();
            if let Some(stem) = name.strip_suffix(".c") {
                sources.push(stem.to_owned());
            }
        }
    }
    sources.sort();
    assert!(sources.len() >= 30, "found only {sources:?}");
    let root = client.to_string_lossy().into_owned();
    for (n, stem) in sources.iter().enumerate() {
        // Half the sources by absolute path (CMake style), half out-of-tree relative.
        let source = if n % 2 == 0 {
            format!("{root}/src/{stem}.c")
        } else {
            format!("../src/{stem}.c")
        };
        let mut args: Vec<OsString> = flags.iter().map(OsString::from).collect();
        args.extend(
            ["-c", "-MD", "-o", &format!("obj/{stem}.o"), &source]
                .iter()
                .map(OsString::from),
        );
        both_ways(
            driver,
            &client.join("build"),
            &args,
            &base.join(format!("worker/{n}")),
            &[],
        );
    }
}

/// clang through `-frewrite-includes`: every Lua source, DWARF 4 debug info and none.
#[test]
fn clang_lua_objects_are_identical() {
    let flags = [
        "-O2",
        "-Wall",
        "-std=gnu99",
        "-DLUA_COMPAT_5_3",
        "-DLUA_USE_LINUX",
        "-I../src",
    ];
    lua_both_ways("clang", &[&flags[..], &["-gdwarf-4"]].concat());
    lua_both_ways("clang", &flags);
}

#[test]
fn clang_defines_undefines_and_cxx() {
    for args in [
        vec![
            "-c",
            "-O2",
            "-gdwarf-4",
            "-Iinc",
            "-DVAL=3",
            "-UVAL",
            "-D",
            "VAL=5",
            "-DEMPTY=",
            "-DF(a)=((a)+1)",
            "-DONE",
            "-MD",
            "src/foo.c",
            "-o",
            "obj/foo.o",
        ],
        vec!["-c", "-O1", "-Iinc", "src/foo.c", "-o", "obj/foo.o"],
    ] {
        let job = check(Case {
            driver: "clang",
            files: c_files(),
            cwd: ".",
            args,
            env: &[],
        });
        assert!(job.is_clang());
    }
    check(Case {
        driver: "clang++",
        files: vec![("inc/h.h", HEADER), ("src/foo.cc", CXX_SRC)],
        cwd: "build",
        args: vec![
            "-c",
            "-O2",
            "-gdwarf-4",
            "-I../inc",
            "-std=c++17",
            "../src/foo.cc",
            "-o",
            "obj/foo.o",
        ],
        env: &[],
    });
}

#[test]
fn clang_dwarf5_and_what_the_text_cannot_carry_run_locally() {
    let local = |args: &[&str]| {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        match parse_for(CompilerKind::Clang, &args) {
            Invocation::Local(r) => r,
            Invocation::Distributable(_) => panic!("{args:?} was distributable"),
        }
    };
    use hybridgrid_compiler::LocalReason::{DebugFileChecksums, UnsupportedFlag};
    assert_eq!(local(&["-c", "-g", "a.c"]), DebugFileChecksums);
    assert_eq!(
        local(&["-c", "-gdwarf-4", "-gdwarf-5", "a.c"]),
        DebugFileChecksums
    );
    assert_eq!(
        local(&["-c", "-gline-tables-only", "a.c"]),
        DebugFileChecksums
    );
    assert_eq!(
        local(&["-c", "-fdebug-default-version=5", "-gdwarf", "a.c"]),
        DebugFileChecksums
    );
    for flag in ["-imacros", "-A", "-include"] {
        assert!(matches!(
            local(&["-c", flag, "x", "a.c"]),
            UnsupportedFlag(_)
        ));
    }
    for flag in ["-CC", "-grecord-command-line", "-Weverything", "-Wp,-DX"] {
        assert!(
            matches!(local(&["-c", flag, "a.c"]), UnsupportedFlag(_)),
            "{flag}"
        );
    }
    assert!(matches!(
        local(&["-c", "-DX=1\n2", "a.c"]),
        UnsupportedFlag(_)
    ));
    // The same flags are fine for GCC, and DWARF 4 or no debug info for clang.
    let args: Vec<OsString> = ["-c", "-g", "-imacros", "x", "a.c"]
        .iter()
        .map(OsString::from)
        .collect();
    assert!(matches!(
        parse_for(CompilerKind::Gcc, &args),
        Invocation::Distributable(_)
    ));
    for ok in [
        &["-c", "-g", "-gdwarf-4", "a.c"][..],
        &["-c", "-g", "-g0", "a.c"],
    ] {
        let args: Vec<OsString> = ok.iter().map(OsString::from).collect();
        assert!(
            matches!(
                parse_for(CompilerKind::Clang, &args),
                Invocation::Distributable(_)
            ),
            "{ok:?}"
        );
    }
}

/// clang names the compile unit after the first spelling of the source's directory it met: an
/// include directory naming it lends its spelling (absolute, `./src/`, `inc/../src`, `.`).
#[test]
fn clang_compile_unit_names_follow_include_dirs() {
    let cases: &[(&str, &[&str])] = &[
        (".", &["-Iinc", "-I{root}/src", "src/foo.c"]),
        (".", &["-Iinc", "-I./src/", "src/foo.c"]),
        (
            ".",
            &["-Iinc", "-isystem", "{root}/inc/../src", "{root}/src/foo.c"],
        ),
        (
            ".",
            &[
                "-Iinc",
                "-iquote",
                "src",
                "-I/nonexistent",
                "{root}/src/foo.c",
            ],
        ),
        ("src", &["-I../inc", "-I.", "./foo.c"]),
        (
            "build",
            &["-I../inc", "-I../src", "-I{root}/src", "{root}/src/foo.c"],
        ),
    ];
    for (cwd, args) in cases {
        let mut all = vec!["-c", "-O1", "-gdwarf-4"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "obj/foo.o"]);
        check(Case {
            driver: "clang",
            files: c_files(),
            cwd,
            args: all,
            env: &[],
        });
    }
}
