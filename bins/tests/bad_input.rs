//! Bad input never panics or hangs: each gets a clear error naming what is wrong.

mod support;

use hybridgrid_transport::pb;
use std::process::Command;
use std::time::Duration;
use support::*;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

/// Runs `cmd` to completion, killing it after `limit` (a hang guard, not a timing assertion).
fn run_bounded(cmd: &mut Command, limit: Duration) -> (i32, String, String) {
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let ok = wait_until(limit, || matches!(child.try_wait(), Ok(Some(_))));
    if !ok {
        let _ = child.kill();
        panic!("{cmd:?} hung for more than {limit:?}");
    }
    let out = child.wait_with_output().expect("output");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn unknown_compiler_is_a_clear_error() {
    let tmp = TempDir::new("unknown-cc");
    let dir = tmp.path();
    std::fs::write(dir.join("x.c"), "int x;\n").expect("write");
    let (code, _, err) = run_bounded(
        hgbuild(dir, "127.0.0.1:1")
            .args(["/nonexistent/gcc", "-c", "x.c"])
            .current_dir(dir),
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("compiler \"/nonexistent/gcc\" not found"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    let (code, _, err) = run_bounded(
        hgbuild(dir, "127.0.0.1:1")
            .args(["gcc-99", "-c", "x.c"])
            .current_dir(dir),
        Duration::from_secs(30),
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("gcc-99"), "{err}");
    let (code, _, err) = run_bounded(
        hgbuild(dir, "127.0.0.1:1")
            .args(["frobnicate-cc", "-c", "x.c"])
            .current_dir(dir),
        Duration::from_secs(30),
    );
    assert_ne!(code, 0);
    assert!(err.contains("frobnicate-cc"), "{err}");
}

#[test]
fn unreachable_or_silent_coordinator_falls_back_locally_and_logs_it() {
    let tmp = TempDir::new("nocoord");
    let dir = tmp.path();
    std::fs::write(dir.join("x.c"), "int x(void) { return 42; }\n").expect("write");
    // Nothing listens on port 1.
    let (code, _, err) = run_bounded(
        hgbuild(dir, "127.0.0.1:1")
            .args(["cc", "-c", "x.c", "-o", "x.o"])
            .current_dir(dir),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    // The compile's stderr is the compiler's (empty here); the fallback is in the log file.
    assert_eq!(err, "");
    let farm_log = || std::fs::read_to_string(dir.join("hgbuild.log")).unwrap_or_default();
    assert!(
        farm_log().contains("coordinator 127.0.0.1:1 unreachable"),
        "{}",
        farm_log()
    );
    assert!(dir.join("x.o").exists());
    // A listener that accepts and never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    let held = std::thread::spawn(move || {
        let conns: Vec<_> = silent.incoming().take(1).collect();
        std::thread::sleep(Duration::from_secs(20));
        drop(conns);
    });
    let (code, _, err) = run_bounded(
        hgbuild(dir, &addr)
            .env("HG_CLIENT_CONNECT_TIMEOUT", "1s")
            // The same source again: without this it is a cache hit that asks no coordinator.
            .env("HG_CACHE_ENABLED", "false")
            .args(["cc", "-c", "x.c", "-o", "y.o"])
            .current_dir(dir),
        Duration::from_secs(60),
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(err, "");
    assert!(farm_log().contains("did not answer"), "{}", farm_log());
    assert!(dir.join("y.o").exists());
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    assert_eq!(
        log.matches("fallback coordinator_unreachable").count(),
        2,
        "{log}"
    );
    drop(held);
}

#[test]
fn bad_config_values_fail_at_start_naming_the_key() {
    let tmp = TempDir::new("badcfg");
    let dir = tmp.path();
    type Case<'a> = (&'a str, &'a [(&'a str, &'a str)], &'a str);
    let cases: &[Case] = &[
        (
            WORKER,
            &[("HG_WORKER_TASK_TIMEOUT", "-5m")],
            "worker.task_timeout",
        ),
        (
            WORKER,
            &[("HG_WORKER_TASK_TIMEOUT", "banana")],
            "worker.task_timeout",
        ),
        (COORD, &[("HG_LOG_LEVEL", "loud")], "logging.level"),
        (
            COORD,
            &[("HG_COORDINATOR_STATIC_WORKERS", "10.0.0.1")],
            "coordinator.static_workers[0]",
        ),
    ];
    for (bin, env, key) in cases {
        let mut cmd = Command::new(bin);
        cmd.args(["serve"]).envs(env.iter().copied());
        let (code, _, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        assert_eq!(code, 1, "{bin} {env:?}: {err}");
        assert!(err.contains(key), "{bin} {env:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "one line: {err}");
    }
    let file = dir.join("bad.yaml");
    std::fs::write(&file, "worker:\n  task_timeout: 5 parsecs\n").expect("write");
    let (code, _, err) = run_bounded(
        Command::new(WORKER).args(["serve", "--config"]).arg(&file),
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("worker.task_timeout") && err.contains("parsecs"),
        "{err}"
    );
    std::fs::write(&file, "worker: [oops\n").expect("write");
    let (code, _, err) = run_bounded(
        Command::new(WORKER).args(["serve", "--config"]).arg(&file),
        Duration::from_secs(30),
    );
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("not valid YAML") && err.contains("bad.yaml"),
        "{err}"
    );
}

#[derive(Clone, Default)]
struct RawCodec;
struct RawEncoder;
struct RawDecoder;

impl Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = Vec<u8>;
    type Encoder = RawEncoder;
    type Decoder = RawDecoder;
    fn encoder(&mut self) -> RawEncoder {
        RawEncoder
    }
    fn decoder(&mut self) -> RawDecoder {
        RawDecoder
    }
}

impl Encoder for RawEncoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn encode(&mut self, item: Vec<u8>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        use prost::bytes::BufMut;
        dst.put_slice(&item);
        Ok(())
    }
}

impl Decoder for RawDecoder {
    type Item = Vec<u8>;
    type Error = tonic::Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Vec<u8>>, tonic::Status> {
        use prost::bytes::Buf;
        let v = src.chunk().to_vec();
        src.advance(v.len());
        Ok(Some(v))
    }
}

async fn raw_call(addr: &str, path: &'static str, body: Vec<u8>) -> Result<Vec<u8>, tonic::Status> {
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(ch);
    grpc.ready().await.expect("ready");
    grpc.unary(
        tonic::Request::new(body),
        tonic::codegen::http::uri::PathAndQuery::from_static(path),
        RawCodec,
    )
    .await
    .map(|r| r.into_inner())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_grpc_payloads_are_refused_and_daemons_keep_serving() {
    let tmp = TempDir::new("garbage");
    let dir = tmp.path().to_owned();
    let coord = Daemon::coordinator(&dir, &[]);
    let worker = Daemon::worker(&dir, "w1", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    for (addr, path) in [
        (&coord.grpc, "/hybridgrid.v1.Coordinator/Compile"),
        (&coord.grpc, "/hybridgrid.v1.Coordinator/Register"),
        (&coord.grpc, "/hybridgrid.v1.Coordinator/Heartbeat"),
        (&worker.grpc, "/hybridgrid.v1.Worker/Execute"),
    ] {
        let r = raw_call(addr, path, garbage.clone()).await;
        assert!(r.is_err(), "{path} accepted garbage");
    }
    // Well-formed protobuf, wrong content: refused with a message naming the field.
    use prost::Message;
    let no_spec = pb::CompileRequest {
        protocol_version: 1,
        toolchain: Some(pb::Toolchain::default()),
        ..Default::default()
    };
    let err = raw_call(
        &coord.grpc,
        "/hybridgrid.v1.Coordinator/Compile",
        no_spec.encode_to_vec(),
    )
    .await
    .expect_err("no spec");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    assert!(err.message().contains("spec"), "{err:?}");
    let skewed = pb::InfoRequest {
        protocol_version: 99,
    };
    let err = raw_call(
        &coord.grpc,
        "/hybridgrid.v1.Coordinator/Hello",
        skewed.encode_to_vec(),
    )
    .await
    .expect_err("skew");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err:?}");
    assert!(
        err.message().contains("99") && err.message().contains(" 1"),
        "both versions named: {err:?}"
    );
    let zero_slots = pb::RegisterRequest {
        protocol_version: 1,
        worker: Some(pb::WorkerInfo {
            id: "evil".into(),
            addr: "127.0.0.9:1".into(),
            capabilities: Some(pb::Capabilities {
                slots: 0,
                ..Default::default()
            }),
            protocol_version: 1,
        }),
    };
    let err = raw_call(
        &coord.grpc,
        "/hybridgrid.v1.Coordinator/Register",
        zero_slots.encode_to_vec(),
    )
    .await
    .expect_err("0 slots");
    assert!(err.message().contains("slots"), "{err:?}");
    let no_toolchain = pb::ExecuteRequest {
        protocol_version: 1,
        spec: Some(pb::TaskSpec {
            command: vec!["sh".into(), "-c".into(), "id".into()],
            timeout_ms: 1000,
            ..Default::default()
        }),
        toolchain: None,
    };
    let resp = raw_call(
        &worker.grpc,
        "/hybridgrid.v1.Worker/Execute",
        no_toolchain.encode_to_vec(),
    )
    .await
    .expect("answer");
    let resp = pb::ExecuteResponse::decode(resp.as_slice()).expect("decode");
    assert!(
        matches!(resp.result, Some(pb::execute_response::Result::Failure(_))),
        "a worker ran an arbitrary command: {resp:?}"
    );
    // Both still serve.
    assert_eq!(http_get(&coord.http, "/health").0, 200);
    assert_eq!(http_get(&worker.http, "/health").0, 200);
    assert_eq!(stats(&coord.http)["workers"][0]["state"], "up");
}
