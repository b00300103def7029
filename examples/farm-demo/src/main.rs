//! `cargo run --release -p farm-demo`: a coordinator, two workers and a Lua build through them,
//! in one process. Make's compiler calls come back to this binary through `hgbuild`'s masquerade
//! links (`cc`, `gcc`, ...), and then it is the `hgbuild` wrapper.

use hybridgrid_core::config::ProcessEnv;
use std::path::Path;

fn main() {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called_as = argv
        .first()
        .and_then(|a| Path::new(a).file_name())
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    if hybridgrid_farm_client::buildtool::COMPILER_NAMES.contains(&called_as.as_str()) {
        std::process::exit(hybridgrid_farm_client::cli::run(argv, &ProcessEnv));
    }
    hybridgrid_core::logging::init_logging(&hybridgrid_core::logging::LoggingConfig {
        level: hybridgrid_core::logging::LogLevel::Warn,
        ..Default::default()
    });
    let code = match run() {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("farm-demo: error: {e}");
            1
        }
    };
    std::process::exit(code);
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let me = std::env::current_exe().map_err(|e| format!("cannot find this binary's path: {e}"))?;
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::env::temp_dir().join("hybridgrid-demo");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start async runtime: {e}"))?;
    rt.block_on(farm_demo::run(workspace, &me, &out))?;
    Ok(())
}
