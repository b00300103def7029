//! gcc and g++: debug info, depfiles, paths, prefix maps, diagnostics, pragmas, timestamps.

use super::common::*;

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
