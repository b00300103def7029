//! In-process farm peers for the TLS and fake-peer tests: a farm CA and certificates made in the
//! test, a real coordinator (`start_coordinator`), and fake workers that speak the real gRPC
//! protocol over TLS or plain text and misbehave on purpose.
#![allow(dead_code)]

use hybridgrid_core::PROTOCOL_VERSION;
use hybridgrid_farm_protocol::PREPROCESSED_INPUT;
use hybridgrid_farm_protocol::config::{FarmConfig, TlsSection, Token};
use hybridgrid_transport::pb::{self, coordinator_client::CoordinatorClient, worker_server};
use hybridgrid_transport::serve::{GrpcOptions, bind, local_addr, spawn_grpc};
use hybridgrid_transport::tls::certgen::{self, Pair, Validity};
use hybridgrid_transport::tls::{Dial, Expect, Role, TlsMaterial};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tonic::transport::Channel;
use tonic::{Request, Response, Status};

/// A farm CA in a directory, issuing certificates on demand.
pub struct Farm {
    pub dir: tempfile::TempDir,
    pub ca: Pair,
}

impl Farm {
    pub fn new() -> Farm {
        Farm::named("test farm CA")
    }

    pub fn named(name: &str) -> Farm {
        let dir = tempfile::tempdir().expect("tempdir");
        let ca = certgen::new_ca(name, 30).expect("CA");
        certgen::write_pair(dir.path(), "ca", &ca).expect("write CA");
        Farm { dir, ca }
    }

    pub fn ca_path(&self) -> PathBuf {
        self.dir.path().join("ca.crt")
    }

    /// Issues `role`/`name` valid for `hosts` in `validity`; returns the `tls:` section using it.
    pub fn issue_with(
        &self,
        role: Role,
        name: &str,
        hosts: &[&str],
        validity: Validity,
    ) -> TlsSection {
        let hosts: Vec<String> = hosts.iter().map(|h| (*h).to_owned()).collect();
        let pair = certgen::issue(&self.ca, role, name, &hosts, validity).expect("issue");
        let stem = format!("{role}-{name}-{}", uuid_like());
        certgen::write_pair(self.dir.path(), &stem, &pair).expect("write pair");
        TlsSection {
            ca: Some(self.ca_path()),
            cert: Some(self.dir.path().join(format!("{stem}.crt"))),
            key: Some(self.dir.path().join(format!("{stem}.key"))),
            insecure: false,
        }
    }

    pub fn issue(&self, role: Role, name: &str) -> TlsSection {
        self.issue_with(role, name, &["127.0.0.1"], Validity::days(1))
    }

    /// The CA only (no certificate of one's own).
    pub fn ca_only(&self) -> TlsSection {
        TlsSection {
            ca: Some(self.ca_path()),
            ..Default::default()
        }
    }
}

fn uuid_like() -> u64 {
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

pub fn material(tls: &TlsSection) -> Option<Arc<TlsMaterial>> {
    TlsMaterial::load_optional(tls.ca.as_deref(), tls.cert.as_deref(), tls.key.as_deref())
        .expect("tls material")
}

/// A coordinator config on loopback with short timeouts for tests.
pub fn coordinator_config(tls: TlsSection, tokens: &[&str]) -> FarmConfig {
    let mut cfg = FarmConfig::default();
    cfg.coordinator.grpc_addr = "127.0.0.1:0".into();
    cfg.coordinator.http_addr = "127.0.0.1:0".into();
    cfg.coordinator.heartbeat_interval = hybridgrid_core::config::HumanDuration::from_secs(1);
    cfg.coordinator.heartbeat_timeout = hybridgrid_core::config::HumanDuration::from_secs(30);
    cfg.coordinator.client_tokens = tokens.iter().map(|t| Token::new(*t)).collect();
    cfg.tls = tls;
    cfg
}

/// Dials the coordinator at `addr` as `tls` says (with an optional token).
pub async fn coordinator_client(
    addr: &str,
    tls: &TlsSection,
    token: Option<&str>,
) -> Result<
    CoordinatorClient<
        tonic::service::interceptor::InterceptedService<
            Channel,
            hybridgrid_transport::auth::Bearer,
        >,
    >,
    String,
> {
    let how = Dial {
        tls: material(tls),
        insecure: false,
        expect: Some(Expect {
            role: Role::Coordinator,
            name: None,
        }),
        connect_timeout: Duration::from_secs(2),
        timeout: Some(Duration::from_secs(30)),
        keep_alive: None,
    };
    let ch = hybridgrid_transport::tls::dial(addr, &how).await?;
    let bearer = hybridgrid_transport::auth::Bearer::new(token).expect("token");
    Ok(CoordinatorClient::with_interceptor(ch, bearer))
}

pub fn gcc() -> pb::Toolchain {
    pb::Toolchain {
        name: "gcc".into(),
        version: "12.2.0".into(),
        target: "x86_64-linux-gnu".into(),
        binary_hash: "ab".repeat(32),
    }
}

pub fn worker_info(
    id: &str,
    addr: &str,
    slots: u32,
    toolchains: Vec<pb::Toolchain>,
) -> pb::WorkerInfo {
    pb::WorkerInfo {
        id: id.into(),
        addr: addr.into(),
        capabilities: Some(pb::Capabilities {
            arch: "x86_64".into(),
            os: "linux".into(),
            cpus: 4,
            slots,
            toolchains,
            executors: vec!["native".into()],
        }),
        protocol_version: PROTOCOL_VERSION,
    }
}

pub fn register(info: pb::WorkerInfo) -> pb::RegisterRequest {
    pb::RegisterRequest {
        protocol_version: PROTOCOL_VERSION,
        worker: Some(info),
    }
}

/// A valid compile request (the coordinator's own check passes it).
pub fn compile_request(task_id: &str, toolchain: pb::Toolchain) -> pb::CompileRequest {
    pb::CompileRequest {
        protocol_version: PROTOCOL_VERSION,
        toolchain: Some(toolchain),
        spec: Some(pb::TaskSpec {
            id: task_id.into(),
            command: ["gcc", "-O2", "-c", "x.c", "-o", "x.o"]
                .map(String::from)
                .to_vec(),
            inputs: vec![pb::InputFile {
                path: PREPROCESSED_INPUT.into(),
                contents: b"# 0 \"x.c\"\nint x;\n".to_vec(),
                executable: false,
            }],
            timeout_ms: 30_000,
            ..Default::default()
        }),
        client_id: String::new(),
    }
}

/// How a fake worker answers `Execute`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behaviour {
    /// Returns an object.
    Good,
    /// Accepts the call and never answers.
    BlackHole,
    /// Answers INVALID_SPEC to everything.
    InvalidSpec,
}

