//! The TLS suite: certificates made in the test (farm CA, expired ones, another CA, wrong host
//! names), a real coordinator in process, and the error text each failure must give.

mod peers_support;

use hybridgrid_farm_coordinator::start_coordinator;
use hybridgrid_transport::pb;
use hybridgrid_transport::tls::Role;
use hybridgrid_transport::tls::certgen::Validity;
use peers_support::*;
use std::time::Duration;

fn hello() -> pb::InfoRequest {
    pb::InfoRequest {
        protocol_version: hybridgrid_core::PROTOCOL_VERSION,
    }
}

#[tokio::test]
async fn mtls_worker_and_token_client_succeed() {
    let farm = Farm::new();
    let cfg = coordinator_config(farm.issue(Role::Coordinator, "coord"), &["tok-1"]);
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let addr = coord.grpc_addr.to_string();

    // A worker with its own certificate registers and is dialled back over mTLS.
    let w1_tls = farm.issue(Role::Worker, "w1");
    let w1 = fake_worker("w1", Behaviour::Good, Some(&w1_tls)).await;
    let mut as_w1 = coordinator_client(&addr, &w1_tls, None)
        .await
        .expect("worker connects");
    as_w1
        .register(register(worker_info("w1", &w1.addr, 2, vec![gcc()])))
        .await
        .expect("w1 registers with its own id");

    // A client with only the CA and a token compiles; the task ran on w1 over mTLS.
    let mut client = coordinator_client(&addr, &farm.ca_only(), Some("tok-1"))
        .await
        .expect("client connects");
    let r = client
        .compile(compile_request("t1", gcc()))
        .await
        .expect("compile")
        .into_inner();
    assert_eq!(completed_by(&r), Some(("w1".into(), 1)), "{r:?}");
    assert_eq!(w1.calls.load(std::sync::atomic::Ordering::Relaxed), 1);

    // A client certificate works instead of a token.
    let mut by_cert = coordinator_client(&addr, &farm.issue(Role::Client, "ci"), None)
        .await
        .expect("cert client");
    by_cert
        .hello(hello())
        .await
        .expect("client certificate accepted");
    coord.shutdown().await;
}

#[tokio::test]
async fn missing_and_invalid_tokens_are_refused_with_their_reason() {
    let farm = Farm::new();
    let cfg = coordinator_config(farm.issue(Role::Coordinator, "coord"), &["tok-1"]);
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let addr = coord.grpc_addr.to_string();

    let mut none = coordinator_client(&addr, &farm.ca_only(), None)
        .await
        .expect("TLS connects");
    let e = none.hello(hello()).await.expect_err("no token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(
        e.message().contains("missing token") && e.message().contains("HG_CLIENT_TOKEN"),
        "{e:?}"
    );

    let mut wrong = coordinator_client(&addr, &farm.ca_only(), Some("guess"))
        .await
        .expect("TLS connects");
    let e = wrong.hello(hello()).await.expect_err("wrong token");
    assert_eq!(e.code(), tonic::Code::Unauthenticated);
    assert!(
        e.message().contains("invalid token") && e.message().contains("not accepted"),
        "{e:?}"
    );
    assert!(
        !e.message().contains("guess"),
        "the token is not echoed: {e:?}"
    );

    // A worker's certificate does not make client calls.
    let mut worker = coordinator_client(&addr, &farm.issue(Role::Worker, "w9"), None)
        .await
        .expect("connects");
    let e = worker.hello(hello()).await.expect_err("worker cert");
    assert_eq!(e.code(), tonic::Code::PermissionDenied, "{e:?}");
    coord.shutdown().await;
}

#[tokio::test]
async fn expired_certificates_name_which_and_when() {
    let farm = Farm::new();
    // The coordinator's own certificate expired: the client says so, naming it and the time.
    let expired = farm.issue_with(
        Role::Coordinator,
        "old-coord",
        &["127.0.0.1"],
        Validity::expired(Duration::from_secs(3 * 86400)),
    );
    let coord = start_coordinator(&coordinator_config(expired, &[]), vec![])
        .await
        .expect("coordinator");
    let e = coordinator_client(&coord.grpc_addr.to_string(), &farm.ca_only(), None)
        .await
        .expect_err("expired server certificate refused");
    assert!(
        e.contains("server certificate") && e.contains("CN=old-coord") && e.contains("expired at"),
        "{e}"
    );
    coord.shutdown().await;

    // A client's certificate expired: the coordinator refuses it and the client explains.
    let coord = start_coordinator(
        &coordinator_config(farm.issue(Role::Coordinator, "coord"), &[]),
        vec![],
    )
    .await
    .expect("coordinator");
    let old_client = farm.issue_with(
        Role::Client,
        "old-ci",
        &[],
        Validity::expired(Duration::from_secs(86400)),
    );
    let e = coordinator_client(&coord.grpc_addr.to_string(), &old_client, None)
        .await
        .expect_err("expired client certificate refused");
    assert!(
        e.contains("refused this side's certificate")
            && e.contains("CN=old-ci")
            && e.contains("expired at"),
        "{e}"
    );
    coord.shutdown().await;
}

