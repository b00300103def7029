//! Table-driven tests of the argument table.

use super::*;
use std::ffi::OsString;

fn os(args: &[&str]) -> Vec<OsString> {
    args.iter().map(OsString::from).collect()
}

fn job(args: &[&str]) -> CompileJob {
    match parse(&os(args)) {
        Invocation::Distributable(j) => j,
        Invocation::Local(r) => panic!("{args:?} ran locally: {r:?}"),
    }
}

fn local(args: &[&str]) -> LocalReason {
    match parse(&os(args)) {
        Invocation::Distributable(j) => panic!("{args:?} was distributable: {j:?}"),
        Invocation::Local(r) => r,
    }
}

fn strs(v: &[OsString]) -> Vec<String> {
    v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
}

#[test]
fn local_reasons() {
    use LocalReason::*;
    let flag = |s: &str| UnsupportedFlag(s.to_owned());
    let cases: &[(&[&str], LocalReason)] = &[
        (&["foo.c", "-o", "foo"], NotCompileOnly),
        (&["foo.o", "bar.o", "-o", "app"], NotCompileOnly),
        (&["-S", "foo.c"], NotCompileOnly),
        (&["-c", "-S", "foo.c"], NotCompileOnly),
        (&["-c", "-fsyntax-only", "foo.c"], NotCompileOnly),
        (&["-E", "foo.c"], PreprocessOnly),
        (&["-c", "-E", "foo.c"], PreprocessOnly),
        (&["-M", "foo.c"], DepsOnly),
        (&["-c", "-MM", "foo.c"], DepsOnly),
        (&["-c", "a.c", "b.c"], MultipleSources),
        (&["-c", "a.c", "b.o"], MultipleSources),
        (&["-c"], NoSource),
        (&["-c", "-O2", "-Iinc"], NoSource),
        (&["-c", "-"], StdinSource),
        (&["-c", "-x", "c", "-"], StdinSource),
        (&["-c", "foo.c", "-o", "-"], OutputToStdout),
        (&["-c", "foo.s"], UnsupportedLanguage("foo.s".into())),
        (&["-c", "foo.S"], UnsupportedLanguage("foo.S".into())),
        (&["-c", "foo.m"], UnsupportedLanguage("foo.m".into())),
        (&["-c", "foo.i"], UnsupportedLanguage("foo.i".into())),
        (&["-c", "foo.h"], UnsupportedLanguage("foo.h".into())),
        (&["-c", "foo"], UnsupportedLanguage("foo".into())),
        (
            &["-c", "-x", "assembler-with-cpp", "foo.c"],
            UnsupportedLanguage("assembler-with-cpp".into()),
        ),
        (
            &["-c", "-xobjective-c", "foo.c"],
            UnsupportedLanguage("objective-c".into()),
        ),
        (
            &["-c", "-x", "c-header", "foo.h"],
            UnsupportedLanguage("c-header".into()),
        ),
        (&["-c", "@args.rsp"], flag("@args.rsp")),
        (&["-c", "foo.c", "-include", "@x"], flag("-include")),
        (
            &["-c", "foo.c", "-fprofile-use=/p"],
            flag("-fprofile-use=/p"),
        ),
        (&["-c", "foo.c", "-fprofile-use"], flag("-fprofile-use")),
        (
            &["-c", "foo.c", "-fprofile-generate"],
            flag("-fprofile-generate"),
        ),
        (&["-c", "foo.c", "-fprofile-arcs"], flag("-fprofile-arcs")),
        (&["-c", "foo.c", "--coverage"], flag("--coverage")),
        (&["-c", "foo.c", "-save-temps"], flag("-save-temps")),
        (&["-c", "foo.c", "-save-temps=obj"], flag("-save-temps=obj")),
        (
            &["-c", "foo.c", "-frecord-gcc-switches"],
            flag("-frecord-gcc-switches"),
        ),
        (&["-c", "foo.c", "-specs=x.specs"], flag("-specs=x.specs")),
        (&["-c", "foo.c", "-wrapper", "gdb"], flag("-wrapper")),
        (&["-c", "foo.c", "-fplugin=foo.so"], flag("-fplugin=foo.so")),
        (
            &["-c", "foo.c", "-fplugin-arg-foo-x=1"],
            flag("-fplugin-arg-foo-x=1"),
        ),
        (&["-c", "foo.c", "-B/opt/bin"], flag("-B/opt/bin")),
        (&["-c", "foo.c", "-B", "/opt/bin"], flag("-B")),
        (
            &["-c", "foo.c", "-include-pch", "x.pch"],
            flag("-include-pch"),
        ),
        (
            &["-c", "foo.c", "-fsanitize-blacklist=b.txt"],
            flag("-fsanitize-blacklist=b.txt"),
        ),
        (
            &["-c", "foo.c", "-fsanitize-ignorelist=b.txt"],
            flag("-fsanitize-ignorelist=b.txt"),
        ),
        (&["-c", "foo.c", "-gsplit-dwarf"], flag("-gsplit-dwarf")),
        (&["-c", "foo.c", "-g3"], flag("-g3")),
        (&["-c", "foo.c", "-ggdb3"], flag("-g3")),
        (&["-c", "foo.c", "-fdump-tree-all"], flag("-fdump-tree-all")),
        (&["-c", "foo.c", "-fstack-usage"], flag("-fstack-usage")),
        (&["-c", "foo.c", "-P"], flag("-P")),
        (
            &["-c", "foo.c", "-fdirectives-only"],
            flag("-fdirectives-only"),
        ),
        (&["-c", "foo.c", "-fmodules-ts"], flag("-fmodules-ts")),
        (&["-c", "foo.c", "-Wp,-MF,x.d"], flag("-Wp,-MF,x.d")),
        (&["-c", "foo.c", "-Xpreprocessor", "-M"], flag("-M")),
        (&["-c", "foo.c", "-Xclang", "-load"], flag("-load")),
        (&["-c", "foo.c", "-v"], flag("-v")),
        (&["-c", "foo.c", "-flto"], flag("-flto")),
        (
            &["-c", "foo.c", "-Wa,-adhln=foo.lst"],
            flag("-Wa,-adhln=foo.lst"),
        ),
        (&["-c", "foo.c", "-Wa,--MD,x.d"], flag("-Wa,--MD,x.d")),
        (
            &["-c", "foo.c", "-fopt-info-vec=v.txt"],
            flag("-fopt-info-vec=v.txt"),
        ),
        (&["-c", "foo.c", "-flto=auto"], flag("-flto=auto")),
        (
            &["-c", "foo.c", "-fno-working-directory"],
            flag("-fno-working-directory"),
        ),
        (&["-c", "foo.c", "-o"], MissingValue("-o".into())),
        (&["-c", "foo.c", "-MF"], MissingValue("-MF".into())),
    ];
    for (args, want) in cases {
        assert_eq!(&local(args), want, "args {args:?}");
    }
}

