//! The compile worker: a gRPC `Worker` service running tasks on an [`Executor`] within its slots,
//! only with the toolchains it advertises, plus the loop that registers it with a coordinator.

use crate::metrics::WorkerMetrics;
use hybridgrid_core::{
    CancellationToken, Capabilities, DiscoverySource, ExecError, Executor, PROTOCOL_VERSION,
    TaskSpec, Toolchain, WorkerId, WorkerInfo,
};
use hybridgrid_transport::pb::{self, worker_server};
use hybridgrid_transport::{check_version, exec_error_to_failure};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use tonic::{Request, Response, Status};
use tracing::{info, warn};

/// A compiler this worker offers: its identity and the binary that has it.
#[derive(Clone, Debug)]
pub struct LocalToolchain {
    /// Exact identity, as advertised.
    pub toolchain: Toolchain,
    /// Resolved binary.
    pub path: PathBuf,
}

/// Name of the input file carrying the client's preprocessed text in a compile request.
pub const PREPROCESSED_INPUT: &str = "preprocessed";
/// Name under which the worker returns the object file.
pub const OBJECT_OUTPUT: &str = "out.o";

/// Compiler flags that would make a worker load code or write files of the requester's choosing.
/// (The compiler crate already runs such invocations locally; this is the worker's own check.)
const FORBIDDEN_FLAG_PREFIXES: &[&str] = &[
    "-fplugin",
    "-B",
    "-wrapper",
    "-specs",
    "--specs",
    "-load",
    "-Xclang",
    "-Xlinker",
    "-Xassembler",
    "-Wl,",
    "-fprofile-use",
    "-fprofile-generate",
    "-fauto-profile",
    "-save-temps",
    "-dumpdir",
    "-dumpbase",
    "-fdump",
    "-fcallgraph-info",
    "-fstack-usage",
    "--param=",
];
const PATH_MAP_FLAGS: &[&str] = &[
    "-fdebug-prefix-map=",
    "-fmacro-prefix-map=",
    "-ffile-prefix-map=",
];

/// Parses a compile request's `command` (`[driver, original args...]`) as that driver does: the
/// driver decides the language (`g++ -c foo.c` is C++), on the client and on the worker alike.
pub fn parse_command(command: &[String]) -> hybridgrid_compiler::Invocation {
    let Some((driver, args)) = command.split_first() else {
        return hybridgrid_compiler::Invocation::Local(hybridgrid_compiler::LocalReason::NoSource);
    };
    let args: Vec<std::ffi::OsString> = args.iter().map(Into::into).collect();
    match hybridgrid_compiler::CompilerKind::detect(std::path::Path::new(driver)) {
        Ok(kind) => hybridgrid_compiler::parse_for(kind, &args),
        Err(e) => hybridgrid_compiler::Invocation::Local(
            hybridgrid_compiler::LocalReason::UnsupportedFlag(e.to_string()),
        ),
    }
}

/// Most stderr/stdout bytes a worker keeps per stream of a compile.
const MAX_STREAM_BYTES: usize = 4 << 20;
/// Largest object a worker returns (the reply must stay under the gRPC message limit).
const MAX_OBJECT_BYTES: usize = 128 << 20;

/// Checks the derived command: apart from the worker's own input, output and prefix maps, no word
/// may name an absolute path or climb out with `..` in a value (`-f...=/path`, `-Wa,-a=/path`,
/// `-foptimization-record-file=../../x`): code-generation flags must not make the compiler read or
/// write files of the requester's choosing.
fn check_derived_args(cmd: &hybridgrid_compiler::RemoteCommand) -> Result<(), String> {
    for word in &cmd.args {
        let w = word.to_string_lossy();
        if std::path::Path::new(word) == cmd.input_path.as_path()
            || std::path::Path::new(word) == cmd.output.as_path()
            || PATH_MAP_FLAGS.iter().any(|p| w.starts_with(p))
        {
            continue;
        }
        let values = w.split(['=', ',']).skip(usize::from(w.starts_with('-')));
        for v in values {
            if v.starts_with('/') || v == ".." || v.starts_with("../") || v.contains("/../") {
                return Err(format!(
                    "flag {w:?} names a path ({v:?}); workers do not accept that"
                ));
            }
        }
        if w.starts_with('/') {
            return Err(format!(
                "argument {w:?} names a path outside the work directory"
            ));
        }
    }
    Ok(())
}

