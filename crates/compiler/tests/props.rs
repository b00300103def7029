//! Property tests over arbitrary bytes: the argument parser and the include scanner (through
//! `remote_command`, the worker's entry point) never panic, and what they accept keeps its
//! invariants.

use hybridgrid_compiler::{CompilerKind, Invocation, parse_for};
use proptest::prelude::*;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::path::Path;

/// Words that steer the parser into its interesting paths, plus arbitrary bytes.
fn word() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..24),
        prop::sample::select(vec![
            "-c",
            "-o",
            "a.o",
            "a.c",
            "-x",
            "c",
            "-MD",
            "-MF",
            "-Wa,",
            "-Wp,",
            "-Xassembler",
            "--prefix=",
            "--for-assembler=",
            "-g",
            "-g3",
            "-O2",
            "-I",
            "@r",
            "-",
            "-fplugin=x",
            "-march=native",
            "--param",
            "-std=c11",
            "-trigraphs",
        ])
        .prop_map(|s| s.as_bytes().to_vec()),
    ]
}

/// Text made of fragments that matter to the scanner, plus arbitrary bytes.
fn text() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..16),
            prop::sample::select(vec![
                "#",
                "include",
                "??/",
                "??=",
                "\\",
                "\n",
                "\r",
                " ",
                "/*",
                "*/",
                "//",
                "\"",
                "'",
                "%:",
                "_Pragma",
                "dependency",
                "#if",
                "# 0 \"a.c\"\n",
                "# 1 \"/w//\"\n",
            ])
            .prop_map(|s| s.as_bytes().to_vec()),
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

/// Cases per property: 2000 in CI (well under a second each); `HG_PROPTEST_CASES=200000` for
/// a long run.
fn cases() -> u32 {
    std::env::var("HG_PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(cases()))]

    #[test]
    fn parser_never_panics(words in proptest::collection::vec(word(), 0..12)) {
        let args: Vec<OsString> = words.into_iter().map(OsString::from_vec).collect();
        for kind in [CompilerKind::Gcc, CompilerKind::Gxx, CompilerKind::Clang] {
            if let Invocation::Distributable(job) = parse_for(kind, &args) {
                // Nothing GCC would treat as -B or an assembler listing is shipped.
                for a in job.remote_args("in", "out.o") {
                    let a = a.to_string_lossy();
                    prop_assert!(!a.starts_with("--prefix") && !a.starts_with("--for-assembler"), "{a}");
                    prop_assert!(!a.starts_with("-B"), "{a}");
                }
                let _ = job.preprocess_args();
                let _ = job.cache_relevant_args();
            }
        }
    }

    #[test]
    fn scanner_never_panics(text in text(), debug in any::<bool>()) {
        let args: Vec<OsString> = if debug { vec!["-c".into(), "-g".into(), "a.c".into()] } else { vec!["-c".into(), "a.c".into()] };
        let Invocation::Distributable(job) = parse_for(CompilerKind::Gcc, &args) else {
            panic!("a plain compile is distributable");
        };
        // The client's pre-shipping check refuses exactly what the worker's scan refuses.
        let shipped = job.check_text(&text);
        let derived = job.remote_command(&text, Path::new("/w/hg-1"));
        prop_assert_eq!(
            shipped.is_err(),
            matches!(derived, Err(hybridgrid_compiler::RemoteError::ReadsWorkerFiles { .. })),
            "{:?}", String::from_utf8_lossy(&text)
        );
        let has = |n: &[u8]| text.windows(n.len()).any(|w| w == n);
        // (A comment, a skipped `#if 0` group or a continued line may hold one legitimately.)
        let plain = !has(b"/*") && !has(b"#if") && !has(b"\\");
        if let (Ok(cmd), true) = (derived, plain) {
            // Whatever was accepted holds no plain directive that reads a file.
            for line in cmd.input.split(|b| *b == b'\n') {
                let t: Vec<u8> = line.iter().copied().filter(|b| !b" \t".contains(b)).collect();
                prop_assert!(!t.starts_with(b"#include"), "{:?}", String::from_utf8_lossy(&cmd.input));
            }
        }
    }
}