#[test]
fn output_paths() {
    let cases: &[(&[&str], &str)] = &[
        (&["-c", "foo.c"], "foo.o"),
        (&["-c", "src/foo.c"], "foo.o"),
        (&["-c", "../src/foo.cpp"], "foo.o"),
        (&["-c", "/abs/src/foo.tar.c"], "foo.tar.o"),
        (&["-c", "src/foo.c", "-o", "obj/foo.o"], "obj/foo.o"),
        (&["-o", "obj/foo.o", "-c", "src/foo.c"], "obj/foo.o"),
        (&["-c", "-oobj/foo.o", "src/foo.c"], "obj/foo.o"),
        (&["-c", "src/foo.c", "-o", "a", "-o", "b.o"], "b.o"),
        (&["-x", "c", "-c", "weird.txt"], "weird.o"),
        (&["-x", "c", "-c", "noext"], "noext.o"),
    ];
    for (args, want) in cases {
        assert_eq!(job(args).output(), Path::new(want), "args {args:?}");
    }
}

#[test]
fn languages() {
    let cases: &[(&[&str], Language)] = &[
        (&["-c", "a.c"], Language::C),
        (&["-c", "a.cc"], Language::Cxx),
        (&["-c", "a.cpp"], Language::Cxx),
        (&["-c", "a.cxx"], Language::Cxx),
        (&["-c", "a.C"], Language::Cxx),
        (&["-c", "a.c++"], Language::Cxx),
        (&["-c", "-x", "c++", "a.c"], Language::Cxx),
        (&["-c", "-xc", "a.cpp"], Language::C),
        // `-x` applies only to inputs after it.
        (&["-c", "a.c", "-x", "c++"], Language::C),
        (&["-c", "-x", "c++", "-x", "none", "a.c"], Language::C),
    ];
    for (args, want) in cases {
        assert_eq!(job(args).language(), *want, "args {args:?}");
    }
    // A C++ driver compiles `.c` as C++.
    let Invocation::Distributable(j) = parse_for(CompilerKind::Gxx, &os(&["-c", "a.c"])) else {
        panic!()
    };
    assert_eq!(j.language(), Language::Cxx);
}

