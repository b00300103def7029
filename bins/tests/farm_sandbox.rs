//! A farm on a real network (issue 16): the compiler on a worker is sandboxed. Requests are sent
//! straight to a real `hg-worker`, as an attacker would: the compiler reads no file it was not
//! given and is stopped by limits, and a worker where no sandbox can be set up refuses to serve
//! unless allowed.

mod support;

use hybridgrid_transport::pb;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

/// What an attacker sends a worker directly: a compile whose "preprocessed" text is `body`.
fn attack(worker_grpc: &str, body: &str) -> (pb::ExecuteResponse, Duration) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let mut client = pb::worker_client::WorkerClient::connect(format!("http://{worker_grpc}"))
            .await
            .expect("connect to the worker");
        let info = client
            .info(pb::InfoRequest {
                protocol_version: hybridgrid_core::PROTOCOL_VERSION,
            })
            .await
            .expect("worker info")
            .into_inner();
        let toolchain = info
            .capabilities
            .and_then(|c| c.toolchains.into_iter().find(|t| t.name == "gcc"))
            .expect("the worker offers gcc");
        let spec = pb::TaskSpec {
            id: "attack".into(),
            command: ["gcc", "-O2", "-std=c11", "-c", "/src/a.c", "-o", "a.o"]
                .map(String::from)
                .into(),
            inputs: vec![pb::InputFile {
                path: hybridgrid_farm_protocol::PREPROCESSED_INPUT.into(),
                contents: format!("# 0 \"/src/a.c\"\n{body}\nint x;\n").into_bytes(),
                executable: false,
            }],
            timeout_ms: 120_000,
            max_stream_bytes: 1 << 20,
            max_file_bytes: 1 << 30,
            ..Default::default()
        };
        let started = Instant::now();
        let resp = client
            .execute(pb::ExecuteRequest {
                protocol_version: hybridgrid_core::PROTOCOL_VERSION,
                spec: Some(spec),
                toolchain: Some(toolchain),
            })
            .await
            .expect("the worker answers")
            .into_inner();
        (resp, started.elapsed())
    })
}

fn incbin(file: &str) -> String {
    format!("__asm__(\".incbin \\\"{file}\\\"\");")
}