/// Checks the client's original compiler arguments before the worker derives its command from them.
pub fn validate_compile_args(args: &[String]) -> Result<(), String> {
    for a in args {
        if a.starts_with('@') {
            return Err(format!("response files are not accepted: {a:?}"));
        }
        if let Some(p) = FORBIDDEN_FLAG_PREFIXES.iter().find(|p| a.starts_with(*p)) {
            return Err(format!(
                "flag {a:?} is not accepted by workers (matches {p:?})"
            ));
        }
        if a.starts_with("-W")
            && a.contains("=/")
            && !PATH_MAP_FLAGS.iter().any(|p| a.starts_with(p))
        {
            return Err(format!(
                "flag {a:?} names an absolute path for a tool to write"
            ));
        }
    }
    if !args.iter().any(|a| a == "-c") {
        return Err("only compile-only (-c) invocations are accepted".into());
    }
    Ok(())
}

/// Turns a compile request (`command = [toolchain, original args...]`, input
/// [`PREPROCESSED_INPUT`]) into the exact local command: the worker recompiles the text at a
/// path mirroring the client's (see `hybridgrid_compiler::CompileJob::remote_command`), in this
/// task's work directory, and returns the object as [`OBJECT_OUTPUT`].
pub(crate) fn compile_spec(
    executor: &dyn Executor,
    spec: TaskSpec,
    compiler: &std::path::Path,
) -> Result<TaskSpec, String> {
    validate_compile_args(&spec.command[1..])?;
    let job = match parse_command(&spec.command) {
        hybridgrid_compiler::Invocation::Distributable(job) => job,
        hybridgrid_compiler::Invocation::Local(reason) => {
            return Err(format!("not a distributable compile: {reason:?}"));
        }
    };
    let text = spec
        .inputs
        .iter()
        .find(|f| f.path == PREPROCESSED_INPUT)
        .ok_or_else(|| format!("compile request has no {PREPROCESSED_INPUT:?} input"))?;
    // A fresh id: the work directory's name must not come from the network.
    let id = hybridgrid_core::TaskId::new(uuid::Uuid::new_v4().simple().to_string());
    let dir = executor
        .work_dir_for(&id)
        .ok_or_else(|| format!("the {} executor cannot run exact compiles", executor.kind()))?;
    let cmd = job
        .remote_command(&text.contents, &dir)
        .map_err(|e| e.to_string())?;
    let rel = |p: &std::path::Path| -> Result<String, String> {
        p.strip_prefix(&dir)
            .map(|r| r.to_string_lossy().into_owned())
            .map_err(|_| format!("{} is outside the work directory", p.display()))
    };
    check_derived_args(&cmd)?;
    let mut command = vec![compiler.to_string_lossy().into_owned()];
    command.extend(cmd.args.iter().map(|a| a.to_string_lossy().into_owned()));
    Ok(TaskSpec {
        id,
        command,
        // The client's values of the variables that shape the output or its diagnostics
        // (SOURCE_DATE_EPOCH, LANG, ...), and nothing else; then the command's own (PWD).
        env: spec
            .env
            .iter()
            .filter(|(k, _)| hybridgrid_compiler::CLIENT_ENV.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .chain(cmd.env.iter().map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.to_string_lossy().into_owned(),
                )
            }))
            .collect(),
        stdin: Default::default(),
        inputs: vec![hybridgrid_core::InputFile {
            path: rel(&cmd.input_path)?,
            contents: cmd.input.into(),
            executable: false,
        }],
        outputs: vec![rel(&cmd.output)?],
        cwd: Some(rel(&cmd.cwd)?),
        image: None,
        timeout: spec.timeout,
        // The worker's own bounds, whatever the request asked: the whole reply must fit in one
        // gRPC message.
        limits: hybridgrid_core::OutputLimits {
            max_stream_bytes: spec.limits.max_stream_bytes.min(MAX_STREAM_BYTES),
            max_file_bytes: spec.limits.max_file_bytes.min(MAX_OBJECT_BYTES),
        },
    })
}