#[test]
fn depfiles() {
    // (args, depfile path, explicit path, explicit target)
    type Want<'a> = Option<(&'a str, bool, bool)>;
    let cases: &[(&[&str], Want)] = &[
        (&["-c", "src/foo.c"], None),
        (&["-c", "-MD", "src/foo.c"], Some(("foo.d", false, false))),
        (
            &["-c", "-MMD", "src/foo.c", "-o", "obj/x.o"],
            Some(("obj/x.d", false, false)),
        ),
        (
            &["-c", "-MD", "src/foo.c", "-o", "a.b.o"],
            Some(("a.b.d", false, false)),
        ),
        (
            &["-c", "-MD", "src/foo.c", "-o", "d.x/foo"],
            Some(("d.x/foo.d", false, false)),
        ),
        (
            &["-c", "-MD", "-MF", "deps/x.d", "foo.c"],
            Some(("deps/x.d", true, false)),
        ),
        (
            &["-c", "-MD", "-MFdeps/x.d", "foo.c"],
            Some(("deps/x.d", true, false)),
        ),
        (
            &["-c", "-MD", "-MT", "t", "foo.c"],
            Some(("foo.d", false, true)),
        ),
        (
            &["-c", "-MMD", "-MQ", "t", "-MP", "foo.c"],
            Some(("foo.d", false, true)),
        ),
        (
            &["-c", "-Wp,-MD,.foo.o.d", "foo.c"],
            Some((".foo.o.d", true, true)),
        ),
        (
            &["-c", "-Wp,-MMD,obj/.k.d", "foo.c"],
            Some(("obj/.k.d", true, true)),
        ),
        // `-MF` without `-MD` writes nothing during a compile.
        (&["-c", "-MF", "x.d", "foo.c"], None),
    ];
    for (args, want) in cases {
        let j = job(args);
        let got = j
            .depfile()
            .map(|d| (d.path.to_str().unwrap(), d.explicit_path, d.explicit_target));
        assert_eq!(got, *want, "args {args:?}");
    }
}

#[test]
fn preprocess_args_add_depfile_path_and_target() {
    let j = job(&[
        "-c",
        "-O2",
        "-Iinc",
        "-MD",
        "src/foo.c",
        "-o",
        "obj/foo.o",
        "-DX=1",
    ]);
    assert_eq!(
        strs(&j.preprocess_args()),
        [
            "-E",
            "-fdirectives-only",
            "-O2",
            "-Iinc",
            "-MD",
            "-DX=1",
            "-MF",
            "obj/foo.d",
            "-MQ",
            "obj/foo.o",
            "-x",
            "c",
            "src/foo.c"
        ]
    );
    let j = job(&["-c", "-MMD", "-MF", "f.d", "-MT", "t", "foo.cc"]);
    assert_eq!(
        strs(&j.preprocess_args()),
        [
            "-E",
            "-fdirectives-only",
            "-MMD",
            "-MF",
            "f.d",
            "-MT",
            "t",
            "-x",
            "c++",
            "foo.cc"
        ]
    );
    // Kernel style: passed through untouched.
    let j = job(&[
        "-c",
        "-Wp,-MD,.f.d",
        "-Wp,-D_FORTIFY_SOURCE=2",
        "f.c",
        "-o",
        "f.o",
    ]);
    assert_eq!(
        strs(&j.preprocess_args()),
        [
            "-E",
            "-fdirectives-only",
            "-Wp,-MD,.f.d",
            "-Wp,-D_FORTIFY_SOURCE=2",
            "-x",
            "c",
            "f.c"
        ]
    );
}

