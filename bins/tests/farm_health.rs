//! The standard gRPC Health Checking Protocol on the coordinator's and the workers' gRPC ports,
//! checked with a third-party client: Python's `grpcio-health-checking` (installed by
//! `scripts/ci-deps/net.sh` under /opt/hybridgrid-test/py-grpc; the test fails when it is missing).

mod peers_support;
mod support;

use hybridgrid_farm_protocol::config::{FarmConfig, TlsSection};
use hybridgrid_transport::tls::Role;
use peers_support::{Farm, coordinator_config};
use std::process::Command;
use support::*;

/// Python with grpcio-health-checking.
fn python() -> String {
    let prefix =
        std::env::var("HG_TEST_PREFIX").unwrap_or_else(|_| "/opt/hybridgrid-test".to_owned());
    let py = format!("{prefix}/py-grpc/bin/python");
    assert!(
        std::path::Path::new(&py).exists(),
        "{py} missing: run scripts/ci-deps/net.sh (installs grpcio-health-checking)"
    );
    py
}

/// Checks each of `services` at `addr` (TLS with `ca` when given); one line per service: the
/// status name (`SERVING`, `NOT_SERVING`) or the gRPC error code (`NOT_FOUND`).
const CHECK: &str = r#"
import sys, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
addr, ca = sys.argv[1], sys.argv[2]
if ca:
    creds = grpc.ssl_channel_credentials(root_certificates=open(ca, "rb").read())
    channel = grpc.secure_channel(addr, creds)
else:
    channel = grpc.insecure_channel(addr)
stub = health_pb2_grpc.HealthStub(channel)
for name in sys.argv[3:]:
    try:
        r = stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=10)
        print(health_pb2.HealthCheckResponse.ServingStatus.Name(r.status))
    except grpc.RpcError as e:
        print(e.code().name)
"#;

fn check(addr: &str, ca: Option<&str>, services: &[&str]) -> Vec<String> {
    let mut cmd = Command::new(python());
    cmd.args(["-c", CHECK, addr, ca.unwrap_or("")])
        .args(services);
    let (code, out, err) = run(&mut cmd);
    assert_eq!(code, 0, "health client failed: {err}");
    out.lines().map(str::to_owned).collect()
}

#[test]
fn coordinator_and_worker_answer_grpc_health() {
    let dir = TempDir::new("health");
    let coord = Daemon::coordinator(dir.path(), &[]);
    let worker = Daemon::worker(dir.path(), "hw1", "127.0.0.1", &coord.grpc, None);
    assert_eq!(
        check(
            &coord.grpc,
            None,
            &["", "hybridgrid.v1.Coordinator", "no.such.Service"]
        ),
        ["SERVING", "SERVING", "NOT_FOUND"]
    );
    assert_eq!(
        check(
            &worker.grpc,
            None,
            &[
                "",
                hybridgrid_farm_worker::WORKER_SERVICE,
                hybridgrid_farm_worker::SANDBOX_SERVICE
            ]
        ),
        ["SERVING", "SERVING", "SERVING"]
    );
    // The compile service still answers on the same port.
    wait_workers_up(&coord.http, 1);
}

/// A worker on a host where no compiler sandbox works (user and network namespaces switched off
/// inside its own user namespace), run with `worker.allow_unsandboxed`: it serves, but its
/// sandbox service says `NOT_SERVING` to a third-party client.
#[test]
fn a_worker_without_a_sandbox_reports_the_sandbox_not_serving() {
    let dir = TempDir::new("health-nosandbox");
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut cmd = Command::new("unshare");
    cmd.args([
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_user_namespaces && echo 0 > /proc/sys/user/max_net_namespaces && exec \"$@\"",
        "sh",
        WORKER,
        "serve",
        "--id",
        "nosandbox",
        "--coordinator",
        "127.0.0.1:1",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .env("HG_WORKER_WORK_DIR", &work)
    .env("HG_WORKER_ALLOW_UNSANDBOXED", "true");
    let worker = Daemon::spawn_for_test(cmd, dir.path().join("w.log"), "serving gRPC on");
    assert!(
        worker.log_text().contains("NO compiler sandbox"),
        "the worker found a sandbox after all:\n{}",
        worker.log_text()
    );
    assert_eq!(
        check(
            &worker.grpc,
            None,
            &[
                "",
                hybridgrid_farm_worker::WORKER_SERVICE,
                hybridgrid_farm_worker::SANDBOX_SERVICE
            ]
        ),
        ["SERVING", "SERVING", "NOT_SERVING"]
    );
}

#[tokio::test]
async fn a_draining_worker_is_not_serving() {
    let mut cfg = FarmConfig::default();
    cfg.worker.grpc_addr = "127.0.0.1:0".into();
    cfg.worker.http_addr = "127.0.0.1:0".into();
    cfg.worker.id = Some("drainer".into());
    let worker = hybridgrid_farm_worker::start_native_worker(&cfg)
        .await
        .expect("worker starts");
    let addr = worker.grpc_addr.to_string();
    let services = ["", hybridgrid_farm_worker::WORKER_SERVICE];
    let a = addr.clone();
    let before = tokio::task::spawn_blocking(move || check(&a, None, &services))
        .await
        .expect("join");
    assert_eq!(before, ["SERVING", "SERVING"]);
    // Nothing runs, so the drain finishes at once; the worker keeps serving health until stopped.
    assert!(worker.state.drain(std::time::Duration::from_secs(5)).await);
    assert!(worker.state.is_draining());
    let a = addr.clone();
    let after = tokio::task::spawn_blocking(move || check(&a, None, &services))
        .await
        .expect("join");
    assert_eq!(after, ["NOT_SERVING", "NOT_SERVING"]);
    worker.shutdown().await;
}

#[tokio::test]
async fn health_over_tls() {
    let farm = Farm::new();
    let tls: TlsSection = farm.issue(Role::Coordinator, "coord");
    let cfg = coordinator_config(tls, &[]);
    let coord = hybridgrid_farm_coordinator::start_coordinator(&cfg, vec![])
        .await
        .expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    let ca = farm.ca_path().to_string_lossy().into_owned();
    let got = tokio::task::spawn_blocking(move || {
        check(&addr, Some(&ca), &["", "hybridgrid.v1.Coordinator"])
    })
    .await
    .expect("join");
    assert_eq!(got, ["SERVING", "SERVING"]);
    coord.shutdown().await;
}