#[tokio::test]
async fn wrong_ca_is_named_unknown_ca() {
    let farm = Farm::new();
    let other = Farm::named("other farm CA");
    let coord = start_coordinator(
        &coordinator_config(farm.issue(Role::Coordinator, "coord"), &[]),
        vec![],
    )
    .await
    .expect("coordinator");
    let addr = coord.grpc_addr.to_string();
    // The client trusts another CA: the coordinator's certificate is from an unknown CA.
    let e = coordinator_client(&addr, &other.ca_only(), None)
        .await
        .expect_err("refused");
    assert!(
        e.contains("unknown CA") && !e.contains("other farm CA") && e.contains("test farm CA"),
        "{e}"
    );
    // Another CA that merely has the farm CA's name is not the farm CA either.
    let twin = Farm::new();
    let e = coordinator_client(&addr, &twin.ca_only(), None)
        .await
        .expect_err("refused");
    assert!(
        e.contains("unknown CA") && e.contains("not signed by the farm CA"),
        "{e}"
    );
    // A worker with a certificate from another CA cannot even connect, so cannot register.
    let mut stranger = other.issue(Role::Worker, "w1");
    stranger.ca = Some(farm.ca_path());
    let e = coordinator_client(&addr, &stranger, None)
        .await
        .expect_err("refused");
    assert!(
        e.contains("refused this side's certificate") && e.contains("unknown CA"),
        "{e}"
    );
    coord.shutdown().await;
}

#[tokio::test]
async fn hostname_mismatch_names_expected_and_presented() {
    let farm = Farm::new();
    let tls = farm.issue_with(
        Role::Coordinator,
        "coord",
        &["coord.example", "10.9.9.9"],
        Validity::days(1),
    );
    let coord = start_coordinator(&coordinator_config(tls, &[]), vec![])
        .await
        .expect("coordinator");
    let e = coordinator_client(&coord.grpc_addr.to_string(), &farm.ca_only(), None)
        .await
        .expect_err("name mismatch refused");
    assert!(
        e.contains("hostname mismatch") && e.contains("expected \"127.0.0.1\""),
        "{e}"
    );
    assert!(e.contains("coord.example") && e.contains("10.9.9.9"), "{e}");
    coord.shutdown().await;
}

#[tokio::test]
async fn plaintext_is_refused_off_loopback() {
    // Serving: a non-loopback address without TLS does not start.
    let mut cfg = coordinator_config(Default::default(), &[]);
    cfg.coordinator.grpc_addr = "0.0.0.0:0".into();
    let Err(e) = start_coordinator(&cfg, vec![]).await else {
        panic!("a plaintext coordinator on 0.0.0.0 started");
    };
    let e = e.to_string();
    assert!(
        e.contains("not a loopback address") && e.contains("tls.insecure"),
        "{e}"
    );
    // ... unless the user says so explicitly.
    cfg.tls.insecure = true;
    let coord = start_coordinator(&cfg, vec![])
        .await
        .expect("insecure allowed");
    coord.shutdown().await;
    // Dialling: plain text to a non-loopback address is refused before connecting.
    let e = coordinator_client("192.0.2.1:9000", &Default::default(), None)
        .await
        .expect_err("refused");
    assert!(
        e.contains("refusing plain-text gRPC with 192.0.2.1:9000"),
        "{e}"
    );
    // The default listen address without TLS is loopback.
    let d = hybridgrid_farm_protocol::config::FarmConfig::default();
    assert_eq!(d.coordinator.grpc_listen(&d.tls), "127.0.0.1:9000");
}

#[tokio::test]
async fn api_stats_needs_the_token_when_configured() {
    let mut cfg = coordinator_config(Default::default(), &[]);
    cfg.coordinator.api_token = Some(hybridgrid_farm_protocol::config::Token::new("api-tok"));
    let coord = start_coordinator(&cfg, vec![]).await.expect("coordinator");
    let http = coord.http_addr.to_string();
    let get = move |auth: Option<&str>, method: &str| {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&http).expect("connect");
        let auth = auth
            .map(|a| format!("Authorization: Bearer {a}\r\n"))
            .unwrap_or_default();
        write!(s, "{method} /api/stats HTTP/1.1\r\nHost: x\r\n{auth}Content-Length: 0\r\nConnection: close\r\n\r\n").expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).expect("read");
        out
    };
    let (a, b, c, d) = tokio::task::spawn_blocking(move || {
        (
            get(None, "GET"),
            get(Some("nope"), "GET"),
            get(Some("api-tok"), "GET"),
            get(Some("api-tok"), "DELETE"),
        )
    })
    .await
    .expect("http");
    assert!(
        a.starts_with("HTTP/1.1 401") && a.contains("requires a token"),
        "{a}"
    );
    assert!(
        b.starts_with("HTTP/1.1 401") && b.contains("not accepted"),
        "{b}"
    );
    assert!(
        c.starts_with("HTTP/1.1 200") && c.contains("coordinator_id"),
        "{c}"
    );
    assert!(!d.starts_with("HTTP/1.1 200"), "{d}");
    coord.shutdown().await;
}