#[test]
fn remote_args_keep_codegen_only() {
    let j = job(&[
        "-c",
        "-O2",
        "-g",
        "-Iinc",
        "-isystem",
        "/sys",
        "-include",
        "cfg.h",
        "-DX",
        "-UY",
        "-MD",
        "-MF",
        "x.d",
        "-Wall",
        "-Werror=format",
        "-fPIC",
        "-march=x86-64",
        "-std=c11",
        "-pedantic",
        "-w",
        "-fdiagnostics-color=always",
        "-Wa,--noexecstack",
        "-lm",
        "-L/lib",
        "-Wl,-z,now",
        "--param",
        "max-inline-insns-single=10",
        "-Xlinker",
        "-zdefs",
        "foo.c",
        "-o",
        "o.o",
    ]);
    assert_eq!(
        strs(&j.remote_args("in.i", "out.o")),
        [
            "-O2",
            "-g",
            "-Wall",
            "-Werror=format",
            "-fPIC",
            "-march=x86-64",
            "-std=c11",
            "-pedantic",
            "-w",
            "-fdiagnostics-color=always",
            "-Wa,--noexecstack",
            "--param",
            "max-inline-insns-single=10",
            "-fpreprocessed",
            "-fdirectives-only",
            "-c",
            "-x",
            "cpp-output",
            "in.i",
            "-o",
            "out.o"
        ]
    );
    assert_eq!(j.color(), ColorMode::Always);
    assert!(j.debug_info());
}

#[test]
fn cache_args_exclude_paths_of_outputs() {
    let a = job(&[
        "-c",
        "-O2",
        "-Iinc",
        "-MD",
        "-MF",
        "a.d",
        "-fdiagnostics-color",
        "a/foo.c",
        "-o",
        "a.o",
    ]);
    let b = job(&[
        "-c", "-O2", "-Iinc", "-MD", "-MF", "b.d", "b/foo.c", "-o", "b.o",
    ]);
    assert_eq!(a.cache_relevant_args(), b.cache_relevant_args());
    assert_eq!(strs(&a.cache_relevant_args()), ["-x", "c", "-O2", "-Iinc"]);
    // Kernel style: the depfile path is not part of the key, the other `-Wp,` options are.
    let k1 = job(&["-c", "-Wp,-MD,.a.o.d", "-Wp,-MMD,x.d,-DX", "a.c"]);
    let k2 = job(&["-c", "-Wp,-MD,.b.o.d", "-Wp,-MMD,y.d,-DX", "a.c"]);
    assert_eq!(k1.cache_relevant_args(), k2.cache_relevant_args());
    assert_eq!(strs(&k1.cache_relevant_args()), ["-x", "c", "-Wp,-DX"]);
    let c = job(&["-c", "-O1", "-Iinc", "foo.c"]);
    assert_ne!(a.cache_relevant_args(), c.cache_relevant_args());
    let d = job(&["-c", "-O2", "-Iinc", "foo.cc"]);
    assert_ne!(a.cache_relevant_args(), d.cache_relevant_args());
}

#[test]
fn debug_levels() {
    let cases: &[(&[&str], bool)] = &[
        (&["-c", "a.c"], false),
        (&["-c", "-g", "a.c"], true),
        (&["-c", "-g", "-g0", "a.c"], false),
        (&["-c", "-ggdb", "a.c"], true),
        (&["-c", "-gdwarf-4", "a.c"], true),
        (&["-c", "-g3", "-g", "a.c"], true),
        (&["-c", "-gno-record-gcc-switches", "a.c"], false),
    ];
    for (args, want) in cases {
        assert_eq!(job(args).debug_info(), *want, "args {args:?}");
    }
}