/// Shared state of one worker.
pub struct WorkerState {
    /// This worker's advertised identity.
    pub info: WorkerInfo,
    executor: Arc<dyn Executor>,
    toolchains: Vec<LocalToolchain>,
    slots: Arc<Semaphore>,
    task_timeout: Duration,
    metrics: Arc<WorkerMetrics>,
    /// Where clean compiles are written for clients to find (the shared tier), if configured.
    result_cache: std::sync::OnceLock<Arc<dyn hybridgrid_core::Cache>>,
}

impl WorkerState {
    /// A worker with `slots` concurrent tasks, each capped at `task_timeout`.
    pub fn new(
        id: WorkerId,
        advertise_addr: String,
        slots: u32,
        task_timeout: Duration,
        executor: Arc<dyn Executor>,
        toolchains: Vec<LocalToolchain>,
        metrics: Arc<WorkerMetrics>,
    ) -> Arc<Self> {
        let mut capabilities = Capabilities::of_this_host(slots);
        capabilities.toolchains = toolchains.iter().map(|t| t.toolchain.clone()).collect();
        capabilities.executors = vec![executor.kind().to_owned()];
        metrics.slots.set(i64::from(slots));
        Arc::new(Self {
            info: WorkerInfo {
                id,
                addr: advertise_addr,
                capabilities,
                protocol_version: PROTOCOL_VERSION,
                source: DiscoverySource::Registration,
            },
            executor,
            toolchains,
            slots: Arc::new(Semaphore::new(slots as usize)),
            task_timeout,
            metrics,
            result_cache: std::sync::OnceLock::new(),
        })
    }

    /// Makes the worker write every clean compile (exit 0, nothing on stderr) to `cache` under its
    /// result key ([`crate::cache::request_key`]), the key clients look up. Set once.
    pub fn set_result_cache(&self, cache: Arc<dyn hybridgrid_core::Cache>) {
        let _ = self.result_cache.set(cache);
    }

    /// Tasks running now.
    pub fn in_flight(&self) -> u32 {
        self.info.capabilities.slots - self.slots.available_permits() as u32
    }

    fn resolve(&self, wanted: &Toolchain) -> Option<&LocalToolchain> {
        self.toolchains.iter().find(|t| t.toolchain.matches(wanted))
    }

