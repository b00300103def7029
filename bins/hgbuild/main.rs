//! `hgbuild`: run a build through the compile farm.
//!
//! ```text
//! hgbuild make -j16                  # any build tool: its compilers go through the farm
//! hgbuild cmake --build build
//! CC="hgbuild cc" CXX="hgbuild c++" make
//! hgbuild cc -c foo.c -o foo.o        # one compile
//! hgbuild --stats | --clear-cache | --jobs | --help | --version
//! ```
use hybridgrid_core::config::ProcessEnv;
use hybridgrid_farm::cache::client as cache;
use hybridgrid_farm::client::{self, Step, buildtool, stats};
use hybridgrid_farm::config::FarmConfig;
use std::ffi::{OsStr, OsString};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

const HELP: &str = "hgbuild: run a build through the hybridgrid compile farm

usage:
  hgbuild <build tool> [args...]   e.g. hgbuild make -j16, hgbuild cmake --build build, hgbuild ninja
  hgbuild <compiler> [args...]     e.g. CC=\"hgbuild cc\"; compilers: cc gcc g++ c++ clang clang++ (or a path)
  hgbuild demo                     start a coordinator and 2 workers here, build Lua through them
  hgbuild --stats                  how compiles were served (remote, cache hits per tier, fallbacks, ...)
  hgbuild --clear-cache            empty the local compile cache (cache.dir, default ~/.hybridgrid/cache)
  hgbuild --jobs                   the parallelism the farm offers now
  hgbuild --help | --version

config: $HG_CONFIG or ~/.hybridgrid/config.yaml; coordinator address: client.coordinator
(env HG_CLIENT_COORDINATOR or HG_COORDINATOR, default 127.0.0.1:9000)";

fn main() {
    std::process::exit(run());
}

fn load_config() -> Result<FarmConfig, String> {
    let file = std::env::var_os("HG_CONFIG")
        .map(PathBuf::from)
        .or_else(|| {
            let p = client::home_dir().join(".hybridgrid/config.yaml");
            p.exists().then_some(p)
        });
    let mut cfg = FarmConfig::load(file.as_deref(), &ProcessEnv).map_err(|e| e.to_string())?;
    if std::env::var_os("HG_CLIENT_COORDINATOR").is_none()
        && let Ok(addr) = std::env::var("HG_COORDINATOR")
    {
        cfg.client.coordinator = addr;
    }
    Ok(cfg)
}

fn runtime() -> tokio::runtime::Runtime {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
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

fn run() -> i32 {
    let mut argv: Vec<OsString> = std::env::args_os().collect();
    let argv0 = argv
        .first()
        .map(|a| Path::new(a).file_name().unwrap_or(a).to_owned())
        .unwrap_or_default();
    // Invoked through a masquerade link (`cc`, `g++`, ...): compile mode with that compiler name.
    if argv0 != "hgbuild" && is_compiler_name(&argv0) {
        let args = argv.split_off(1);
        return compile_mode(&argv0, &args);
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
        Some("--stats") => return print_stats(),
        Some("--clear-cache") => return clear_cache(),
        Some("demo") => return demo(),
        Some("--jobs") => {
            let cfg = match load_config() {
                Ok(c) => c,
                Err(e) => return fail(&e),
            };
            println!("{}", jobs(&cfg));
            return 0;
        }
        Some(flag) if flag.starts_with("--") => {
            return fail(&format!("unknown option {flag:?} (see hgbuild --help)"));
        }
        _ => {}
    }
    let rest = argv.split_off(2);
    if is_compiler_name(&first)
        || Path::new(&first).components().count() > 1
            && is_compiler_name(Path::new(&first).file_name().unwrap_or_default())
    {
        return compile_mode(&first, &rest);
    }
    build_mode(&first, &rest)
}

fn fail(msg: &str) -> i32 {
    eprintln!("hgbuild: error: {msg}");
    2
}

fn compile_mode(compiler: &OsStr, args: &[OsString]) -> i32 {
    let real = match client::resolve_compiler(compiler) {
        Ok(p) => p,
        Err(e) => return fail(&e.to_string()),
    };
    let cfg = match load_config() {
        Ok(c) => c,
        Err(e) => {
            // A broken config must not break the build: say so, and compile locally.
            eprintln!("hgbuild: config error: {e}; compiling locally");
            let err = client::local_command(&real, args).exec();
            return fail(&format!("cannot run {}: {err}", real.display()));
        }
    };
    let step = runtime().block_on(client::compile(&cfg, &real, args));
    let log = client::stats_log();
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
            eprintln!("hgbuild: {e}; compiling locally");
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
    let _slot = client::local_slots::acquire(cfg.client.local_jobs);
    match client::local_command(real, args).status() {
        Ok(status) => status.code().unwrap_or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            128 + status.signal().unwrap_or(0)
        }),
        Err(e) => fail(&format!("cannot run {}: {e}", real.display())),
    }
}

fn jobs(cfg: &FarmConfig) -> u32 {
    let local = std::thread::available_parallelism().map_or(1, |n| n.get() as u32);
    let farm = runtime().block_on(client::farm_slots(cfg)).unwrap_or(0);
    farm.max(local)
}

fn build_mode(program: &OsStr, args: &[OsString]) -> i32 {
    let cfg = match load_config() {
        Ok(c) => c,
        Err(e) => return fail(&e),
    };
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find hgbuild's own path: {e}")),
    };
    let n = jobs(&cfg);
    match buildtool::run(&me, program, args, Some(n), &[]) {
        Ok((code, totals)) => {
            eprintln!("{}", totals.summary());
            runtime().block_on(client::report_fallbacks(&cfg, &totals));
            code
        }
        Err(e) => fail(&e.to_string()),
    }
}

fn clear_cache() -> i32 {
    let cfg = match load_config() {
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

fn print_cache_stats(t: &stats::Totals) {
    let hits = |tier: &str| t.cache_hits.get(tier).copied().unwrap_or(0);
    println!(
        "cache: {} hits (local {}, shared {}), {} misses, hit rate {:.1}%, {} evictions, {} corrupt entries dropped",
        t.cache_hit_total(),
        hits("local"),
        hits("shared"),
        t.cache_misses,
        100.0 * t.cache_hit_rate(),
        t.cache_evictions,
        t.cache_corrupt
    );
    let Ok(cfg) = load_config() else { return };
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
        println!(
            "cache: shared tier {url} (prefix {:?})",
            cfg.cache.shared_prefix
        );
    }
}

fn print_stats() -> i32 {
    let log = client::stats_log();
    match stats::Totals::read(&log, 0) {
        Ok(t) => {
            println!("{}", t.summary());
            print_cache_stats(&t);
            if let Some(j) = client::to_json(&t) {
                println!("{j}");
            }
            0
        }
        Err(e) => fail(&format!("reading {}: {e}", log.display())),
    }
}

fn demo() -> i32 {
    hybridgrid_core::logging::init_logging(&hybridgrid_core::logging::LoggingConfig {
        level: hybridgrid_core::logging::LogLevel::Warn,
        ..Default::default()
    });
    let me = match std::env::current_exe() {
        Ok(p) => p,
        Err(e) => return fail(&format!("cannot find hgbuild's own path: {e}")),
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join("hybridgrid-demo");
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("cannot start async runtime: {e}")),
    };
    match rt.block_on(hybridgrid_farm::demo::run(workspace, &me, &out)) {
        Ok(()) => 0,
        Err(e) => fail(&e.to_string()),
    }
}