#[test]
fn glued_and_separate_values_are_one_argument() {
    // A separate value that looks like a source must not count as one.
    for args in [
        &["-c", "-I", "dir.c", "a.c"][..],
        &["-c", "-include", "pre.h", "a.c"],
        &["-c", "-MT", "x.c", "-MD", "a.c"],
        &["-c", "-Xassembler", "--noexecstack", "a.c"],
        &["-c", "-isystem", "x.c", "a.c"],
        &["-c", "-iquote", "q", "-idirafter", "d", "a.c"],
        &["-c", "-L", "lib.c", "a.c"],
        &["-c", "--sysroot", "/sr", "a.c"],
        &["-c", "--sysroot=/sr", "a.c"],
    ] {
        assert_eq!(job(args).source(), Path::new("a.c"), "args {args:?}");
    }
}

#[test]
fn clang_jobs_preprocess_with_rewrite_includes() {
    for kind in [CompilerKind::Clang, CompilerKind::Clangxx] {
        let Invocation::Distributable(j) = parse_for(kind, &os(&["-c", "a.c"])) else {
            panic!("{kind:?} ran locally");
        };
        assert!(j.is_clang());
        assert_eq!(j.preprocess_args()[..2], os(&["-E", "-frewrite-includes"]));
    }
    // Not-a-compile reasons still come first.
    assert_eq!(
        parse_for(CompilerKind::Clang, &os(&["a.o", "-o", "app"])),
        Invocation::Local(LocalReason::NotCompileOnly)
    );
}

#[test]
fn unknown_flag_with_separate_value_runs_locally() {
    assert_eq!(
        local(&["-c", "-fnew-thing", "value", "a.c"]),
        LocalReason::MultipleSources
    );
}

/// Random command lines from a pool of tricky tokens: `parse` never panics, and a distributable
/// job's command lines keep their invariants.
#[test]
fn random_command_lines_keep_invariants() {
    // Entries with a space are two words; `out.o` and `d.d` appear only as `-o`/`-MF` values.
    const POOL: &[&str] = &[
        "-c",
        "-o out.o",
        "-ofoo.o",
        "a.c",
        "b.cc",
        "c.s",
        "-",
        "-E",
        "-S",
        "-M",
        "-MD",
        "-MMD",
        "-MF d.d",
        "-MFe.d",
        "-MT",
        "t",
        "-MQ",
        "-MP",
        "-x",
        "c",
        "c++",
        "none",
        "-xc",
        "-I",
        "inc",
        "-Iinc",
        "-D",
        "X=1",
        "-DY",
        "-include",
        "h.h",
        "-isystem",
        "/s",
        "-O2",
        "-g",
        "-g0",
        "-g3",
        "-fPIC",
        "-Wall",
        "-Wp,-MD,k.d",
        "-Wp,-DZ",
        "-Wa,--noexecstack",
        "-Wl,-z,now",
        "-lm",
        "-L",
        "/l",
        "@rsp",
        "-fprofile-use",
        "-flto",
        "-fdiagnostics-color",
        "--param",
        "x=1",
        "-Xpreprocessor",
        "-DQ",
        "-Xclang",
        "-v",
        "-save-temps",
        "-std=c11",
        "-unknown",
        "",
        "-o",
        "-MF",
        "-o -",
    ];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut distributable = 0;
    for _ in 0..20_000 {
        let n = (next() % 9) as usize;
        let mut args: Vec<&str> = (0..n)
            .flat_map(|_| {
                let e = POOL[(next() as usize) % POOL.len()];
                if e.is_empty() {
                    vec![e]
                } else {
                    e.split(' ').collect()
                }
            })
            .collect();
        // Bias towards compiles so the invariants below get exercised.
        if next() % 2 == 0 {
            args.push("-c");
            args.push(["a.c", "b.cc"][(next() % 2) as usize]);
        }
        let Invocation::Distributable(j) = parse(&os(&args)) else {
            continue;
        };
        distributable += 1;
        let pre = strs(&j.preprocess_args());
        assert_eq!(pre[..2], ["-E", "-fdirectives-only"], "{args:?}");
        // `-c`/`-o` only as the value of a flag that takes one (`-MQ -o` names a target "-o").
        const TAKES_VALUE: &[&str] = &[
            "-MF",
            "-MT",
            "-MQ",
            "-I",
            "-D",
            "-include",
            "-isystem",
            "-Xpreprocessor",
            "-Xclang",
            "--param",
            "-L",
        ];
        for (i, a) in pre.iter().enumerate() {
            if a == "-c" || a == "-o" {
                let prev = pre[i - 1].as_str();
                assert!(TAKES_VALUE.contains(&prev), "{args:?} -> {pre:?}");
            }
        }
        assert_eq!(
            pre.last().map(String::as_str),
            j.source().to_str(),
            "{args:?}"
        );
        let remote = strs(&j.remote_args("in.i", "out.o"));
        let tail = [
            "-c",
            "-x",
            j.language().preprocessed(),
            "in.i",
            "-o",
            "out.o",
        ];
        assert_eq!(remote[remote.len() - 6..], tail[..], "{args:?}");
        for (i, a) in remote.iter().enumerate() {
            let preprocessor = a.starts_with("-I")
                || a.starts_with("-D")
                || a.starts_with("-M")
                || a == "-include"
                || a.starts_with("-Wp,");
            let is_value = i > 0 && ["-Xclang", "--param"].contains(&remote[i - 1].as_str());
            assert!(!preprocessor || is_value, "{args:?} -> {remote:?}");
        }
        let key = strs(&j.cache_relevant_args());
        assert!(!key.iter().any(|a| a == "out.o" || a == "d.d"), "{args:?}");
    }
    assert!(
        distributable > 1_000,
        "only {distributable} distributable lines"
    );
}

