//! Where the third-party programs live (installed by `scripts/ci-deps/llm.sh`), and running a
//! test inside a network namespace with loopback only.
#![allow(dead_code, clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::Duration;

/// The install prefix: `HG_TEST_PREFIX`, default `/opt/hybridgrid-test`.
pub fn prefix() -> PathBuf {
    PathBuf::from(std::env::var("HG_TEST_PREFIX").unwrap_or_else(|_| "/opt/hybridgrid-test".into()))
}

/// A program under the prefix; panics naming the install script when it is missing.
pub fn dep(rel: &str) -> PathBuf {
    let p = prefix().join(rel);
    assert!(
        p.exists(),
        "{} is missing: run `bash scripts/ci-deps/llm.sh` (installs under HG_TEST_PREFIX, default /opt/hybridgrid-test)",
        p.display()
    );
    p
}

/// Node 22.
pub fn node() -> String {
    dep("npm/node_modules/.bin/node").display().to_string()
}

/// The entry script of an npm package's bin.
pub fn npm_script(package: &str, script: &str) -> String {
    dep(&format!("npm/node_modules/{package}/{script}"))
        .display()
        .to_string()
}

/// `PATH` with the prefix's node 22 and npm bins first.
pub fn path_with_deps() -> String {
    format!(
        "{}:{}:{}:{}",
        prefix().join("npm/node_modules/.bin").display(),
        prefix().join("py-time/bin").display(),
        prefix().join("py-aider/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Runs the calling test again inside `unshare -n` (loopback only, brought up) and asserts it
/// passed there. Returns `true` when the caller is already inside and should do the work.
pub fn in_netns(test_name: &str) -> bool {
    if std::env::var_os("HG_IN_NETNS").is_some() {
        return true;
    }
    let exe = std::env::current_exe().unwrap();
    let mut child = std::process::Command::new("unshare")
        .args([
            "-n",
            "--",
            "sh",
            "-c",
            "ip link set lo up && exec \"$0\" \"$@\"",
        ])
        .arg(&exe)
        .args([test_name, "--exact", "--nocapture", "--test-threads=1"])
        .env("HG_IN_NETNS", "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("unshare -n (needs root or user namespaces; apt-get install util-linux iproute2)");
    // Bounded: the inner test has its own timeouts; this is the last guard.
    let deadline = std::time::Instant::now() + Duration::from_secs(170);
    loop {
        if let Some(_status) = child.try_wait().unwrap() {
            break;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("{test_name} inside the network namespace did not finish in 170 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("1 passed"),
        "{test_name} failed inside the network namespace ({}):\n{stdout}\n{stderr}",
        out.status
    );
    false
}