    /// Runs one request: validation, slot, toolchain pinning, deadline, metrics and logs.
    async fn execute(&self, req: pb::ExecuteRequest) -> Result<pb::ExecuteResponse, Status> {
        check_version(req.protocol_version, "coordinator")?;
        let wire = req
            .spec
            .ok_or_else(|| Status::invalid_argument("malformed message: missing field spec"))?;
        let spec = TaskSpec::try_from(wire)?;
        let failure = |kind: pb::task_failure::Kind, message: String| pb::ExecuteResponse {
            worker_id: self.info.id.to_string(),
            result: Some(pb::execute_response::Result::Failure(pb::TaskFailure {
                kind: kind as i32,
                message,
            })),
        };
        let Some(wanted) = req.toolchain.map(Toolchain::from) else {
            return Ok(failure(
                pb::task_failure::Kind::InvalidSpec,
                "compile workers only run tasks that name a toolchain".into(),
            ));
        };
        let Some(local) = self.resolve(&wanted) else {
            return Ok(failure(
                pb::task_failure::Kind::ToolchainUnavailable,
                format!(
                    "no toolchain {} {} for {} on worker {}",
                    wanted.name, wanted.version, wanted.target, self.info.id
                ),
            ));
        };
        // Hashing and rewriting the text (up to the message limit) is CPU work: off the async threads.
        let (executor, toolchain, compiler) = (
            self.executor.clone(),
            local.toolchain.clone(),
            local.path.clone(),
        );
        let want_key = self.result_cache.get().is_some();
        let prepared = tokio::task::spawn_blocking(move || {
            let key = if want_key {
                crate::cache::request_key(&toolchain, &spec)
            } else {
                None
            };
            compile_spec(executor.as_ref(), spec, &compiler).map(|spec| (spec, key))
        })
        .await
        .map_err(|e| Status::internal(format!("preparing the compile failed: {e}")))?;
        let (spec, cache_key) = match prepared {
            Ok(prepared) => prepared,
            Err(e) => return Ok(failure(pb::task_failure::Kind::InvalidSpec, e)),
        };
        let mut spec = spec;
        spec.timeout = spec.timeout.min(self.task_timeout);
        // Wait for a slot, but never past the task's own deadline.
        let permit =
            match tokio::time::timeout(spec.timeout, self.slots.clone().acquire_owned()).await {
                Ok(Ok(p)) => p,
                _ => {
                    return Ok(failure(
                        pb::task_failure::Kind::Overloaded,
                        format!(
                            "worker {} had no free slot within {:?}",
                            self.info.id, spec.timeout
                        ),
                    ));
                }
            };
        let (in_flight, _) = crate::metrics::GaugeGuard::hold(&self.metrics.in_flight);
        let task_id = spec.id.clone();
        info!(task_id = %task_id, worker = %self.info.id, compiler = %wanted.name, "task started");
        let started = Instant::now();
        // Dropping this future (the coordinator went away) cancels and kills the task.
        let cancel = CancellationToken::new();
        let _guard = cancel.clone().drop_guard();
        let result = self.executor.execute(spec, cancel).await;
        drop(permit);
        drop(in_flight);
        let duration = started.elapsed();
        self.metrics.task_seconds.observe(duration.as_secs_f64());
        let outcome = match result {
            Ok(mut out) => {
                for f in &mut out.files {
                    f.path = OBJECT_OUTPUT.to_owned();
                }
                #[cfg(feature = "fault-injection")]
                if std::env::var_os("HG_FAULT_FLIP_OBJECT_BYTE").is_some() {
                    for f in &mut out.files {
                        let mut bytes = f.contents.to_vec();
                        let middle = bytes.len() / 2;
                        if let Some(b) = bytes.get_mut(middle) {
                            *b ^= 0x01;
                        }
                        f.contents = bytes.into();
                    }
                }
                let label = if out.success() {
                    "success"
                } else {
                    "compile_error"
                };
                self.metrics
                    .tasks
                    .get_or_create(&vec![("result", label.to_owned())])
                    .inc();
                info!(task_id = %task_id, duration = ?duration, success = out.success(), exit_code = out.exit_code, "task completed");
                if !out.success() {
                    // A compile error in the user's code: a result, not a worker failure.
                    let stderr = String::from_utf8_lossy(&out.stderr[..out.stderr.len().min(2048)])
                        .into_owned();
                    warn!(task_id = %task_id, error = %format!("exit code {}", out.exit_code), stderr = %stderr, "compilation failed");
                }
                if let (Some(cache), Some(key)) = (self.result_cache.get(), cache_key) {
                    crate::cache::share_result(cache.as_ref(), &key, &out).await;
                }
                pb::execute_response::Result::Output(out.into())
            }
            Err(e) => {
                let f = exec_error_to_failure(&e);
                let label = hybridgrid_transport::failure_kind_name(f.kind);
                self.metrics
                    .tasks
                    .get_or_create(&vec![("result", label.to_owned())])
                    .inc();
                log_exec_error(&task_id.to_string(), duration, &e);
                pb::execute_response::Result::Failure(f)
            }
        };
        Ok(pb::ExecuteResponse {
            worker_id: self.info.id.to_string(),
            result: Some(outcome),
        })
    }
}

fn log_exec_error(task_id: &str, duration: Duration, e: &ExecError) {
    warn!(task_id, duration = ?duration, success = false, error = %e, "task completed");
}

/// The tonic service wrapper.
#[derive(Clone)]
pub struct WorkerService(pub Arc<WorkerState>);

#[tonic::async_trait]
impl worker_server::Worker for WorkerService {
    async fn info(
        &self,
        req: Request<pb::InfoRequest>,
    ) -> Result<Response<pb::WorkerInfo>, Status> {
        check_version(req.into_inner().protocol_version, "coordinator")?;
        Ok(Response::new(self.0.info.clone().into()))
    }

    async fn execute(
        &self,
        req: Request<pb::ExecuteRequest>,
    ) -> Result<Response<pb::ExecuteResponse>, Status> {
        self.0.execute(req.into_inner()).await.map(Response::new)
    }
}

