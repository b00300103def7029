//! clang with DWARF 5 debug info (its default `-g`) through the farm, as a **rooted** compile: its
//! line table holds an MD5 of every source file, which a compile of shipped text cannot compute,
//! so the wrapper ships the compile's inputs instead and the worker runs the original command at
//! this machine's paths (see `hybridgrid_farm_protocol::RootedManifest`).
//!
//! The inputs are the files named by the line markers of the `-frewrite-includes` text (run
//! locally, as for every clang compile: it writes the depfile too): this machine's files with
//! their contents, system headers (beneath `/usr/`) by digest only, which the worker compares
//! with its own and refuses on any difference (`system_headers_differ`: compiled here). A compile
//! this cannot reproduce exactly runs locally as before (`debug_file_checksums`): a file reached
//! through a symlink, `__has_include` in a file of this machine (it could find a file that was not
//! read), a working directory other than `$PWD`. The compile cache is not used for these compiles.

use crate::connect::connect;
use crate::error::ClientError;
use crate::notice::notice;
use crate::paths::{toolchain_memo_dir, write_atomic};
use crate::stats::Served;
use crate::step::Step;
use crate::toolchain;
use hybridgrid_compiler::{CompileJob, CompilerKind, Invocation};
use hybridgrid_core::{TaskId, Toolchain};
use hybridgrid_farm_protocol::config::FarmConfig;
use hybridgrid_farm_protocol::{
    OBJECT_OUTPUT, ROOTED_MANIFEST, ROOTED_PREFIX, RootedManifest, file_digest,
};
use hybridgrid_transport::pb;
use std::ffi::OsString;
use std::path::Path;

/// The reason counted when a DWARF 5 compile stays here because it cannot run rooted.
const LOCAL_REASON: &str = "debug_file_checksums";

fn local(reason: &str) -> Step {
    Step::RunLocal(Served::LocalOnly {
        reason: reason.to_owned(),
    })
}

/// Handles a clang compile with DWARF 5 debug info (`LocalReason::DebugFileChecksums` from the
/// plain parse): rooted on the farm when it can be, else locally.
pub(crate) async fn compile(
    cfg: &FarmConfig,
    compiler: &Path,
    args: &[OsString],
) -> Result<Step, ClientError> {
    let probe_error = |message: String| ClientError::Probe {
        path: compiler.to_owned(),
        message,
    };
    let toolchain = toolchain::toolchain(compiler, &toolchain_memo_dir())
        .map_err(|e| probe_error(e.to_string()))?;
    let kind =
        CompilerKind::detect(toolchain.name.as_ref()).map_err(|e| probe_error(e.to_string()))?;
    let job = match hybridgrid_compiler::parse_rooted(kind, args) {
        Invocation::Distributable(job) if job.is_clang() => job,
        _ => return Ok(local(LOCAL_REASON)),
    };
    let (Ok(cwd), Ok(real)) = (hybridgrid_compiler::compile_dir(), std::env::current_dir()) else {
        return Ok(local(LOCAL_REASON));
    };
    if cwd != real || cwd.to_str().is_none_or(|c| c.contains(['\n', '\r'])) {
        return Ok(local(LOCAL_REASON));
    }
    let client = match connect(cfg).await {
        Ok((client, _)) => client,
        Err(e) => {
            notice("coordinator", &format!("{}; compiled locally", e.message));
            return Ok(Step::RunLocal(Served::Fallback {
                reason: e.reason.to_owned(),
            }));
        }
    };
    // Preprocess locally: the inputs' names, and the depfile exactly as the plain compile writes it.
    let Some(text) = crate::compile::preprocess_for_farm(cfg, compiler, &job)? else {
        return Ok(Step::RunLocal(Served::LocalDiagnostics));
    };
    let Some((inputs, manifest)) = inputs(&text, &cwd) else {
        return Ok(local(LOCAL_REASON));
    };
    let mut command = vec![toolchain.name.clone()];
    command.extend(args.iter().map(|a| a.to_string_lossy().into_owned()));
    let mut files = vec![pb::InputFile {
        path: ROOTED_MANIFEST.into(),
        contents: manifest.encode(),
        executable: false,
    }];
    files.extend(inputs);
    let spec = pb::TaskSpec {
        id: TaskId::random().to_string(),
        command,
        inputs: files,
        env: hybridgrid_compiler::CLIENT_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| ((*k).to_owned(), v)))
            .collect(),
        timeout_ms: u64::try_from(cfg.client.compile_timeout.as_millis()).unwrap_or(u64::MAX),
        ..Default::default()
    };
    Ok(remote(client, &toolchain, spec, &job).await)
}

/// The shipped files and the manifest for the compile that printed `text` in `cwd`; `None` when
/// it cannot run rooted exactly (the reason is noticed).
fn inputs(text: &[u8], cwd: &Path) -> Option<(Vec<pb::InputFile>, RootedManifest)> {
    let refuse = |why: String| {
        notice(
            "local",
            &format!("{why}: DWARF 5 debug info compiled locally"),
        );
    };
    let closure = match hybridgrid_compiler::input_closure(text, cwd) {
        Ok(c) => c,
        Err(e) => {
            refuse(e.to_string());
            return None;
        }
    };
    let mut manifest = RootedManifest {
        cwd: cwd.to_str()?.to_owned(),
        system: Vec::new(),
    };
    let mut files = Vec::new();
    for f in closure {
        let contents = match std::fs::read(&f.path) {
            Ok(c) => c,
            Err(e) => {
                refuse(format!("cannot read {}: {e}", f.path.display()));
                return None;
            }
        };
        let path = f.path.to_str()?;
        if f.system {
            manifest
                .system
                .push((path.to_owned(), file_digest(&contents)));
            continue;
        }
        if contents.windows(13).any(|w| w == b"__has_include") {
            refuse(format!("{path} uses __has_include"));
            return None;
        }
        files.push(pb::InputFile {
            path: format!("{ROOTED_PREFIX}{}", path.trim_start_matches('/')),
            contents,
            executable: false,
        });
    }
    Some((files, manifest))
}

/// Sends the rooted request; the step its answer decides.
async fn remote(
    mut client: crate::connect::Coordinator,
    toolchain: &Toolchain,
    spec: pb::TaskSpec,
    job: &CompileJob,
) -> Step {
    let fallback = |reason: &str| {
        Step::RunLocal(Served::Fallback {
            reason: reason.to_owned(),
        })
    };
    let resp = match crate::compile::send_compile(&mut client, toolchain, spec).await {
        Ok(resp) => resp,
        Err(reason) => return fallback(&reason),
    };
    use pb::compile_response::Result as R;
    match resp.result {
        Some(R::Completed(done)) => {
            let out = done.output.unwrap_or_default();
            if out.exit_code != 0 || !out.stderr.is_empty() {
                return Step::RunLocal(Served::LocalDiagnostics);
            }
            let Some(obj) = out.files.into_iter().find(|f| f.path == OBJECT_OUTPUT) else {
                return fallback("worker_output_missing");
            };
            if let Err(e) = write_atomic(job.output(), &obj.contents) {
                notice(
                    "output",
                    &format!("cannot write {}: {e}", job.output().display()),
                );
                return fallback("output_write_failed");
            }
            Step::Exit(
                0,
                Served::Remote {
                    worker: done.worker_id,
                },
            )
        }
        Some(R::Fallback(f)) => fallback(&f.reason),
        None => fallback("coordinator_error"),
    }
}
