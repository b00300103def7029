//! Hot paths of the wrapper: classifying a command line, and preparing a worker command from a
//! preprocessed text. Run: `cargo bench -p hybridgrid-compiler --bench parse`.

// criterion_group! generates an undocumented function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use hybridgrid_compiler::{Invocation, parse};
use std::ffi::OsString;
use std::hint::black_box;

fn cmake_line() -> Vec<OsString> {
    [
        "-DHAVE_CONFIG_H",
        "-DNDEBUG",
        "-D_GNU_SOURCE",
        "-I/home/u/proj/build",
        "-I/home/u/proj/include",
        "-isystem",
        "/opt/deps/include",
        "-O2",
        "-g",
        "-fPIC",
        "-fvisibility=hidden",
        "-Wall",
        "-Wextra",
        "-Wno-unused-parameter",
        "-Werror=implicit-function-declaration",
        "-std=gnu11",
        "-march=x86-64-v2",
        "-fstack-protector-strong",
        "-fdiagnostics-color=always",
        "-MD",
        "-MT",
        "src/CMakeFiles/core.dir/io/reader.c.o",
        "-MF",
        "src/CMakeFiles/core.dir/io/reader.c.o.d",
        "-o",
        "src/CMakeFiles/core.dir/io/reader.c.o",
        "-c",
        "/home/u/proj/src/io/reader.c",
    ]
    .iter()
    .map(OsString::from)
    .collect()
}

fn benches(c: &mut Criterion) {
    let args = cmake_line();
    c.bench_function("parse_cmake_line_27_args", |b| {
        b.iter(|| parse(black_box(&args)))
    });
    let Invocation::Distributable(job) = parse(&args) else {
        panic!("bench line must be distributable")
    };
    c.bench_function("preprocess_args", |b| {
        b.iter(|| black_box(&job).preprocess_args())
    });
    // A directives-only text of about 1 MiB: markers, built-in defines, code.
    let mut text =
        b"# 0 \"/home/u/proj/src/io/reader.c\"\n# 1 \"/home/u/proj/build//\"\n# 0 \"<built-in>\"\n"
            .to_vec();
    for i in 0..400 {
        text.extend_from_slice(format!("#define __BUILTIN_{i} {i}\n").as_bytes());
    }
    text.extend_from_slice(b"# 0 \"<command-line>\"\n");
    while text.len() < 1 << 20 {
        text.extend_from_slice(b"# 12 \"/usr/include/stdio.h\" 3 4\nextern int printf (const char *__restrict __format, ...);\n");
    }
    let worker = std::path::Path::new("/var/lib/hg/worker/job-1");
    c.bench_function("remote_command_1MiB", |b| {
        b.iter(|| black_box(&job).remote_command(black_box(&text), worker))
    });
    // Real text: Lua's lvm.c as the client ships it (`gcc -E -fdirectives-only`), checked as the
    // client checks it before shipping (the worker scans it again in `remote_command`).
    let lvm = lua_dir().join("lvm.c");
    let lua_job = match hybridgrid_compiler::parse(&[
        "-O2".into(),
        "-g".into(),
        "-DLUA_USE_LINUX".into(),
        "-c".into(),
        lvm.clone().into_os_string(),
        "-o".into(),
        "lvm.o".into(),
    ]) {
        hybridgrid_compiler::Invocation::Distributable(job) => job,
        other => panic!("lvm.c compile is not distributable: {other:?}"),
    };
    let pre = std::process::Command::new("gcc")
        .args(lua_job.preprocess_args())
        .output()
        .expect("gcc -E");
    assert!(pre.status.success(), "gcc -E lvm.c failed");
    c.bench_function("check_text_lua_lvm", |b| {
        b.iter(|| black_box(&lua_job).check_text(black_box(&pre.stdout)))
    });
}

/// The Lua 5.4 sources of the `lua-src` dev-dependency, found through `cargo metadata`.
fn lua_dir() -> std::path::PathBuf {
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata");
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).expect("metadata json");
    let manifest = meta["packages"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "lua-src"))
        .and_then(|p| p["manifest_path"].as_str())
        .expect("lua-src in cargo metadata");
    let dir = std::path::Path::new(manifest)
        .parent()
        .expect("lua-src directory")
        .to_owned();
    std::fs::read_dir(&dir)
        .expect("lua-src directory")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("lua-5.4"))
        })
        .expect("lua-5.4 sources")
}

criterion_group!(g, benches);
criterion_main!(g);