/// GCC's long aliases (`--prefix=DIR` is `-B DIR`, `--for-assembler=X` is `-Xassembler X`),
/// their abbreviations, unknown options and unlisted assembler options never reach a worker.
#[test]
fn long_aliases_and_unlisted_flags_run_locally() {
    use LocalReason::*;
    let flag = |s: &str| UnsupportedFlag(s.to_owned());
    let unknown = |s: &str| UnknownFlag(s.to_owned());
    let cases: &[(&[&str], LocalReason)] = &[
        (
            &["-c", "a.c", "--prefix=/tmp/evil"],
            flag("--prefix=/tmp/evil"),
        ),
        (&["-c", "a.c", "--prefix", "/tmp/evil"], flag("--prefix")),
        (
            &["-c", "a.c", "--pref=/tmp/evil"],
            unknown("--pref=/tmp/evil"),
        ),
        (
            &["-c", "a.c", "--for-assembler=-alh=/tmp/x"],
            flag("--for-assembler=-alh=/tmp/x"),
        ),
        (
            &["-c", "a.c", "--for-assembler", "-alh=/tmp/x"],
            flag("--for-assembler"),
        ),
        (
            &["-c", "a.c", "-Xassembler", "-alh=/tmp/x"],
            flag("-alh=/tmp/x"),
        ),
        (&["-c", "a.c", "-Wa,-I/etc"], flag("-Wa,-I/etc")),
        (&["-c", "a.c", "-Wa,-o,/tmp/x"], flag("-Wa,-o,/tmp/x")),
        (
            &["-c", "a.c", "--include-directory=/x"],
            unknown("--include-directory=/x"),
        ),
        (&["-c", "a.c", "-march=native"], unknown("-march=native")),
        (&["-c", "a.c", "-Q"], unknown("-Q")),
        (
            &["-c", "a.c", "-fdeps-file=x.json"],
            unknown("-fdeps-file=x.json"),
        ),
        (
            &["-c", "a.c", "-fdiagnostics-format=json-file"],
            unknown("-fdiagnostics-format=json-file"),
        ),
    ];
    for (args, want) in cases {
        assert_eq!(&local(args), want, "args {args:?}");
    }
    // The allow-list still ships what builds use.
    let j = job(&[
        "-c",
        "-O2",
        "-g",
        "-std=c11",
        "-pedantic",
        "-w",
        "-pthread",
        "-fPIC",
        "-march=x86-64-v2",
        "-Wall",
        "-Wa,--noexecstack",
        "-Xassembler",
        "--64",
        "--param=max-inline-insns-single=10",
        "-no-pie",
        "a.c",
    ]);
    let remote = strs(&j.remote_args("in", "out.o"));
    assert!(
        remote.contains(&"-Wa,--noexecstack".to_owned()),
        "{remote:?}"
    );
    assert!(remote.contains(&"--64".to_owned()), "{remote:?}");
    assert!(!remote.contains(&"-no-pie".to_owned()), "{remote:?}");
}
