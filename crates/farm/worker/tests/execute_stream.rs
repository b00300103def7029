//! `Worker.ExecuteStream` on a real worker: a call answers as unary `Execute` would, a cancel
//! kills its task (and no answer follows), and the stream breaking kills the tasks on it.

use hybridgrid_core::{
    CancellationToken, ExecError, Executor, OutputFile, PROTOCOL_VERSION, TaskId, TaskOutput,
    TaskSpec, Toolchain,
};
use hybridgrid_farm_protocol::PREPROCESSED_INPUT;
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_worker::LocalToolchain;
use hybridgrid_transport::pb::{self, execute_stream_request::Kind};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;

/// Runs each task for 300 ms; counts tasks started and tasks whose future was dropped unfinished.
#[derive(Default)]
struct Slow {
    started: AtomicUsize,
    dropped: Arc<AtomicUsize>,
}

struct CountDrop(Arc<AtomicUsize>, bool);

impl Drop for CountDrop {
    fn drop(&mut self) {
        if !self.1 {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait::async_trait]
impl Executor for Slow {
    fn kind(&self) -> &'static str {
        "slow"
    }
    async fn execute(&self, spec: TaskSpec, _: CancellationToken) -> Result<TaskOutput, ExecError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let mut guard = CountDrop(self.dropped.clone(), false);
        tokio::time::sleep(Duration::from_millis(300)).await;
        guard.1 = true;
        Ok(TaskOutput {
            exit_code: 0,
            stdout: Default::default(),
            stderr: Default::default(),
            truncated: false,
            files: spec
                .outputs
                .iter()
                .map(|p| OutputFile {
                    path: p.clone(),
                    contents: b"\x7fELF".to_vec().into(),
                })
                .collect(),
            duration: Duration::from_millis(300),
        })
    }
    fn work_dir_for(&self, task: &TaskId) -> Option<PathBuf> {
        Some(PathBuf::from(format!("/nonexistent/hg-{task}")))
    }
}

fn toolchain() -> Toolchain {
    Toolchain {
        name: "gcc".into(),
        version: "test".into(),
        target: "test-target".into(),
        binary_hash: "test-binary-hash".into(),
    }
}

fn execute(call_id: u64, task: &str) -> pb::ExecuteStreamRequest {
    pb::ExecuteStreamRequest {
        call_id,
        kind: Some(Kind::Execute(pb::ExecuteRequest {
            protocol_version: PROTOCOL_VERSION,
            spec: Some(pb::TaskSpec {
                id: task.into(),
                command: ["gcc", "-c", "x.c", "-o", "x.o"].map(String::from).to_vec(),
                inputs: vec![pb::InputFile {
                    path: PREPROCESSED_INPUT.into(),
                    contents: b"int x;\n".to_vec(),
                    executable: false,
                }],
                timeout_ms: 30_000,
                ..Default::default()
            }),
            toolchain: Some(toolchain().into()),
        })),
        timeout_ms: 30_000,
    }
}

type Tx = mpsc::UnboundedSender<pb::ExecuteStreamRequest>;

async fn setup() -> (
    hybridgrid_transport::serve::Handle<hybridgrid_farm_worker::WorkerState>,
    Arc<Slow>,
    Tx,
    tonic::Streaming<pb::ExecuteStreamResponse>,
) {
    let mut cfg = FarmConfig::default();
    cfg.worker.id = Some("stream-test".into());
    cfg.worker.grpc_addr = "127.0.0.1:0".into();
    cfg.worker.http_addr = "127.0.0.1:0".into();
    cfg.worker.max_concurrent_tasks = 2;
    let exec = Arc::new(Slow::default());
    let tc = vec![LocalToolchain {
        toolchain: toolchain(),
        path: "/bin/true".into(),
        image: None,
    }];
    let worker = hybridgrid_farm_worker::start_worker(&cfg, exec.clone(), tc)
        .await
        .expect("worker");
    let ch = tonic::transport::Endpoint::from_shared(format!("http://{}", worker.grpc_addr))
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let (tx, rx) = mpsc::unbounded_channel();
    let answers = pb::worker_client::WorkerClient::new(ch)
        .execute_stream(tokio_stream::wrappers::UnboundedReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    (worker, exec, tx, answers)
}

async fn wait_for(what: &str, cond: impl Fn() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_cancelled_call_is_killed_and_the_stream_serves_on() {
    let (worker, exec, tx, mut answers) = setup().await;
    tx.send(execute(1, "cancelled")).expect("send");
    wait_for("the first task starts", || {
        exec.started.load(Ordering::SeqCst) == 1
    })
    .await;
    tx.send(pb::ExecuteStreamRequest {
        call_id: 1,
        kind: Some(Kind::Cancel(pb::CancelCall {})),
        timeout_ms: 0,
    })
    .expect("send");
    wait_for("the cancelled task is dropped", || {
        exec.dropped.load(Ordering::SeqCst) == 1
    })
    .await;
    tx.send(execute(2, "answered")).expect("send");
    let m = tokio::time::timeout(Duration::from_secs(10), answers.message())
        .await
        .expect("an answer")
        .expect("stream ok")
        .expect("a message");
    // The cancelled call got no answer: the first one on the stream is call 2's.
    assert_eq!((m.call_id, m.status_code), (2, 0));
    let r = m.response.expect("response");
    assert_eq!(r.worker_id, "stream-test");
    assert!(matches!(
        r.result,
        Some(pb::execute_response::Result::Output(ref o)) if o.exit_code == 0
    ));
    assert_eq!(worker.state.in_flight(), 0);
    drop((tx, answers));
    worker.shutdown().await;
}

#[tokio::test]
async fn a_broken_stream_kills_its_tasks() {
    let (worker, exec, tx, answers) = setup().await;
    tx.send(execute(1, "a")).expect("send");
    tx.send(execute(2, "b")).expect("send");
    wait_for("both tasks start", || {
        exec.started.load(Ordering::SeqCst) == 2
    })
    .await;
    // The coordinator goes away: its stream is reset.
    drop(answers);
    drop(tx);
    wait_for("both tasks are dropped", || {
        exec.dropped.load(Ordering::SeqCst) == 2
    })
    .await;
    wait_for("the slots are free", || worker.state.in_flight() == 0).await;
    worker.shutdown().await;
}
