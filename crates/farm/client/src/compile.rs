//! One compile through the farm: the compiler wrapper (one compile: preprocess locally, compile on the
//! farm, write the object), and the build-tool mode (`hgbuild make -j16`) that puts the wrapper in
//! front of the build's compilers.
//!
//! What the wrapper ships is the **preprocessed source** (`cc -E -fdirectives-only`, run locally),
//! so a worker never needs the client's files; see `docs/COMPILE_FARM.md`. Whatever the farm cannot
//! do exactly is done by the local compiler, unchanged: non-compile invocations, flags that cannot
//! be shipped safely, and any compile whose diagnostics must be shown (the local rerun prints them
//! exactly as the compiler does). Every local fallback is recorded with its reason.

use crate::cache::{ClientCache, Pending};
use crate::connect::{Coordinator, connect};
use crate::error::ClientError;
use crate::notice::notice;
use crate::paths::{MASQUERADE_ENV, stats_log, write_atomic};
use crate::place::{Early, Place, Ticket, place};
use crate::stats::{self, Served};
use crate::step::Step;
use crate::toolchain::toolchain;
use crate::{local_slots, paths, verify};
use hybridgrid_compiler::{CompileJob, Invocation, LocalReason};
use hybridgrid_core::{PROTOCOL_VERSION, TaskId, Toolchain};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_protocol::{OBJECT_OUTPUT, PREPROCESSED_INPUT};
use hybridgrid_transport::pb;
use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};
use std::process::Command;

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Finds the real compiler `name`: a path is used as given; a bare name is searched on `PATH`,
/// skipping the masquerade directory and anything that is hgbuild itself.
pub fn resolve_compiler(name: &OsStr) -> Result<PathBuf, ClientError> {
    // Resolved once: this runs on every compile.
    let me = std::env::current_exe()
        .ok()
        .and_then(|p| p.canonicalize().ok());
    let is_me = |p: &Path| {
        me.as_deref()
            .is_some_and(|m| p.canonicalize().is_ok_and(|c| c == m))
    };
    let not_found = || ClientError::CompilerNotFound {
        name: name.to_string_lossy().into_owned(),
    };
    let as_path = Path::new(name);
    if as_path.components().count() > 1 {
        return if is_executable(as_path) && !is_me(as_path) {
            Ok(as_path.to_owned())
        } else {
            Err(not_found())
        };
    }
    // The build-tool mode put the masquerade directory on PATH verbatim, so compare it as written.
    let masq = std::env::var_os(MASQUERADE_ENV).map(PathBuf::from);
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        if masq.as_deref() == Some(dir.as_path()) {
            continue;
        }
        let cand = dir.join(name);
        if is_executable(&cand) && !is_me(&cand) {
            return Ok(cand);
        }
    }
    Err(not_found())
}

/// The original command, to run locally.
pub fn local_command(compiler: &Path, args: &[OsString]) -> Command {
    let mut c = Command::new(compiler);
    c.args(args);
    c
}

fn local_reason_label(r: &LocalReason) -> String {
    let named = match r {
        LocalReason::UnknownFlag(flag) => Some(("unknown_flag", flag)),
        LocalReason::UnsupportedFlag(flag) => Some(("unsupported_flag", flag)),
        _ => None,
    };
    if let Some((kind, flag)) = named {
        // The option's name (not its value), bounded: `unsupported_flag:--prefix`.
        let name: String = flag
            .split('=')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_graphic())
            .take(40)
            .collect();
        return format!("{kind}:{name}");
    }
    let s = format!("{r:?}");
    let head = s.split(['(', ' ', '{']).next().unwrap_or("other");
    let mut out = String::new();
    for (i, ch) in head.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}