/// The object bytes and stderr of a response, or the failure.
fn outcome(resp: &pb::ExecuteResponse) -> Result<(i32, Vec<u8>, String), String> {
    match &resp.result {
        Some(pb::execute_response::Result::Output(o)) => Ok((
            o.exit_code,
            o.files.iter().flat_map(|f| f.contents.clone()).collect(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )),
        Some(pb::execute_response::Result::Failure(f)) => Err(format!("{f:?}")),
        None => Err("empty response".into()),
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn a_workers_compiler_reads_no_file_it_was_not_given_and_is_stopped_by_limits() {
    let tmp = TempDir::new("sandbox");
    let dir = tmp.path();
    let canary = format!("canary-{}", std::process::id());
    let config = dir.join("worker.yaml");
    std::fs::write(
        &config,
        format!("cache:\n  shared_secret: \"{canary}-secret\"\n"),
    )
    .expect("config");
    let cfg = config.to_string_lossy().into_owned();
    let worker = Daemon::worker_env(
        dir,
        "boxed",
        "127.0.0.1",
        "127.0.0.1:1",
        None,
        &[
            ("HG_CONFIG", cfg.as_str()),
            ("HG_TEST_CANARY", canary.as_str()),
            ("HG_WORKER_TASK_TIMEOUT", "100s"),
            ("HG_WORKER_SANDBOX_FILE_SIZE", "64MiB"),
        ],
    );
    let (code, health) = http_get(&worker.http, "/health");
    assert_eq!(code, 200);
    assert!(health.starts_with("OK\nsandbox: enforced"), "{health}");

    // Control: a file given to the compiler can be included, so a failure below is the sandbox.
    let (resp, _) = attack(&worker.grpc, "int y;");
    assert_eq!(outcome(&resp).map(|o| o.0), Ok(0), "{resp:?}");

    let worker_environ = format!("/proc/{}/environ", worker.pid());
    for file in [
        "/etc/passwd",
        "/proc/self/environ",
        worker_environ.as_str(),
        cfg.as_str(),
    ] {
        let (resp, _) = attack(&worker.grpc, &incbin(file));
        let (exit, object, stderr) = outcome(&resp).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_ne!(exit, 0, "{file} was read");
        assert!(object.is_empty(), "{file}: an object came back");
        assert!(
            stderr.contains(file),
            "{file}: stderr does not name it: {stderr}"
        );
        assert!(
            !stderr.contains(&canary) && !contains(&object, canary.as_bytes()),
            "{file}: the worker's secret leaked"
        );
    }

    // A trigraph line continuation hiding an #include (C11 reads `??/` as a backslash): the
    // worker refuses the text before any compiler runs.
    let (resp, _) = attack(&worker.grpc, "#inc??/\nlude \"/etc/passwd\"");
    match &resp.result {
        Some(pb::execute_response::Result::Failure(f)) => {
            assert_eq!(f.kind, pb::task_failure::Kind::InvalidSpec as i32, "{f:?}");
            assert!(
                f.message.contains("would read a file on the worker"),
                "{f:?}"
            );
        }
        other => panic!("trigraph include compiled: {other:?}"),
    }

    // Growing the object without bound: stopped by a limit within seconds, not by the 100 s
    // deadline (that would be a DEADLINE_EXCEEDED failure instead of a compiler exit).
    for body in [
        incbin("/dev/zero"),
        "__asm__(\".skip 100000000000\");".to_owned(),
        "__asm__(\".fill 4000000000, 8, 0\");".to_owned(),
    ] {
        let (resp, took) = attack(&worker.grpc, &body);
        let (exit, object, stderr) = outcome(&resp).unwrap_or_else(|e| panic!("{body}: {e}"));
        assert_ne!(exit, 0, "{body}");
        assert!(object.is_empty(), "{body}");
        eprintln!(
            "{body}: stopped after {took:?} (exit {exit}): {}",
            stderr.trim()
        );
    }
    assert!(!worker.log_text().contains(&canary), "secret in the log");
}

/// `hg-worker serve` inside a user namespace where no further user or network namespace may
/// be created: no sandbox can be set up.
fn worker_without_namespaces(dir: &std::path::Path, env: &[(&str, &str)]) -> Command {
    let work = dir.join("work-nons");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut c = Command::new("unshare");
    c.args([
        "--user",
        "--map-root-user",
        "sh",
        "-c",
        "echo 0 > /proc/sys/user/max_user_namespaces && echo 0 > /proc/sys/user/max_net_namespaces && exec \"$@\"",
        "sh",
        WORKER,
        "serve",
        "--id",
        "nons",
        "--coordinator",
        "127.0.0.1:1",
        "--grpc-addr",
        "127.0.0.1:0",
        "--http-addr",
        "127.0.0.1:0",
    ])
    .env("HG_WORKER_WORK_DIR", &work);
    c.envs(env.iter().copied());
    c
}

#[test]
fn a_worker_where_no_sandbox_works_refuses_to_serve_unless_allowed() {
    let tmp = TempDir::new("nosandbox");
    let dir = tmp.path();
    let (code, _, err) = run(worker_without_namespaces(dir, &[]).env("HG_LOG_FORMAT", "text"));
    assert_ne!(code, 0, "served without a sandbox: {err}");
    assert!(
        err.contains("no compiler sandbox is possible") && err.contains("worker.allow_unsandboxed"),
        "{err}"
    );

    let worker = Daemon::spawn_for_test(
        worker_without_namespaces(dir, &[("HG_WORKER_ALLOW_UNSANDBOXED", "true")]),
        dir.join("nons.log"),
        "serving gRPC on",
    );
    let (code, health) = http_get(&worker.http, "/health");
    assert_eq!(code, 200);
    assert!(health.contains("sandbox: NONE"), "{health}");
    assert!(worker.log_text().contains("NO compiler sandbox"));
    // What the sandbox prevents, shown on the opted-out worker: the file comes back.
    let (resp, _) = attack(&worker.grpc, &incbin("/etc/passwd"));
    let (exit, object, stderr) = outcome(&resp).expect("compiled");
    assert_eq!(exit, 0, "{stderr}");
    let passwd = std::fs::read("/etc/passwd").expect("passwd");
    assert!(contains(&object, &passwd[..passwd.len().min(32)]));
}

// ---- Arguments and text that must never reach a worker ---------------------------------------