/// Registers with the coordinator at `coordinator`, then heartbeats; registers again whenever the
/// coordinator forgets the worker (it restarted) or cannot be reached. Runs until `stop` fires.
pub async fn registration_loop(
    state: Arc<WorkerState>,
    coordinator: String,
    stop: CancellationToken,
) {
    let url = format!("http://{coordinator}");
    let mut backoff = Duration::from_millis(200);
    'outer: while !stop.is_cancelled() {
        let client = async {
            let ch = tonic::transport::Endpoint::from_shared(url.clone())
                .map_err(|e| e.to_string())?
                .connect_timeout(Duration::from_secs(2))
                .timeout(Duration::from_secs(5))
                .connect()
                .await
                .map_err(|e| e.to_string())?;
            Ok::<_, String>(pb::coordinator_client::CoordinatorClient::new(ch))
        }
        .await;
        let mut client = match client {
            Ok(c) => c,
            Err(e) => {
                warn!(coordinator = %coordinator, error = %e, "coordinator unreachable, will retry");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => break }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        let reg = client
            .register(pb::RegisterRequest {
                protocol_version: PROTOCOL_VERSION,
                worker: Some(state.info.clone().into()),
            })
            .await;
        let interval = match reg {
            Ok(r) => {
                let r = r.into_inner();
                info!(coordinator = %coordinator, coordinator_id = %r.coordinator_id, "registered with coordinator");
                backoff = Duration::from_millis(200);
                Duration::from_millis(r.heartbeat_interval_ms.clamp(100, 60_000))
            }
            Err(e) => {
                warn!(coordinator = %coordinator, error = %e.message(), "registration refused, will retry");
                tokio::select! { _ = tokio::time::sleep(backoff) => {}, _ = stop.cancelled() => break }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        loop {
            tokio::select! { _ = tokio::time::sleep(interval) => {}, _ = stop.cancelled() => break 'outer }
            let hb = client
                .heartbeat(pb::HeartbeatRequest {
                    protocol_version: PROTOCOL_VERSION,
                    worker_id: state.info.id.to_string(),
                    in_flight: state.in_flight(),
                })
                .await;
            match hb {
                Ok(r) if r.get_ref().known => {}
                Ok(_) => {
                    info!(coordinator = %coordinator, "coordinator does not know this worker, registering again");
                    continue 'outer;
                }
                Err(e) => {
                    warn!(coordinator = %coordinator, error = %e.message(), "heartbeat failed, reconnecting");
                    continue 'outer;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn compile_args_are_checked() {
        let ok = |a: &str| validate_compile_args(&args(a));
        assert!(ok("-O2 -g -I/usr/include -c /src/a.c -o ../obj/a.o").is_ok());
        assert!(ok("-fdebug-prefix-map=/a=/b -c a.c").is_ok());
        assert!(ok("-O2 a.c -o a").unwrap_err().contains("-c"));
        assert!(ok("-fplugin=x.so -c a.c").unwrap_err().contains("-fplugin"));
        assert!(
            ok("-Wa,-adhln=/etc/cron.d/x -c a.c")
                .unwrap_err()
                .contains("absolute")
        );
        assert!(ok("@rsp -c a.c").is_err());
        assert!(ok("-B/tmp/evil -c a.c").is_err());
    }

    #[test]
    fn derived_args_may_not_name_paths() {
        let derive = |extra: &str| {
            let mut command = vec![
                "gcc".to_owned(),
                "-c".into(),
                "a.c".into(),
                "-o".into(),
                "a.o".into(),
            ];
            command.extend(extra.split_whitespace().map(str::to_owned));
            match parse_command(&command) {
                hybridgrid_compiler::Invocation::Distributable(job) => {
                    let cmd = job.remote_command(
                        b"# 0 \"a.c\"\n# 0 \"/src//\"\nint x;\n",
                        std::path::Path::new("/w/hg-1"),
                    );
                    Some(check_derived_args(&cmd.expect("remote command")))
                }
                // Refused already by the argument table: just as good.
                hybridgrid_compiler::Invocation::Local(_) => None,
            }
        };
        for bad in [
            "-foptimization-record-file=/etc/x",
            "-foptimization-record-file=../../x",
            "-fdiagnostics-add-output=sarif:file=/tmp/x",
        ] {
            if let Some(r) = derive(bad) {
                assert!(r.is_err(), "{bad} was accepted");
            }
        }
        assert_eq!(
            derive("-O2 -g -fPIC -march=x86-64 -Wa,--noexecstack"),
            Some(Ok(()))
        );
        assert_eq!(derive("-fdebug-prefix-map=/src=/x"), Some(Ok(())));
    }
}