/// Handles one compiler invocation: `compiler` is the real compiler, `args` its arguments.
pub async fn compile(
    cfg: &FarmConfig,
    compiler: &Path,
    args: &[OsString],
) -> Result<Step, ClientError> {
    let kind =
        hybridgrid_compiler::CompilerKind::detect(compiler).map_err(|e| ClientError::Probe {
            path: compiler.to_owned(),
            message: e.to_string(),
        })?;
    // Arguments travel as UTF-8 strings; anything else runs locally rather than being mangled.
    if args.iter().any(|a| a.to_str().is_none())
        || hybridgrid_compiler::CLIENT_ENV
            .iter()
            .any(|k| std::env::var_os(k).is_some_and(|v| v.to_str().is_none()))
    {
        return Ok(Step::RunLocal(Served::LocalOnly {
            reason: "non_utf8_args".into(),
        }));
    }
    let job = match hybridgrid_compiler::parse_for(kind, args) {
        Invocation::Distributable(job) => job,
        // clang's DWARF 5: compiled rooted, from the inputs (`rooted.rs`).
        Invocation::Local(LocalReason::DebugFileChecksums) => {
            return crate::rooted::compile(cfg, compiler, args).await;
        }
        Invocation::Local(reason) => {
            return Ok(Step::RunLocal(Served::LocalOnly {
                reason: local_reason_label(&reason),
            }));
        }
    };
    // Identity from the on-disk memo: a cache hit never runs the compiler.
    let memo_dir = paths::toolchain_memo_dir();
    let toolchain = toolchain(compiler, &memo_dir).map_err(|e| ClientError::Probe {
        path: compiler.to_owned(),
        message: e.to_string(),
    })?;
    // `cc`/`c++` may be clang: the job is the one the probed family compiles (clang's path
    // preprocesses with -frewrite-includes), as the worker parses it (`command[0]` is the family).
    let job = match hybridgrid_compiler::CompilerKind::detect(toolchain.name.as_ref()) {
        Ok(
            real @ (hybridgrid_compiler::CompilerKind::Clang
            | hybridgrid_compiler::CompilerKind::Clangxx),
        ) if !job.is_clang() => match hybridgrid_compiler::parse_for(real, args) {
            Invocation::Distributable(job) => job,
            Invocation::Local(LocalReason::DebugFileChecksums) => {
                return crate::rooted::compile(cfg, compiler, args).await;
            }
            Invocation::Local(reason) => {
                return Ok(Step::RunLocal(Served::LocalOnly {
                    reason: local_reason_label(&reason),
                }));
            }
        },
        _ => job,
    };
    let cache = ClientCache::new(&cfg.cache, stats_log());
    let manifest = match &cache {
        Some(c) => match c.serve_direct(&toolchain, &job, args) {
            (Some(hit), _) => return Ok(hit),
            (None, manifest) => manifest,
        },
        None => None,
    };
    let started = std::time::SystemTime::now();
    // Without a cache to key, nothing needs the text before the farm is asked: a compile that
    // stays on this machine (no farm, or no remote slot free at once while a local core is idle)
    // runs the original command and is not preprocessed first.
    // With a cache in depend mode (no shared tier), a miss that stays here is keyed from the
    // compiler's own depfile: it is not preprocessed either.
    let depend = match (&cache, manifest) {
        (Some(c), Some(mkey)) if c.depend_mode(&job, args) => Some((c, mkey)),
        _ => None,
    };
    let weight = crate::place::source_weight(&job);
    let mut early = None;
    let mut ticket = Ticket::None;
    if cache.is_none() || depend.is_some() {
        match connect(cfg).await {
            Err(e) => {
                notice("coordinator", &format!("{}; compiled locally", e.message));
                let served = Served::Fallback {
                    reason: e.reason.to_owned(),
                };
                if let Some((c, mkey)) = depend {
                    let _slot = local_slots::acquire(cfg.client.local_jobs);
                    return c
                        .compile_depend(compiler, args, &job, mkey, started, served)
                        .await;
                }
                return Ok(Step::RunLocal(served));
            }
            Ok((mut client, slots)) => {
                match crate::place::before_preprocessing(cfg, &mut client, slots, weight).await {
                    Early::Local(choice) => {
                        if let Some((c, mkey)) = depend {
                            let done = c
                                .compile_depend(
                                    compiler,
                                    args,
                                    &job,
                                    mkey,
                                    started,
                                    Served::LocalByChoice,
                                )
                                .await;
                            drop(choice);
                            return done;
                        }
                        return run_by_choice(compiler, args, choice);
                    }
                    Early::Preprocess(t) => {
                        ticket = t;
                        early = Some((client, slots));
                    }
                }
            }
        }
    }
    let Some(text) = preprocess_for_farm(cfg, compiler, &job)? else {
        return Ok(Step::RunLocal(Served::LocalDiagnostics));
    };
    // What is shipped and keyed: clang's text gains its -D/-U macros and, with debug info, the
    // directories it records (GCC's text is used as it is).
    let shipped = hybridgrid_compiler::compile_dir()
        .ok()
        .and_then(|dir| job.ship_text(text, &dir).ok());
    let Some(shipped) = shipped else {
        return Ok(Step::RunLocal(Served::LocalOnly {
            reason: "unexpected_text".into(),
        }));
    };
    let pending = match &cache {
        Some(c) => {
            match c
                .serve_preprocessed(
                    &toolchain,
                    &job,
                    manifest,
                    &shipped,
                    started,
                    verify::sampled(cfg.verify.cache_rate).then_some(compiler),
                )
                .await
            {
                Ok(hit) => return Ok(hit),
                Err(pending) => {
                    c.note_miss(&pending);
                    Some(pending)
                }
            }
        }
        None => None,
    };
    // Text a worker would refuse (it could make the worker's compiler read worker files) never
    // leaves this machine.
    // `text` is kept for a miss compiled locally, so it is not preprocessed again.
    let (text, outcome) = match job.check_text(&shipped) {
        Err(e) => {
            notice(
                "local",
                &format!(
                    "{} is not shipped ({e}); compiled locally",
                    job.source().display()
                ),
            );
            (Some(shipped), Err("reads_worker_files".to_owned()))
        }
        Ok(()) => match place(cfg, early, weight, ticket).await {
            // The local cores are farm capacity: with no remote slot or CPU free at once, an
            // idle local core compiles this one, overlapping the remote compiles.
            Ok((_, Place::Local(_choice))) => {
                return compile_by_choice(cache.as_ref(), pending, compiler, args, &job, &shipped)
                    .await;
            }
            Ok((client, Place::Remote)) => {
                let text = pending.as_ref().map(|_| shipped.clone());
                let outcome =
                    remote_compile(cfg, client, compiler, args, &job, &toolchain, shipped).await;
                (text, outcome)
            }
            Err(e) => {
                notice("coordinator", &format!("{}; compiled locally", e.message));
                (Some(shipped), Err(e.reason.to_owned()))
            }
        },
    };
    finish(
        cfg,
        cache.as_ref(),
        pending,
        compiler,
        args,
        &job,
        text,
        outcome,
    )
    .await
}

