//! The compile farm in one command, on one machine (`cargo run --release -p farm-demo`). Starts a
//! coordinator and two workers in this process (on 127.0.0.1–3), builds the Lua 5.4 interpreter
//! (sources bundled by the `lua-src` crate, located through `cargo metadata`) through the farm with
//! `hgbuild make` (this binary doubles as the wrapper), checks every object against a plain local
//! build, and runs the interpreter it built.
//!
//! ```no_run
//! # async fn demo() -> Result<(), farm_demo::DemoError> {
//! let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
//! let lua = farm_demo::lua_dir(here, "5.4")?;
//! assert!(lua.join("lua.h").exists());
//! # Ok(()) }
//! ```

use hybridgrid_farm_client::buildtool;
use hybridgrid_farm_protocol::config::FarmConfig;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// The Lua sources could not be located.
    #[error("cannot locate the Lua sources of the lua-src crate: {0}")]
    Sources(String),
    /// A step failed.
    #[error("{0}")]
    Step(String),
}

/// The directory of the Lua release `version` (e.g. `5.4`) bundled by the `lua-src` crate, found
/// with `cargo metadata` run in `workspace` (a directory of a workspace that depends on `lua-src`).
pub fn lua_dir(workspace: &Path, version: &str) -> Result<PathBuf, DemoError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--format-version", "1"])
        .current_dir(workspace)
        .output()
        .map_err(|e| DemoError::Sources(format!("running cargo metadata: {e}")))?;
    if !out.status.success() {
        return Err(DemoError::Sources(
            String::from_utf8_lossy(&out.stderr).into_owned(),
        ));
    }
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| DemoError::Sources(format!("cargo metadata output: {e}")))?;
    let manifest = meta["packages"]
        .as_array()
        .and_then(|p| p.iter().find(|p| p["name"] == "lua-src"))
        .and_then(|p| p["manifest_path"].as_str())
        .ok_or_else(|| {
            DemoError::Sources("lua-src is not in this workspace's dependency graph".into())
        })?;
    let root = Path::new(manifest)
        .parent()
        .unwrap_or(Path::new("/"))
        .to_owned();
    std::fs::read_dir(&root)
        .map_err(|e| DemoError::Sources(format!("{}: {e}", root.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with(&format!("lua-{version}")))
        })
        .ok_or_else(|| {
            DemoError::Sources(format!("no lua-{version}* directory in {}", root.display()))
        })
}

/// The host program linked with the Lua library: runs each argument as a chunk of Lua.
const HOST_MAIN: &str = r#"#include <stdio.h>
#include "lua.h"
#include "lualib.h"
#include "lauxlib.h"

int main(int argc, char **argv) {
    lua_State *L = luaL_newstate();
    if (L == NULL) return 1;
    luaL_openlibs(L);
    for (int i = 1; i < argc; i++) {
        if (luaL_dostring(L, argv[i]) != LUA_OK) {
            fprintf(stderr, "lua: %s\n", lua_tostring(L, -1));
            lua_close(L);
            return 1;
        }
    }
    lua_close(L);
    return 0;
}
"#;

fn makefile(src: &Path, objs: &[String]) -> String {
    let core: Vec<&String> = objs.iter().filter(|o| *o != "luac.o").collect();
    format!(
        "SRC := {}\nCFLAGS := -O2 -std=gnu99 -DLUA_USE_LINUX -MD\nOBJS := {} host.o\n\
         lua: $(OBJS)\n\t$(CC) -o $@ $(OBJS) -lm -ldl\nhost.o: host.c\n\t$(CC) $(CFLAGS) -I$(SRC) -c $< -o $@\n\
         %.o: $(SRC)/%.c\n\t$(CC) $(CFLAGS) -c $< -o $@\n",
        src.display(),
        core.iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(" ")
    )
}

