//! `hgbuild --target linux-arm64 ...`: the cross compiler standing for the native driver names.
//!
//! ```text
//! hgbuild --target linux-arm64 cc -O2 -c a.c     # compiles with aarch64-linux-gnu-gcc
//! hgbuild --target linux-armv7 make -j8           # CC=arm-linux-gnueabihf-gcc CXX=...-g++
//! ```

use hybridgrid_farm_protocol::cross::{PLATFORMS, triple_of};
use std::ffi::{OsStr, OsString};
use std::path::Path;

/// The GNU triple of `platform` (a platform name or a triple), or an error naming the known
/// platforms.
pub(crate) fn triple(platform: &OsStr) -> Result<&'static str, String> {
    platform.to_str().and_then(triple_of).ok_or_else(|| {
        let known: Vec<String> = PLATFORMS
            .iter()
            .map(|(p, t)| format!("{p} ({t})"))
            .collect();
        format!(
            "--target {}: unknown platform; known: {}",
            platform.to_string_lossy(),
            known.join(", ")
        )
    })
}

/// The cross driver for `compiler` (`cc`/`gcc` → `<triple>-gcc`, `c++`/`g++` → `<triple>-g++`);
/// an error for clang (which takes `--target=<triple>` itself) and for a compiler given by path.
pub(crate) fn cross_driver(triple: &str, compiler: &OsStr) -> Result<OsString, String> {
    let name = compiler.to_string_lossy();
    if Path::new(compiler).components().count() > 1 {
        return Err(format!(
            "--target with a compiler path ({name}): name the driver (cc, gcc, c++, g++) or call the cross compiler directly"
        ));
    }
    match hybridgrid_compiler::CompilerKind::detect(Path::new(compiler)) {
        Ok(k) if k.name().starts_with("clang") => Err(format!(
            "--target with {name}: pass --target={triple} to clang itself"
        )),
        Ok(k) if k.is_cxx() => Ok(format!("{triple}-g++").into()),
        Ok(_) => Ok(format!("{triple}-gcc").into()),
        Err(e) => Err(e.to_string()),
    }
}

/// What a build run with `--target` gets in its environment: `CC` and `CXX` naming the cross
/// drivers (the masquerade directory routes them through the farm).
pub(crate) fn build_env(triple: &str) -> Vec<(&'static str, String)> {
    vec![
        ("CC", format!("{triple}-gcc")),
        ("CXX", format!("{triple}-g++")),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drivers_map_to_the_cross_names() {
        let t = triple(OsStr::new("linux-arm64")).expect("known");
        assert_eq!(t, "aarch64-linux-gnu");
        assert_eq!(
            cross_driver(t, OsStr::new("cc")).expect("cc"),
            "aarch64-linux-gnu-gcc"
        );
        assert_eq!(
            cross_driver(t, OsStr::new("g++")).expect("g++"),
            "aarch64-linux-gnu-g++"
        );
        assert!(cross_driver(t, OsStr::new("clang")).is_err());
        assert!(cross_driver(t, OsStr::new("/usr/bin/gcc")).is_err());
        let err = triple(OsStr::new("vax-vms")).expect_err("unknown");
        assert!(err.contains("linux-armv7"), "{err}");
    }
}