/// Preprocesses `job` locally for the farm, returning the text; this also writes the depfile
/// exactly as the plain compile would. Local work is bounded across the build's wrapper processes
/// (`client.local_jobs`); the preprocessors have their own slots, so feeding the farm never waits
/// behind a local compile. `None`: the preprocessor failed or printed something, and the local
/// compiler must run to show it exactly.
pub(crate) fn preprocess_for_farm(
    cfg: &FarmConfig,
    compiler: &Path,
    job: &CompileJob,
) -> Result<Option<Vec<u8>>, ClientError> {
    let slot = local_slots::acquire_for(local_slots::Work::Preprocess, cfg.client.local_jobs);
    let pre = Command::new(compiler)
        .args(job.preprocess_args())
        .output()
        .map_err(|source| ClientError::Spawn {
            program: compiler.display().to_string(),
            source,
        })?;
    drop(slot);
    Ok((pre.status.success() && pre.stderr.is_empty()).then_some(pre.stdout))
}

/// Runs the original command on a local core by choice, holding `slot` (see
/// [`local_slots::try_acquire_choice`]): its output and exit code are the compiler's own.
fn run_by_choice(
    compiler: &Path,
    args: &[OsString],
    slot: local_slots::LocalSlot,
) -> Result<Step, ClientError> {
    let status = local_command(compiler, args)
        .status()
        .map_err(|source| ClientError::Spawn {
            program: compiler.display().to_string(),
            source,
        })?;
    drop(slot);
    let code = status.code().unwrap_or_else(|| {
        use std::os::unix::process::ExitStatusExt;
        128 + status.signal().unwrap_or(0)
    });
    Ok(Step::Exit(code, Served::LocalByChoice))
}

/// Compiles on a local core by choice, holding a local slot (see [`local_slots::try_acquire_choice`]):
/// the preprocessed text is compiled as a worker would; anything printed means the original
/// command is rerun for exact diagnostics.
async fn compile_by_choice(
    cache: Option<&ClientCache>,
    pending: Option<Pending>,
    compiler: &Path,
    args: &[OsString],
    job: &CompileJob,
    text: &[u8],
) -> Result<Step, ClientError> {
    match crate::cache::compile_text_here(compiler, job, text) {
        Ok(true) => {
            if let (Some(c), Some(p)) = (cache, &pending) {
                c.store(p, job, Vec::new()).await;
            }
            Ok(Step::Exit(0, Served::LocalByChoice))
        }
        Ok(false) | Err(_) => match (cache, &pending) {
            (Some(c), Some(p)) => {
                c.compile_locally(compiler, args, job, p, Served::LocalDiagnostics)
                    .await
            }
            _ => Ok(Step::RunLocal(Served::LocalDiagnostics)),
        },
    }
}

