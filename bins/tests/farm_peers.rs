//! Fake peers against a real coordinator: what a hostile or broken worker or client can no longer
//! do (register without a certificate, take another worker's id, announce absurd slots, open other
//! workers' circuits), and broken workers (black hole, INVALID_SPEC to everything) routed around.

mod peers_support;

use hybridgrid_core::PROTOCOL_VERSION;
use hybridgrid_farm_coordinator::start_coordinator;
use hybridgrid_transport::pb;
use hybridgrid_transport::tls::Role;
use peers_support::*;
use std::sync::atomic::Ordering;

fn heartbeat(id: &str) -> pb::HeartbeatRequest {
    pb::HeartbeatRequest {
        protocol_version: PROTOCOL_VERSION,
        worker_id: id.into(),
        in_flight: 0,
    }
}

fn mismatch(worker: &str, task: &str) -> pb::MismatchReport {
    pb::MismatchReport {
        protocol_version: PROTOCOL_VERSION,
        worker_id: worker.into(),
        task_id: task.into(),
        detail: "bytes differ\n[fake] injected log line".into(),
    }
}

#[tokio::test]
async fn no_registration_without_a_valid_certificate_and_no_id_takeover() {
    let farm = Farm::new();
    let cfg = coordinator_config(farm.issue(Role::Coordinator, "coord"), &["tok"]);
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let addr = coord.grpc_addr.to_string();

    // No certificate at all (TLS with the CA only): refused.
    let mut anon = coordinator_client(&addr, &farm.ca_only(), Some("tok"))
        .await
        .expect("connects");
    let e = anon
        .register(register(worker_info("w1", "127.0.0.1:1", 2, vec![gcc()])))
        .await
        .expect_err("no certificate");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    assert!(e.message().contains("must present a certificate"), "{e:?}");

    // The real w1 registers.
    let w1_tls = farm.issue(Role::Worker, "w1");
    let w1 = fake_worker("w1", Behaviour::Good, Some(&w1_tls)).await;
    let mut real = coordinator_client(&addr, &w1_tls, None)
        .await
        .expect("connects");
    real.register(register(worker_info("w1", &w1.addr, 2, vec![gcc()])))
        .await
        .expect("w1 registers");

    // An attacker with a valid certificate for another id cannot take w1's place, nor answer its heartbeats.
    let evil_tls = farm.issue(Role::Worker, "evil");
    let evil = fake_worker("evil", Behaviour::Good, Some(&evil_tls)).await;
    let mut attacker = coordinator_client(&addr, &evil_tls, None)
        .await
        .expect("connects");
    let e = attacker
        .register(register(worker_info("w1", &evil.addr, 2, vec![gcc()])))
        .await
        .expect_err("takeover");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert!(
        e.message().contains("does not match") && e.message().contains("worker:evil"),
        "{e:?}"
    );
    let e = attacker
        .heartbeat(heartbeat("w1"))
        .await
        .expect_err("heartbeat as w1");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // A client certificate cannot register a worker either.
    let mut client_cert = coordinator_client(&addr, &farm.issue(Role::Client, "w1"), None)
        .await
        .expect("connects");
    let e = client_cert
        .register(register(worker_info("w1", &evil.addr, 2, vec![gcc()])))
        .await
        .expect_err("client cert as worker");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");

    // Compiles still go to the real w1 (at its own address).
    let mut client = coordinator_client(&addr, &farm.ca_only(), Some("tok"))
        .await
        .expect("client");
    let r = client
        .compile(compile_request("t-1", gcc()))
        .await
        .expect("compile")
        .into_inner();
    assert_eq!(completed_by(&r), Some(("w1".into(), 1)), "{r:?}");
    assert_eq!(
        evil.calls.load(Ordering::Relaxed),
        0,
        "the attacker never received work"
    );
    coord.shutdown().await;
}

#[tokio::test]
async fn plaintext_loopback_refuses_taking_over_a_live_id() {
    let coord = start_coordinator(&coordinator_config(Default::default(), &[]), vec![])
        .await
        .expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    let w1 = fake_worker("w1", Behaviour::Good, None).await;
    let other = fake_worker("w1", Behaviour::Good, None).await;
    let mut c = coordinator_client(&addr, &Default::default(), None)
        .await
        .expect("connects");
    c.register(register(worker_info("w1", &w1.addr, 2, vec![gcc()])))
        .await
        .expect("w1");
    let e = c
        .register(register(worker_info("w1", &other.addr, 2, vec![gcc()])))
        .await
        .expect_err("takeover of a live id");
    assert_eq!(e.code(), tonic::Code::AlreadyExists, "{e:?}");
    assert!(e.message().contains("still heartbeating"), "{e:?}");
    coord.shutdown().await;
}

