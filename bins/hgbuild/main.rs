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

fn main() {
    let argv = std::env::args_os().collect();
    std::process::exit(hybridgrid_farm_client::cli::run(argv, &ProcessEnv));
}