#[derive(Clone)]
struct FakeWorker {
    id: String,
    behaviour: Behaviour,
    calls: Arc<AtomicU64>,
}

#[tonic::async_trait]
impl worker_server::Worker for FakeWorker {
    async fn info(&self, _: Request<pb::InfoRequest>) -> Result<Response<pb::WorkerInfo>, Status> {
        Err(Status::unimplemented("fake worker"))
    }

    async fn execute(
        &self,
        _: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        use pb::execute_response::Result as R;
        let result = match self.behaviour {
            Behaviour::Good => R::Output(pb::TaskOutput {
                exit_code: 0,
                files: vec![pb::OutputFile {
                    path: "out.o".into(),
                    contents: b"\x7fELF fake object".to_vec(),
                }],
                duration_ms: 1,
                ..Default::default()
            }),
            Behaviour::BlackHole => std::future::pending().await,
            Behaviour::InvalidSpec => R::Failure(pb::TaskFailure {
                kind: pb::task_failure::Kind::InvalidSpec as i32,
                message: "I refuse everything".into(),
            }),
        };
        Ok(Response::new(pb::ExecuteResponse {
            worker_id: self.id.clone(),
            result: Some(result),
        }))
    }

    type ExecuteStreamStream = tonic::codegen::Pin<
        Box<
            dyn tonic::codegen::tokio_stream::Stream<
                    Item = Result<pb::ExecuteStreamResponse, Status>,
                > + Send,
        >,
    >;

    /// As a worker of an older release: no stream, so the coordinator calls `execute`.
    async fn execute_stream(
        &self,
        _: Request<tonic::Streaming<pb::ExecuteStreamRequest>>,
    ) -> Result<Response<Self::ExecuteStreamStream>, Status> {
        Err(Status::unimplemented("fake worker: unary Execute only"))
    }
}

/// A running fake worker.
pub struct Fake {
    pub id: String,
    pub addr: String,
    pub calls: Arc<AtomicU64>,
    stop: hybridgrid_core::CancellationToken,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

/// Serves a fake worker on 127.0.0.1 (over TLS with `tls`' certificate when it has one).
pub async fn fake_worker(id: &str, behaviour: Behaviour, tls: Option<&TlsSection>) -> Fake {
    let listener = bind("gRPC", "127.0.0.1:0").await.expect("bind");
    let addr = local_addr(&listener).to_string();
    let opts = GrpcOptions {
        tls: tls
            .and_then(material)
            .map(|m| m.server_config(true).expect("server config")),
        ..Default::default()
    };
    let calls = Arc::new(AtomicU64::new(0));
    let svc = worker_server::WorkerServer::new(FakeWorker {
        id: id.into(),
        behaviour,
        calls: calls.clone(),
    });
    let stop = hybridgrid_core::CancellationToken::new();
    spawn_grpc(svc, listener, stop.clone(), "fake-worker", &opts);
    Fake {
        id: id.into(),
        addr,
        calls,
        stop,
    }
}

pub fn completed_by(r: &pb::CompileResponse) -> Option<(String, u32)> {
    match &r.result {
        Some(pb::compile_response::Result::Completed(c)) => Some((c.worker_id.clone(), c.attempts)),
        _ => None,
    }
}

pub fn fallback_reason(r: &pb::CompileResponse) -> Option<String> {
    match &r.result {
        Some(pb::compile_response::Result::Fallback(f)) => Some(f.reason.clone()),
        _ => None,
    }
}

pub fn path_str(p: &Path) -> String {
    p.display().to_string()
}