/// After the remote attempt: stores or reruns locally as the outcome requires.
#[allow(clippy::too_many_arguments)]
async fn finish(
    cfg: &FarmConfig,
    cache: Option<&ClientCache>,
    pending: Option<Pending>,
    compiler: &Path,
    args: &[OsString],
    job: &CompileJob,
    text: Option<Vec<u8>>,
    outcome: Result<RemoteResult, String>,
) -> Result<Step, ClientError> {
    let (Some(c), Some(pending)) = (cache, pending) else {
        return Ok(match outcome {
            Ok(RemoteResult::Done { worker }) => Step::Exit(0, Served::Remote { worker }),
            Ok(RemoteResult::NeedsDiagnostics) => Step::RunLocal(Served::LocalDiagnostics),
            Err(reason) => Step::RunLocal(Served::Fallback { reason }),
        });
    };
    // With the cache on, local compiles run captured so their result (warnings too) is stored.
    // Every local compile holds a local-work slot, like preprocessing.
    let _slot = match &outcome {
        Ok(RemoteResult::Done { .. }) => None,
        _ => local_slots::acquire(cfg.client.local_jobs),
    };
    match outcome {
        Ok(RemoteResult::Done { worker }) => {
            c.store(&pending, job, Vec::new()).await;
            Ok(Step::Exit(0, Served::Remote { worker }))
        }
        Ok(RemoteResult::NeedsDiagnostics) => {
            c.compile_locally(compiler, args, job, &pending, Served::LocalDiagnostics)
                .await
        }
        Err(reason) => {
            let served = Served::Fallback { reason };
            if let Some(text) = &text
                && let Some(done) = c
                    .compile_text_locally(compiler, job, text, &pending, served.clone())
                    .await
            {
                return Ok(done);
            }
            c.compile_locally(compiler, args, job, &pending, served)
                .await
        }
    }
}

enum RemoteResult {
    Done { worker: String },
    NeedsDiagnostics,
}

/// Sends one Compile request to the coordinator. A failed call is noticed (log only) and
/// becomes the fallback reason: `protocol_mismatch` when the coordinator refused the request,
/// else `coordinator_error`.
pub(crate) async fn send_compile(
    client: &mut Coordinator,
    toolchain: &Toolchain,
    spec: pb::TaskSpec,
) -> Result<pb::CompileResponse, String> {
    let resp = client
        .compile(pb::CompileRequest {
            protocol_version: PROTOCOL_VERSION,
            toolchain: Some(toolchain.clone().into()),
            spec: Some(spec),
            client_id: String::new(),
        })
        .await;
    match resp {
        Ok(r) => Ok(r.into_inner()),
        Err(status) if status.code() == tonic::Code::FailedPrecondition => {
            notice(
                "coordinator",
                &format!(
                    "coordinator refused the request: {}; compiled locally",
                    status.message()
                ),
            );
            Err("protocol_mismatch".into())
        }
        Err(status) => {
            notice(
                "coordinator",
                &format!(
                    "remote compile failed: {}; compiled locally",
                    status.message()
                ),
            );
            Err("coordinator_error".into())
        }
    }
}

