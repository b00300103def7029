//! A real C code base: every Lua 5.4 source.

use super::common::*;

/// Where cargo unpacked the `lua-src` dev-dependency's Lua 5.4 sources.
pub(crate) fn lua_sources() -> std::path::PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = run(Command::new(cargo)
        .args(["metadata", "--format-version", "1", "--offline"])
        .current_dir(env!("CARGO_MANIFEST_DIR")));
    let meta: serde_json::Value = serde_json::from_slice(&out).unwrap();
    let manifest = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "lua-src" && p["version"].as_str().unwrap().starts_with("548."))
        .expect("lua-src 548 in cargo metadata")["manifest_path"]
        .as_str()
        .unwrap()
        .to_owned();
    let dir = Path::new(&manifest).parent().unwrap().to_owned();
    std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("lua-5.4")
        })
        .expect("lua-5.4 sources")
}

/// A real C code base: every Lua 5.4 source, out-of-tree (`../src/x.c`), `-O2 -g -MD`.
#[test]
fn lua_objects_are_identical() {
    let src = lua_sources();
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let client = base.join("client/lua");
    std::fs::create_dir_all(client.join("src")).unwrap();
    std::fs::create_dir_all(client.join("build/obj")).unwrap();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".c") || name.ends_with(".h") {
            std::fs::copy(&path, client.join("src").join(&name)).unwrap();
            if let Some(stem) = name.strip_suffix(".c") {
                sources.push(stem.to_owned());
            }
        }
    }
    sources.sort();
    assert!(sources.len() >= 30, "found only {sources:?}");
    for (n, stem) in sources.iter().enumerate() {
        let args: Vec<OsString> = [
            "-c",
            "-O2",
            "-g",
            "-Wall",
            "-std=gnu99",
            "-DLUA_COMPAT_5_3",
            "-DLUA_USE_LINUX",
            "-I../src",
            "-MD",
            "-o",
            &format!("obj/{stem}.o"),
            &format!("../src/{stem}.c"),
        ]
        .iter()
        .map(OsString::from)
        .collect();
        both_ways(
            "gcc",
            &client.join("build"),
            &args,
            &base.join(format!("worker/{n}")),
            &[],
        );
    }
}

/// Every Lua 5.4 source compiled for `lua_objects_are_identical`-style checks with `driver`.
pub(crate) fn lua_both_ways(driver: &str, flags: &[&str]) {
    let src = lua_sources();
    let tmp = tempfile::tempdir().unwrap();
    let base = std::fs::canonicalize(tmp.path()).unwrap();
    let client = base.join("client/lua");
    std::fs::create_dir_all(client.join("src")).unwrap();
    std::fs::create_dir_all(client.join("build/obj")).unwrap();
    let mut sources = Vec::new();
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".c") || name.ends_with(".h") {
            std::fs::copy(&path, client.join("src").join(&name)).unwrap();
            if let Some(stem) = name.strip_suffix(".c") {
                sources.push(stem.to_owned());
            }
        }
    }
    sources.sort();
    assert!(sources.len() >= 30, "found only {sources:?}");
    let root = client.to_string_lossy().into_owned();
    for (n, stem) in sources.iter().enumerate() {
        // Half the sources by absolute path (CMake style), half out-of-tree relative.
        let source = if n % 2 == 0 {
            format!("{root}/src/{stem}.c")
        } else {
            format!("../src/{stem}.c")
        };
        let mut args: Vec<OsString> = flags.iter().map(OsString::from).collect();
        args.extend(
            ["-c", "-MD", "-o", &format!("obj/{stem}.o"), &source]
                .iter()
                .map(OsString::from),
        );
        both_ways(
            driver,
            &client.join("build"),
            &args,
            &base.join(format!("worker/{n}")),
            &[],
        );
    }
}
