//! End-to-end over mutual TLS: certificates made with the real `hg-coord cert init|issue`, then
//! the real `hg-coord`, two `hg-worker`s and `hgbuild make` build Lua (30+ files) with every gRPC
//! hop over mTLS; every object equals a plain local build. A client without a certificate or
//! token gets no remote compile, and its build still succeeds locally with the same objects.

mod support;

use std::path::Path;
use std::process::Command;
use support::*;

const CFLAGS: &str = "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD";

fn cert(args: &[&str]) {
    let (code, out, err) = run(Command::new(COORD).arg("cert").args(args));
    assert_eq!(code, 0, "hg-coord cert {args:?}: {out}{err}");
}

fn tls_env(ca: &Path, name: &str) -> Vec<(String, String)> {
    vec![
        ("HG_TLS_CA".into(), ca.join("ca.crt").display().to_string()),
        (
            "HG_TLS_CERT".into(),
            ca.join(format!("{name}.crt")).display().to_string(),
        ),
        (
            "HG_TLS_KEY".into(),
            ca.join(format!("{name}.key")).display().to_string(),
        ),
    ]
}

fn refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

#[test]
fn lua_builds_over_mtls_with_objects_equal_to_a_plain_build() {
    let tmp = TempDir::new("tls-build");
    let dir = tmp.path();
    let ca = dir.join("ca");
    let ca_s = ca.display().to_string();
    cert(&["init", "--dir", &ca_s]);
    cert(&[
        "issue",
        "--dir",
        &ca_s,
        "--role",
        "coordinator",
        "--name",
        "coord",
        "--host",
        "127.0.0.1",
    ]);
    for (id, ip) in [("w1", "127.0.0.2"), ("w2", "127.0.0.3")] {
        cert(&[
            "issue", "--dir", &ca_s, "--role", "worker", "--name", id, "--host", ip,
        ]);
    }
    cert(&["issue", "--dir", &ca_s, "--role", "client", "--name", "ci"]);

    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    assert!(stems.len() >= 30, "need 30+ files, have {}", stems.len());
    let coord_env = tls_env(&ca, "coord");
    let coord = Daemon::coordinator(dir, &refs(&coord_env));
    let w1_env = tls_env(&ca, "w1");
    let _w1 = Daemon::worker_with_env(dir, "w1", "127.0.0.2", &coord.grpc, &refs(&w1_env));
    let w2_env = tls_env(&ca, "w2");
    let _w2 = Daemon::worker_with_env(dir, "w2", "127.0.0.3", &coord.grpc, &refs(&w2_env));
    wait_workers_up(&coord.http, 2);

    let plain = dir.join("plain");
    write_makefile(&plain, &src, &stems, CFLAGS);
    let (code, _, err) = run(Command::new("make").args(["-s", "-j2", "-C"]).arg(&plain));
    assert_eq!(code, 0, "plain build: {err}");
    let plain_ref = dir.join("plain.ref");
    std::fs::rename(&plain, &plain_ref).expect("move plain build aside");

    // With the client certificate: every compile remote, over mTLS.
    write_makefile(&plain, &src, &stems, CFLAGS);
    let mut cmd = hgbuild(dir, &coord.grpc);
    cmd.envs(tls_env(&ca, "ci"))
        .env("HG_CACHE_ENABLED", "false")
        .env("HG_CLIENT_LOCAL_JOBS", "1")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&plain);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "mTLS build: {err}");
    assert!(err.contains(" 0 local fallbacks"), "summary: {err}");
    assert_same_outputs(&plain_ref, &plain, &stems);
    let s = stats(&coord.http);
    let done = s["tasks_done"].as_u64().unwrap_or(0);
    assert!(
        done > 0,
        "no compile went through the farm over mTLS: {s}\nsummary: {err}"
    );
    assert_eq!(s["tasks_failed"], 0, "{s}");

    // Without a certificate or token: the coordinator refuses the client; the build is local and
    // still correct.
    std::fs::remove_dir_all(&plain).expect("clean build dir");
    write_makefile(&plain, &src, &stems, CFLAGS);
    let mut cmd = hgbuild(dir, &coord.grpc);
    cmd.env("HG_TLS_CA", ca.join("ca.crt"))
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&plain);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "build without client credentials: {err}");
    assert_same_outputs(&plain_ref, &plain, &stems);
    let after = stats(&coord.http);
    assert_eq!(
        after["tasks_done"].as_u64().unwrap_or(0),
        done,
        "a client without credentials got remote compiles: {after}"
    );
}
