//! clang through `-frewrite-includes`.

use super::common::*;
use super::lua::*;

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
