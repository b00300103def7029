//! The allow-list of what is shipped to a worker: option families known to change only code
//! generation or warnings. Anything else that is not in the argument table runs locally
//! ([`crate::LocalReason::UnknownFlag`]); so do GCC's long-option aliases (`--prefix=DIR` is
//! `-B DIR`, `--for-assembler=X` is `-Xassembler X`) and their abbreviations, because every
//! `--` option outside the table is unknown here.

/// Exact single options shipped as they are.
const EXACT: &[&str] = &[
    "-ansi",
    "-pedantic",
    "-pedantic-errors",
    "-w",
    "-pipe",
    "-pthread",
    "-trigraphs",
];

/// Families shipped by prefix (`-O2`, `-fPIC`, `-mavx2`, `-Wall`, `-std=c11`, `-g...`), except
/// what [`refused_in_family`] names.
const FAMILIES: &[&str] = &["-O", "-f", "-m", "-W", "-std=", "-g"];

/// Why `arg` (a flag missing from the argument table) may not be shipped, or `None` when it may.
pub(crate) fn unknown_flag_reason(arg: &str) -> Option<&'static str> {
    if EXACT.contains(&arg) {
        return None;
    }
    if arg.starts_with("--") {
        return Some(
            "long option outside the table (GCC aliases such as --prefix= and --for-assembler= run locally)",
        );
    }
    if !FAMILIES.iter().any(|f| arg.starts_with(f)) {
        return Some("option outside the allow-list");
    }
    refused_in_family(arg)
}

/// Members of an allowed family that still may not be shipped.
fn refused_in_family(arg: &str) -> Option<&'static str> {
    // The worker's CPU is not the client's.
    if arg.starts_with("-m") && arg.ends_with("=native") {
        return Some("-m...=native names the build machine's CPU");
    }
    // Options that write files next to the object, read files, or run self tests.
    const WRITES_OR_READS: &[&str] = &[
        "-fdeps-",
        "-fself-test",
        "-fdiagnostics-add-output",
        "-fdiagnostics-set-output",
        "-foptimization-record",
        "-fcondition-coverage",
        "-fpath-coverage",
        "-finstrument-functions-exclude-file-list",
    ];
    if WRITES_OR_READS.iter().any(|p| arg.starts_with(p)) {
        return Some("option reads or writes files beyond the source and the object");
    }
    if let Some(format) = arg.strip_prefix("-fdiagnostics-format=")
        && format.ends_with("-file")
    {
        return Some("diagnostics written to a file");
    }
    None
}

/// Assembler options (`-Wa,X` / `-Xassembler X`) shipped: code-generation and warning options of
/// GNU as. Listings (`-a...`), depfiles (`--MD`), include paths (`-I`), output names (`-o`) and
/// everything else run locally.
pub(crate) fn assembler_option_allowed(opt: &str) -> bool {
    const EXACT: &[&str] = &[
        "--noexecstack",
        "--execstack",
        "--nocompress-debug-sections",
        "--compress-debug-sections",
        "--fatal-warnings",
        "--warn",
        "--no-warn",
        "-W",
        "-g",
        "--gen-debug",
        "--32",
        "--64",
        "--x32",
        "-mrelax-relocations=yes",
        "-mrelax-relocations=no",
    ];
    const PREFIXES: &[&str] = &[
        "--compress-debug-sections=",
        "--gdwarf-",
        "-march=",
        "-mtune=",
        "-mx86-used-note=",
        "--generate-missing-build-notes=",
    ];
    EXACT.contains(&opt)
        || PREFIXES
            .iter()
            .any(|p| opt.starts_with(p) && !opt.ends_with("=native"))
}
