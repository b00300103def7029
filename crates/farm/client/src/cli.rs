//! The `hgbuild` command line: build mode, compile mode (also through masquerade links), and the
//! `--stats`, `--clear-cache`, `--jobs` commands. `bins/hgbuild` is `std::process::exit(run(...))`.
//!
//! ```text
//! hgbuild make -j16                  # any build tool: its compilers go through the farm
//! hgbuild cmake --build build
//! CC="hgbuild cc" CXX="hgbuild c++" make
//! hgbuild cc -c foo.c -o foo.o        # one compile
//! hgbuild --stats | --clear-cache | --jobs | --help | --version
//! hgbuild doctor                     # diagnose the farm from this machine
//! ```
use crate::ClientError;
use crate::notice::notice;
use crate::paths::home_dir;
use crate::step::Step;
use crate::{buildtool, cache, compile as client, paths, stats};
use hybridgrid_core::config::EnvSource;
use hybridgrid_farm_protocol::config::FarmConfig;
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const HELP: &str = "hgbuild: run a build through the hybridgrid compile farm

usage:
  hgbuild <build tool> [args...]   e.g. hgbuild make -j16, hgbuild cmake --build build, hgbuild ninja
  hgbuild <compiler> [args...]     e.g. CC=\"hgbuild cc\"; compilers: cc gcc g++ c++ clang clang++ (or a path)
  hgbuild -E file.c ...            compiler options alone: run by the compiler $CC names after hgbuild, else cc
  hgbuild --target <platform> ...  cross-compile: cc/gcc/c++/g++ become e.g. aarch64-linux-gnu-gcc
                                   (platforms: linux-arm64, linux-armv7, linux-riscv64, ...)
  hgbuild --stats                  how compiles were served (remote, cache hits per tier, fallbacks, ...)
  hgbuild --clear-cache            empty the local compile cache (cache.dir, default ~/.hybridgrid/cache)
  hgbuild --jobs                   the parallelism on offer now (2 per local core and farm CPU)
  hgbuild doctor [--http H:P]      diagnose the farm from here: coordinator, workers, circuits, cache, TLS
  hgbuild --help | --version

config: $HG_CONFIG or ~/.hybridgrid/config.yaml; coordinator address: client.coordinator
(env HG_CLIENT_COORDINATOR or HG_COORDINATOR, default 127.0.0.1:9000)";

/// The farm config: `$HG_CONFIG`, else `~/.hybridgrid/config.yaml` when it exists, else defaults;
/// `HG_*` overrides from `env`, and `HG_COORDINATOR` as a short form of `HG_CLIENT_COORDINATOR`.
pub fn load_config(env: &dyn EnvSource) -> Result<FarmConfig, String> {
    let file = env.var("HG_CONFIG").map(PathBuf::from).or_else(|| {
        let p = home_dir().join(".hybridgrid/config.yaml");
        p.exists().then_some(p)
    });
    let mut cfg = FarmConfig::load(file.as_deref(), env).map_err(|e| e.to_string())?;
    if env.var("HG_CLIENT_COORDINATOR").is_none()
        && let Some(addr) = env.var("HG_COORDINATOR")
    {
        cfg.client.coordinator = addr;
    }
    Ok(cfg)
}

fn try_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

fn runtime() -> tokio::runtime::Runtime {
    match try_runtime() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("hgbuild: cannot start async runtime: {e}");
            std::process::exit(70);
        }
    }
}

fn is_compiler_name(name: &OsStr) -> bool {
    hybridgrid_compiler::CompilerKind::detect(Path::new(name)).is_ok()
}