/// Ships the preprocessed text; returns the fallback reason when the farm could not compile it.
async fn remote_compile(
    cfg: &FarmConfig,
    mut client: Coordinator,
    compiler: &Path,
    args: &[OsString],
    job: &CompileJob,
    toolchain: &Toolchain,
    preprocessed: Vec<u8>,
) -> Result<RemoteResult, String> {
    // Sampled verification keeps a copy of the text to recompile locally.
    let keep_text = verify::sampled(cfg.verify.rate).then(|| preprocessed.clone());
    // The worker derives the exact command from the original arguments and the preprocessed text.
    let mut command = vec![toolchain.name.clone()];
    command.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let task_id = TaskId::random().to_string();
    let spec = pb::TaskSpec {
        id: task_id.clone(),
        command,
        inputs: vec![pb::InputFile {
            path: PREPROCESSED_INPUT.into(),
            contents: preprocessed,
            executable: false,
        }],
        // Variables that shape the object or its diagnostics (SOURCE_DATE_EPOCH, LANG, ...).
        env: hybridgrid_compiler::CLIENT_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect(),
        timeout_ms: cfg.client.compile_timeout.as_millis() as u64,
        ..Default::default()
    };
    let resp = send_compile(&mut client, toolchain, spec).await?;
    use pb::compile_response::Result as R;
    match resp.result {
        Some(R::Completed(done)) => {
            let out = done.output.unwrap_or_default();
            if out.exit_code != 0 || !out.stderr.is_empty() {
                return Ok(RemoteResult::NeedsDiagnostics);
            }
            let Some(obj) = out.files.into_iter().find(|f| f.path == OBJECT_OUTPUT) else {
                return Err("worker_output_missing".into());
            };
            let mut object = obj.contents;
            if let Some(text) = keep_text {
                let _slot = local_slots::acquire(cfg.client.local_jobs);
                match verify::local_object(compiler, job, &text) {
                    Ok(local) if local == object => {
                        stats::record(
                            &stats_log(),
                            &Served::Verified {
                                worker: done.worker_id.clone(),
                            },
                        );
                    }
                    Ok(local) => {
                        notice(
                            "verify",
                            &format!(
                                "worker {} returned a different object for {}; used the local compile",
                                done.worker_id,
                                job.output().display()
                            ),
                        );
                        stats::record(
                            &stats_log(),
                            &Served::VerifyMismatch {
                                worker: done.worker_id.clone(),
                            },
                        );
                        let _ = client
                            .report_mismatch(pb::MismatchReport {
                                protocol_version: PROTOCOL_VERSION,
                                worker_id: done.worker_id.clone(),
                                task_id: task_id.clone(),
                                detail: format!(
                                    "{} bytes remote, {} bytes local for {}",
                                    object.len(),
                                    local.len(),
                                    job.output().display()
                                ),
                            })
                            .await;
                        object = local;
                    }
                    Err(e) => notice(
                        "verify",
                        &format!("verification of {} skipped: {e}", job.output().display()),
                    ),
                }
            }
            write_atomic(job.output(), &object).map_err(|e| {
                notice(
                    "output",
                    &format!("cannot write {}: {e}", job.output().display()),
                );
                "output_write_failed".to_owned()
            })?;
            Ok(RemoteResult::Done {
                worker: done.worker_id,
            })
        }
        Some(R::Fallback(f)) => Err(f.reason),
        None => Err("coordinator_error".into()),
    }
}

/// How many more compiles than `local` cores a build runs at once for the farm (from the
/// coordinator's `Hello`), or `None` when it cannot be asked: see [`Slots::jobs`].
pub async fn farm_jobs(cfg: &FarmConfig, local: u32) -> Option<u32> {
    let (_, slots) = connect(cfg).await.ok()?;
    Some(slots.jobs(local))
}

/// Tells the coordinator about fallbacks it could not see itself (e.g. it was unreachable), so its
/// `/api/stats` counts every local fallback, and about the build's compile-cache events (hits per
/// tier, misses, evictions, corrupt entries), for its `/metrics` and `/api/stats`. Best effort.
pub async fn report_fallbacks(cfg: &FarmConfig, totals: &stats::Totals) {
    const COORDINATOR_COUNTED: &[&str] = &[
        "no_workers",
        "no_matching_toolchain",
        "all_busy",
        "all_circuits_open",
        "all_excluded",
        "workers_failed",
        "admission_full",
        "rejected_by_worker",
        "rejected_by_coordinator",
        "no_rooted_worker",
        "system_headers_differ",
    ];
    let fallbacks: std::collections::HashMap<String, u64> = totals
        .fallbacks
        .iter()
        .filter(|(k, _)| !COORDINATOR_COUNTED.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), *v))
        .collect();
    let cache: std::collections::HashMap<String, u64> = [
        (
            "hit_local",
            totals.cache_hits.get("local").copied().unwrap_or(0),
        ),
        (
            "hit_shared",
            totals.cache_hits.get("shared").copied().unwrap_or(0),
        ),
        ("miss", totals.cache_misses),
        ("evictions", totals.cache_evictions),
        ("corrupt", totals.cache_corrupt),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    if fallbacks.is_empty() && cache.is_empty() && totals.local_by_choice == 0 {
        return;
    }
    if let Ok((mut c, _)) = connect(cfg).await {
        let _ = c
            .report(pb::ReportRequest {
                protocol_version: PROTOCOL_VERSION,
                client_id: String::new(),
                fallbacks,
                cache,
                local_by_choice: totals.local_by_choice,
            })
            .await;
    }
}

/// Pretty JSON of the totals, for `hgbuild --stats`.
pub fn to_json(t: &stats::Totals) -> Option<String> {
    serde_json::to_string_pretty(t).ok()
}
