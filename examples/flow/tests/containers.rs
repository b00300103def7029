//! The example agents in real Docker containers: images built locally by
//! `docker/build-images.sh` (no pull), run with `--network none` over a mounted directory.
#![allow(clippy::unwrap_used)]

use serde_json::Value;
use std::path::Path;
use std::process::Command;

#[test]
fn agents_run_in_containers() {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_flow-secret-scanner"))
        .parent()
        .unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("docker/build-images.sh");
    let out = Command::new("sh")
        .arg(&script)
        .arg(bin_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "building images (is Docker running? bash /work/shared/services.sh docker): {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("token.txt"),
        format!("github = {}{}\n", "ghp_", "a".repeat(36)),
    )
    .unwrap();
    let mount = format!("{}:/workspace:ro", dir.path().display());
    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-v",
            &mount,
            "hybridgrid/flow-secret-scanner:local",
            r#"{"path": "/workspace"}"#,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["count"], 1, "{v}");
    assert_eq!(v["findings"][0]["rule"], "github-token");

    let out = Command::new("docker")
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "-e",
            r#"AGENT_INPUT={"channel":"console","message":"hi"}"#,
            "hybridgrid/flow-notifier:local",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["delivered"], true);
    assert!(String::from_utf8_lossy(&out.stderr).contains("hi"));
}