/// Runs `hgbuild` with `argv` (program name first), reading settings from `env`; returns the exit
/// code. In compile mode the output is exactly the compiler's (the farm's own messages go to the
/// log file and the build summary, see [`crate::notice`]); stderr carries an `hgbuild:` line only
/// when no compiler could be run at all. Build mode adds the summary after the build's output.
pub fn run(mut argv: Vec<OsString>, env: &dyn EnvSource) -> i32 {
    let argv0 = argv
        .first()
        .map(|a| Path::new(a).file_name().unwrap_or(a).to_owned())
        .unwrap_or_default();
    // Invoked through a masquerade link (`cc`, `g++`, ...): compile mode with that compiler name.
    if argv0 != "hgbuild" && is_compiler_name(&argv0) {
        let args = argv.split_off(1);
        return compile_mode(&argv0, &args, env);
    }
    let Some(first) = argv.get(1).cloned() else {
        eprintln!("{HELP}");
        return 2;
    };
    match first.to_str() {
        Some("--help" | "-h") => {
            println!("{HELP}");
            return 0;
        }
        Some("--version" | "-V") => {
            println!(
                "hgbuild {} (protocol {})",
                env!("CARGO_PKG_VERSION"),
                hybridgrid_core::PROTOCOL_VERSION
            );
            return 0;
        }
        Some("--stats") => return print_stats(env),
        Some("doctor") => return doctor(&argv[2..], env),
        Some("--clear-cache") => return clear_cache(env),
        Some("--jobs") => {
            let cfg = match load_config(env) {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            println!("{}", jobs(&cfg));
            return 0;
        }
        Some("--target") => return target_mode(&argv[2..], env),
        Some(flag) if flag.starts_with("--") => {
            return fail(&format!("unknown option {flag:?} (see hgbuild --help)"));
        }
        // Compiler options without a compiler (`hgbuild -E probe.c`, as the `cc` crate's family
        // detection runs it under `CC="hgbuild cc"`): the compiler `$CC` names after hgbuild.
        Some(flag) if flag.starts_with('-') => {
            let args = argv.split_off(1);
            return compile_mode(&default_compiler(env), &args, env);
        }
        _ => {}
    }
    let rest = argv.split_off(2);
    if is_compiler_name(&first)
        || Path::new(&first).components().count() > 1
            && is_compiler_name(Path::new(&first).file_name().unwrap_or_default())
    {
        return compile_mode(&first, &rest, env);
    }
    build_mode(&first, &rest, env)
}

/// `hgbuild doctor [--http HOST:PORT]`: prints every check; exits 1 when one failed.
fn doctor(args: &[OsString], env: &dyn EnvSource) -> i32 {
    let mut http = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--http") => match it.next().and_then(|v| v.to_str()) {
                Some(v) => http = Some(v.to_owned()),
                None => {
                    return fail("doctor --http needs HOST:PORT (the coordinator's HTTP address)");
                }
            },
            Some(v) if v.starts_with("--http=") => http = Some(v["--http=".len()..].to_owned()),
            _ => {
                return fail(&format!(
                    "doctor: unknown argument {a:?} (usage: hgbuild doctor [--http HOST:PORT])"
                ));
            }
        }
    }
    let cfg = match load_config(env) {
        Ok(c) => c,
        Err(e) => {
            println!("[FAIL] config: {e}: fix that key, or unset HG_CONFIG to use the defaults");
            return 1;
        }
    };
    let report = runtime().block_on(crate::doctor::diagnose(&cfg, http.as_deref()));
    print!("{report}");
    report.exit_code()
}

/// The compiler for compiler options given without one: the word after `hgbuild` in `$CC`
/// (`CC="hgbuild clang"` → `clang`), else `cc`.
fn default_compiler(env: &dyn EnvSource) -> OsString {
    env.var("CC")
        .and_then(|cc| {
            let mut words = cc.split_whitespace();
            let wrapper = words.next()?;
            let compiler = words.next()?;
            (Path::new(wrapper).file_name()? == "hgbuild" && is_compiler_name(OsStr::new(compiler)))
                .then(|| OsString::from(compiler))
        })
        .unwrap_or_else(|| OsString::from("cc"))
}

/// `hgbuild --target PLATFORM <compiler|build tool> [args...]`.
fn target_mode(args: &[OsString], env: &dyn EnvSource) -> i32 {
    let (Some(platform), Some(first)) = (args.first(), args.get(1)) else {
        return fail(
            "--target needs a platform and a command, e.g. hgbuild --target linux-arm64 make",
        );
    };
    let triple = match crate::target::triple(platform) {
        Ok(t) => t,
        Err(e) => return fail(&e),
    };
    let rest = &args[2..];
    if is_compiler_name(first) || Path::new(first).components().count() > 1 {
        return match crate::target::cross_driver(triple, first) {
            Ok(driver) => compile_mode(&driver, rest, env),
            Err(e) => fail(&e),
        };
    }
    build_mode_with(first, rest, env, &crate::target::build_env(triple))
}

fn fail(msg: &str) -> i32 {
    eprintln!("hgbuild: error: {msg}");
    2
}

fn compile_mode(compiler: &OsStr, args: &[OsString], env: &dyn EnvSource) -> i32 {
    let real = match client::resolve_compiler(compiler) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    let cfg = match load_config(env) {
        Ok(c) => c,
        Err(e) => {
            // A broken config must not break the build, nor change its output: log it, and
            // compile locally.
            notice("config", &format!("config error: {e}; compiled locally"));
            stats::record(
                &paths::stats_log(),
                &stats::Served::Fallback {
                    reason: "config_error".into(),
                },
            );
            let err = client::local_command(&real, args).exec();
            return fail(&format!("cannot run {}: {err}", real.display()));
        }
    };
    let log = paths::stats_log();
    let step = match try_runtime() {
        Ok(rt) => rt.block_on(client::compile(&cfg, &real, args)),
        Err(e) => Err(ClientError::Setup(format!(
            "cannot start async runtime: {e}"
        ))),
    };
    match step {
        Ok(Step::Exit(code, served)) => {
            stats::record(&log, &served);
            code
        }
        Ok(Step::RunLocal(served)) => {
            stats::record(&log, &served);
            run_local(&cfg, &real, args)
        }
        Err(e) => {
            notice("client", &format!("{e}; compiled locally"));
            stats::record(
                &log,
                &stats::Served::Fallback {
                    reason: "client_error".into(),
                },
            );
            run_local(&cfg, &real, args)
        }
    }
}

