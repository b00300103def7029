//! The guide's "Docker not available" for a socket that exists but this user may not open:
//! `hg-worker` run as `nobody` (no supplementary groups, so not in the `docker` group) against the
//! real engine socket, `/var/run/docker.sock`. `hg-worker serve` with image toolchains (the Docker
//! executor connects at start) refuses to start, and `hg-worker doctor` fails the engine check;
//! both name the socket and the `usermod -aG docker` fix. The same commands as root reach the
//! engine, so only the permission is at fault. Needs root, `setpriv` (util-linux) and the engine
//! (`scripts/services.sh docker`).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use support::*;

const SOCKET: &str = "/var/run/docker.sock";

/// `program` as `nobody`/`nogroup` with no supplementary groups.
fn as_nobody(program: &str) -> Command {
    let mut c = Command::new("setpriv");
    c.args([
        "--reuid=nobody",
        "--regid=nogroup",
        "--clear-groups",
        "--",
        program,
    ]);
    c
}

/// A directory `nobody` may read and write (the test's own temp dir is root's).
fn open_dir(dir: &Path) {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o777)).expect("chmod");
}

/// The preconditions, checked so that a failure names them: the socket is there, root can use
/// it, and `nobody` is not let in by its mode.
fn check_socket() {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let meta = std::fs::metadata(SOCKET)
        .unwrap_or_else(|e| panic!("{SOCKET}: {e} (start the engine: scripts/services.sh docker)"));
    assert!(meta.file_type().is_socket(), "{SOCKET} is not a socket");
    assert_eq!(
        meta.mode() & 0o006,
        0,
        "{SOCKET} is open to every user (mode {:o}): nothing to test",
        meta.mode() & 0o777
    );
}

/// A worker config with one image toolchain on the real engine.
fn worker_config(dir: &Path) -> std::path::PathBuf {
    let work = dir.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    open_dir(&work);
    let cfg = dir.join("worker.yaml");
    std::fs::write(
        &cfg,
        format!(
            "worker:\n  grpc_addr: 127.0.0.1:0\n  http_addr: 127.0.0.1:0\n  work_dir: {}\n  docker:\n    socket: unix://{SOCKET}\n    toolchains:\n      - image: hg-docker-access:1\n        compiler: /usr/bin/gcc\n",
            work.display()
        ),
    )
    .expect("write config");
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    cfg
}

#[test]
fn a_docker_socket_this_user_may_not_open_is_docker_not_available_with_the_usermod_fix() {
    check_socket();
    let tmp = TempDir::new("docker-access");
    let dir = tmp.path();
    open_dir(dir);
    let cfg = worker_config(dir);

    // The Docker executor, connecting at the worker's start.
    let (code, out, err) = run(as_nobody(WORKER)
        .args(["serve", "--config"])
        .arg(&cfg)
        .env("HOME", dir)
        .env("HG_DISCOVERY_MDNS", "false")
        .env_remove("HG_CONFIG"));
    assert_ne!(
        code, 0,
        "a worker that cannot use Docker started: {out}{err}"
    );
    let line = err
        .lines()
        .find(|l| l.contains("Docker not available"))
        .unwrap_or_else(|| panic!("no \"Docker not available\" error:\n{err}"));
    assert!(
        line.contains("permission denied")
            && line.contains(SOCKET)
            && line.contains("usermod -aG docker")
            && line.contains("uid 65534"),
        "the error does not say what is wrong and how to fix it: {line}"
    );

    // The doctor, as the same user.
    let (code, out, err) = run(as_nobody(WORKER)
        .args(["doctor", "--config"])
        .arg(&cfg)
        .args(["--docker-host", &format!("unix://{SOCKET}")])
        .env("HOME", dir)
        .env_remove("HG_CONFIG")
        .env_remove("DOCKER_HOST"));
    assert_ne!(code, 0, "doctor passed: {out}{err}");
    let line = out
        .lines()
        .find(|l| l.contains("[FAIL] Docker engine"))
        .unwrap_or_else(|| panic!("no failed Docker engine check:\n{out}{err}"));
    assert!(
        line.contains("Docker not available")
            && line.contains("ermission denied")
            && line.contains("usermod -aG docker"),
        "{line}"
    );

    // Root reaches the same engine: only the permission was at fault.
    let (_, out, err) = run(Command::new(WORKER)
        .args(["doctor", "--config"])
        .arg(&cfg)
        .args(["--docker-host", &format!("unix://{SOCKET}")])
        .env("HOME", dir)
        .env_remove("HG_CONFIG")
        .env_remove("DOCKER_HOST"));
    assert!(out.contains("[ ok ] Docker engine"), "{out}{err}");
}