#[tokio::test]
async fn absurd_slots_and_hashless_toolchains_are_refused() {
    let coord = start_coordinator(&coordinator_config(Default::default(), &[]), vec![])
        .await
        .expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    let mut c = coordinator_client(&addr, &Default::default(), None)
        .await
        .expect("connects");
    let w = fake_worker("w1", Behaviour::Good, None).await;
    let e = c
        .register(register(worker_info("w1", &w.addr, u32::MAX, vec![gcc()])))
        .await
        .expect_err("u32::MAX slots");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("coordinator.max_worker_slots"),
        "{e:?}"
    );
    let e = c
        .register(register(worker_info(
            "w1\nFAKE LOG",
            &w.addr,
            2,
            vec![gcc()],
        )))
        .await
        .expect_err("control characters in the id");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");

    // A toolchain without a binary hash matches nothing: not the worker's, not the request's.
    let mut hashless = gcc();
    hashless.binary_hash.clear();
    c.register(register(worker_info(
        "w1",
        &w.addr,
        2,
        vec![hashless.clone()],
    )))
    .await
    .expect("registers, without the hashless toolchain");
    let r = c
        .compile(compile_request("t-1", gcc()))
        .await
        .expect("compile")
        .into_inner();
    assert_eq!(
        fallback_reason(&r).as_deref(),
        Some("no_matching_toolchain"),
        "{r:?}"
    );
    let r = c
        .compile(compile_request("t-2", hashless))
        .await
        .expect("compile")
        .into_inner();
    assert_eq!(
        fallback_reason(&r).as_deref(),
        Some("no_matching_toolchain"),
        "{r:?}"
    );
    assert_eq!(w.calls.load(Ordering::Relaxed), 0);
    // The announced slots never exceed the bound in what clients are told.
    let hello = c
        .hello(pb::InfoRequest {
            protocol_version: PROTOCOL_VERSION,
        })
        .await
        .expect("hello")
        .into_inner();
    assert!(hello.total_slots <= 256, "{hello:?}");
    coord.shutdown().await;
}

#[tokio::test]
async fn clients_cannot_open_other_workers_circuits() {
    let mut cfg = coordinator_config(Default::default(), &["tok-a", "tok-b"]);
    cfg.coordinator.mismatch_reports_per_minute = 5;
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    let w1 = fake_worker("w1", Behaviour::Good, None).await;
    let mut a = coordinator_client(&addr, &Default::default(), Some("tok-a"))
        .await
        .expect("a");
    let mut b = coordinator_client(&addr, &Default::default(), Some("tok-b"))
        .await
        .expect("b");
    let mut anon = coordinator_client(&addr, &Default::default(), None)
        .await
        .expect("anon");
    a.register(register(worker_info("w1", &w1.addr, 4, vec![gcc()])))
        .await
        .expect("w1");

    // Unauthenticated: refused.
    let e = anon
        .report_mismatch(mismatch("w1", "t-a"))
        .await
        .expect_err("anonymous");
    assert_eq!(e.code(), tonic::Code::Unauthenticated, "{e:?}");
    // For a task never run: refused.
    let e = a
        .report_mismatch(mismatch("w1", "made-up"))
        .await
        .expect_err("arbitrary task");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // A's task, reported by B: refused.
    let r = a
        .compile(compile_request("t-a", gcc()))
        .await
        .expect("compile")
        .into_inner();
    assert_eq!(completed_by(&r), Some(("w1".into(), 1)));
    let e = b
        .report_mismatch(mismatch("w1", "t-a"))
        .await
        .expect_err("someone else's task");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    assert_eq!(
        coord.state.stats().workers[0].circuit.state,
        hybridgrid_core::CircuitState::Closed
    );
    // A's own result: accepted, and the circuit opens.
    a.report_mismatch(mismatch("w1", "t-a"))
        .await
        .expect("own result");
    assert_eq!(
        coord.state.stats().workers[0].circuit.state,
        hybridgrid_core::CircuitState::Open
    );
    // Once per task, and at most `mismatch_reports_per_minute` per client.
    let e = a
        .report_mismatch(mismatch("w1", "t-a"))
        .await
        .expect_err("twice");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    // (A has made 3 reports; every attempt counts toward the bound.)
    let e = a
        .report_mismatch(mismatch("w1", "whatever"))
        .await
        .expect_err("4th");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = a
        .report_mismatch(mismatch("w1", "whatever"))
        .await
        .expect_err("5th");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    let e = a
        .report_mismatch(mismatch("w1", "t-a"))
        .await
        .expect_err("rate");
    assert_eq!(e.code(), tonic::Code::ResourceExhausted, "{e:?}");
    coord.shutdown().await;
}

async fn routed_around(bad: Behaviour) {
    let mut cfg = coordinator_config(Default::default(), &[]);
    // A black hole costs each call its deadline: keep it short.
    cfg.coordinator.task_timeout = hybridgrid_core::config::HumanDuration::from_secs(1);
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    let broken = fake_worker("broken", bad, None).await;
    let good = fake_worker("good", Behaviour::Good, None).await;
    let mut c = coordinator_client(&addr, &Default::default(), None)
        .await
        .expect("connects");
    c.register(register(worker_info(
        "broken",
        &broken.addr,
        8,
        vec![gcc()],
    )))
    .await
    .expect("broken");
    c.register(register(worker_info("good", &good.addr, 1, vec![gcc()])))
        .await
        .expect("good");
    let mut attempts = Vec::new();
    for i in 0..8 {
        let r = c
            .compile(compile_request(&format!("t-{i}"), gcc()))
            .await
            .expect("compile")
            .into_inner();
        let (worker, n) =
            completed_by(&r).unwrap_or_else(|| panic!("compile {i} fell back: {r:?}"));
        assert_eq!(worker, "good");
        attempts.push(n);
    }
    let tried_broken = broken.calls.load(Ordering::Relaxed);
    assert!(
        tried_broken <= 3,
        "{bad:?} worker got {tried_broken} calls: {attempts:?}"
    );
    assert!(
        attempts[4..].iter().all(|n| *n == 1),
        "later compiles go straight to the good worker: {attempts:?}"
    );
    let s = coord.state.stats();
    let b = s
        .workers
        .iter()
        .find(|w| w.id.as_str() == "broken")
        .expect("broken listed");
    assert_eq!(
        b.circuit.state,
        hybridgrid_core::CircuitState::Open,
        "{b:?}"
    );
    coord.shutdown().await;
}

#[tokio::test]
async fn black_hole_worker_is_routed_around() {
    routed_around(Behaviour::BlackHole).await;
}

#[tokio::test]
async fn invalid_spec_worker_is_routed_around() {
    routed_around(Behaviour::InvalidSpec).await;
}