/// Runs the real compiler unchanged within a local-work slot; returns its exit code.
fn run_local(cfg: &FarmConfig, real: &Path, args: &[OsString]) -> i32 {
    let _slot = crate::local_slots::acquire(cfg.client.local_jobs);
    match client::local_command(real, args).status() {
        Ok(status) => status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        Err(e) => fail(&format!("cannot run {}: {e}", real.display())),
    }
}

/// The `-j` that fills the farm and the local cores (which compile by choice when every farm CPU
/// is busy): two per local core and farm CPU and a lookahead, in which the largest sources start
/// first ([`client::farm_jobs`]); the local CPUs alone without a farm.
fn jobs(cfg: &FarmConfig) -> u32 {
    let local = crate::local_slots::local_cpus();
    let farm = runtime()
        .block_on(client::farm_jobs(cfg, local))
        .unwrap_or(0);
    farm.saturating_add(local)
}

fn build_mode(program: &OsStr, args: &[OsString], env: &dyn EnvSource) -> i32 {
    build_mode_with(program, args, env, &[])
}

/// [`build_mode`] with `extra` added to the build's environment.
fn build_mode_with(
    program: &OsStr,
    args: &[OsString],
    env: &dyn EnvSource,
    extra: &[(&str, String)],
) -> i32 {
    let cfg = match load_config(env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find hgbuild's own path: {e}")),
    };
    let n = jobs(&cfg);
    match buildtool::run(&me, program, args, Some(n), extra) {
        Ok((code, totals)) => {
            eprintln!("{}", totals.summary());
            runtime().block_on(client::report_fallbacks(&cfg, &totals));
            code
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn clear_cache(env: &dyn EnvSource) -> i32 {
    let cfg = match load_config(env) {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let dir = cache::cache_dir(&cfg.cache);
    match runtime().block_on(cache::clear(&cfg.cache)) {
        Ok(bytes) => {
            println!("hgbuild: cleared {} ({bytes} bytes)", dir.display());
            0
        }
        Err(e) => fail(&format!("clearing the compile cache: {e}")),
    }
}

fn print_cache_stats(t: &stats::Totals, env: &dyn EnvSource) {
    let hits = |tier: &str| t.cache_hits.get(tier).copied().unwrap_or(0);
    println!(
        "cache: {} hits (local {}, shared {}), {} misses, hit rate {:.1}%, {} evictions, {} corrupt entries dropped, {} forged shared entries refused",
        t.cache_hit_total(),
        hits("local"),
        hits("shared"),
        t.cache_misses,
        100.0 * t.cache_hit_rate(),
        t.cache_evictions,
        t.cache_corrupt,
        t.cache_forged
    );
    let Ok(cfg) = load_config(env) else { return };
    if !cfg.cache.enabled {
        println!("cache: disabled (cache.enabled: false)");
        return;
    }
    let dir = cache::cache_dir(&cfg.cache);
    match runtime().block_on(cache::local_usage(&cfg.cache)) {
        Ok((entries, bytes)) => println!(
            "cache: local tier {}: {entries} entries, {bytes} bytes of {} max",
            dir.display(),
            cache::max_bytes(&cfg.cache)
        ),
        Err(e) => println!("cache: local tier unusable: {e}"),
    }
    if let Some(url) = &cfg.cache.shared {
        let trust = if cfg.cache.shared_secret.is_some() {
            "entries authenticated with cache.shared_secret"
        } else {
            "entries NOT authenticated: set cache.shared_secret"
        };
        let mode = if cfg.cache.shared_read_only {
            "read-only"
        } else {
            "read-write"
        };
        println!(
            "cache: shared tier {} (prefix {:?}, {mode}, {trust})",
            hybridgrid_core::spec::redact(url),
            cfg.cache.shared_prefix
        );
    }
}

fn print_stats(env: &dyn EnvSource) -> i32 {
    let log = paths::stats_log();
    match stats::Totals::read(&log, 0) {
        Ok(t) => {
            println!("{}", t.summary());
            print_cache_stats(&t, env);
            if let Some(j) = client::to_json(&t) {
                println!("{j}");
            }
            0
        }
        Err(e) => fail(&format!("reading {}: {e}", log.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn options_without_a_compiler_use_the_one_cc_names() {
        let env = |cc: Option<&str>| {
            let mut m = BTreeMap::new();
            if let Some(cc) = cc {
                m.insert("CC".to_owned(), cc.to_owned());
            }
            m
        };
        assert_eq!(default_compiler(&env(None)), "cc");
        assert_eq!(default_compiler(&env(Some("hgbuild clang"))), "clang");
        assert_eq!(
            default_compiler(&env(Some("/opt/bin/hgbuild gcc-12 -m32"))),
            "gcc-12"
        );
        // Not hgbuild's CC, or no compiler after it: plain cc.
        assert_eq!(default_compiler(&env(Some("sccache clang"))), "cc");
        assert_eq!(default_compiler(&env(Some("hgbuild"))), "cc");
        assert_eq!(default_compiler(&env(Some("hgbuild -O2"))), "cc");
    }
}