/// Runs the demo; `workspace` locates `lua-src`, `wrapper` is the `hgbuild` wrapper (a binary that
/// acts as `hgbuild` when called through a compiler's name), `out` the build dir.
pub async fn run(workspace: &Path, wrapper: &Path, out: &Path) -> Result<(), DemoError> {
    let step = |what: &str, e: &dyn std::fmt::Display| DemoError::Step(format!("{what}: {e}"));
    let src = lua_dir(workspace, "5.4")?;
    let mut stems: Vec<String> = std::fs::read_dir(&src)
        .map_err(|e| step("reading sources", &e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "c"))
        .filter_map(|p| p.file_stem().map(|s| format!("{}.o", s.to_string_lossy())))
        .collect();
    stems.sort();

    let mut cfg = FarmConfig::default();
    cfg.coordinator.grpc_addr = "127.0.0.1:0".into();
    cfg.coordinator.http_addr = "127.0.0.1:0".into();
    cfg.coordinator.heartbeat_interval = hybridgrid_core::config::HumanDuration::from_millis(500);
    let coord = hybridgrid_farm_coordinator::start_coordinator(&cfg, vec![])
        .await
        .map_err(|e| step("starting coordinator", &e))?;
    let coord_addr = coord.grpc_addr.to_string();
    println!(
        "hybridgrid demo: coordinator on {coord_addr}, dashboard at http://{}/",
        coord.http_addr
    );
    let mut workers = Vec::new();
    for (i, ip) in ["127.0.0.2", "127.0.0.3"].iter().enumerate() {
        let mut wc = cfg.clone();
        wc.worker.id = Some(format!("demo-worker-{}", i + 1));
        wc.worker.grpc_addr = format!("{ip}:0");
        wc.worker.http_addr = format!("{ip}:0");
        wc.worker.coordinator = Some(coord_addr.clone());
        let w = hybridgrid_farm_worker::start_native_worker(&wc)
            .await
            .map_err(|e| step("starting worker", &e))?;
        println!(
            "  worker {} on {} ({} slots)",
            w.state.info.id, w.grpc_addr, w.state.info.capabilities.slots
        );
        workers.push(w);
    }
    let up = async {
        while coord.state.stats().workers.len() < workers.len() {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(std::time::Duration::from_secs(10), up)
        .await
        .map_err(|_| DemoError::Step("workers did not register within 10s".into()))?;

    let farm = out.join("farm");
    let plain = out.join("plain");
    for d in [&farm, &plain] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).map_err(|e| step(&format!("creating {}", d.display()), &e))?;
        std::fs::write(d.join("Makefile"), makefile(&src, &stems))
            .map_err(|e| step("writing Makefile", &e))?;
        std::fs::write(d.join("host.c"), HOST_MAIN).map_err(|e| step("writing host.c", &e))?;
    }
    println!(
        "building Lua {} ({} translation units) through the farm: hgbuild make -j8 -C {}",
        src.display(),
        stems.len(),
        farm.display()
    );
    // A cache of its own, fresh each run, so the first build always shows the farm at work.
    let cache_dir = out.join("cache");
    let _ = std::fs::remove_dir_all(&cache_dir);
    let env = vec![
        ("HG_CLIENT_COORDINATOR", coord_addr.clone()),
        ("HG_CACHE_DIR", cache_dir.display().to_string()),
    ];
    let make = |dir: &Path| {
        let (wrapper, dir, env) = (wrapper.to_owned(), dir.to_owned(), env.clone());
        tokio::task::spawn_blocking(move || {
            let args = ["-s".into(), "-j8".into(), "-C".into(), dir.into_os_string()];
            buildtool::run(&wrapper, "make".as_ref(), &args, None, &env)
        })
    };
    let t0 = Instant::now();
    let built = make(&farm)
        .await
        .map_err(|e| step("build task", &e))?
        .map_err(|e| step("hgbuild make", &e))?;
    let farm_secs = t0.elapsed().as_secs_f64();
    println!("{}", built.1.summary());
    if built.0 != 0 {
        return Err(DemoError::Step(format!(
            "the farm build failed with exit code {}",
            built.0
        )));
    }
    let t0 = Instant::now();
    let status = Command::new("make")
        .args(["-s", "-j2", "-C"])
        .arg(&plain)
        .status()
        .map_err(|e| step("plain make", &e))?;
    let plain_secs = t0.elapsed().as_secs_f64();
    if !status.success() {
        return Err(DemoError::Step("the plain local build failed".into()));
    }
    let mut same = 0;
    for o in stems.iter().chain(std::iter::once(&"host.o".to_owned())) {
        let (a, b) = (std::fs::read(farm.join(o)), std::fs::read(plain.join(o)));
        match (a, b) {
            (Ok(a), Ok(b)) if a == b => same += 1,
            _ if o == "luac.o" => {}
            _ => {
                return Err(DemoError::Step(format!(
                    "{o} differs between the farm and the local build"
                )));
            }
        }
    }
    println!(
        "farm build {farm_secs:.1}s, plain `make -j2` {plain_secs:.1}s; {same} objects byte-identical to the local build"
    );
    for w in coord.state.stats().workers {
        println!("  {}: {} tasks, circuit {}", w.id, w.done, w.circuit.state);
    }
    // The same build from a clean directory again: now every compile is a cache hit.
    let again = out.join("rebuild");
    let _ = std::fs::remove_dir_all(&again);
    std::fs::create_dir_all(&again).map_err(|e| step("creating the rebuild dir", &e))?;
    std::fs::write(again.join("Makefile"), makefile(&src, &stems))
        .map_err(|e| step("writing Makefile", &e))?;
    std::fs::write(again.join("host.c"), HOST_MAIN).map_err(|e| step("writing host.c", &e))?;
    let t0 = Instant::now();
    let rebuilt = make(&again)
        .await
        .map_err(|e| step("build task", &e))?
        .map_err(|e| step("hgbuild make", &e))?;
    println!(
        "rebuild from a clean directory through the compile cache: {:.2}s",
        t0.elapsed().as_secs_f64()
    );
    println!("{}", rebuilt.1.summary());
    let lua = farm.join("lua");
    let hello = Command::new(&lua)
        .arg("print(('hello from Lua built by hybridgrid: %d + %d = %d'):format(20, 22, 20 + 22))")
        .output()
        .map_err(|e| step(&format!("running {}", lua.display()), &e))?;
    print!("{}", String::from_utf8_lossy(&hello.stdout));
    println!("the interpreter is at {}", lua.display());
    for w in workers {
        w.shutdown().await;
    }
    coord.shutdown().await;
    Ok(())
}
