//! Never a wrong object (issue 10): workers whose toolchain differs in version or target never get a
//! task, and a worker that corrupts its objects is caught by sampled verification.
//! A farm on a real network (issue 16): the compiler on a worker is sandboxed (requests sent
//! straight to a real `hg-worker`, as an attacker would), the shared cache serves nothing that
//! lacks the farm's MAC, and no password appears in any log or `--stats` output.

mod support;

use hybridgrid_transport::pb;
use redis::Commands;
use std::process::Command;
use std::time::{Duration, Instant};
use support::*;

const CFLAGS: &str = "-O2 -g -std=gnu99 -DLUA_USE_LINUX -MD";

/// A `gcc` wrapper that lies about one thing: `flag` answers `answer`; everything else is gcc's.
fn lying_gcc(dir: &std::path::Path, name: &str, flag: &str, answer: &str) -> std::path::PathBuf {
    let bin = dir.join(name);
    std::fs::create_dir_all(&bin).expect("mkdir");
    let script = bin.join("gcc");
    std::fs::write(&script, format!("#!/bin/sh\nif [ \"$1\" = \"{flag}\" ]; then echo {answer}; exit 0; fi\nexec /usr/bin/gcc \"$@\"\n"))
        .expect("write wrapper");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    script
}

fn elf_machine(path: &std::path::Path) -> u16 {
    let b = std::fs::read(path).expect("object");
    assert_eq!(&b[..4], b"\x7fELF", "{} is not ELF", path.display());
    u16::from_le_bytes([b[18], b[19]])
}

fn build(
    dir: &std::path::Path,
    coord: &str,
    name: &str,
    src: &std::path::Path,
    stems: &[String],
) -> (std::path::PathBuf, std::path::PathBuf, String) {
    let build = dir.join(name);
    let plain = dir.join(format!("{name}.plain"));
    write_makefile(&build, src, stems, CFLAGS);
    assert_eq!(
        run(Command::new("make").args(["-s", "-j2", "-C"]).arg(&build)).0,
        0
    );
    std::fs::rename(&build, &plain).expect("move aside");
    write_makefile(&build, src, stems, CFLAGS);
    let (code, _, err) = run(hgbuild(dir, coord)
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&build));
    assert_eq!(code, 0, "farm build failed: {err}");
    (build, plain, err)
}

#[test]
fn workers_with_another_compiler_version_or_target_never_get_a_task() {
    let tmp = TempDir::new("mismatch");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems: Vec<String> = copy_sources(&lua_dir("5.4"), &src)
        .into_iter()
        .take(12)
        .collect();
    let other_version = lying_gcc(dir, "v99", "-dumpfullversion", "99.1.0");
    let other_target = lying_gcc(dir, "arm", "-dumpmachine", "aarch64-linux-gnu");
    let coord = Daemon::coordinator(dir, &[]);
    let v = other_version.to_string_lossy().into_owned();
    let t = other_target.to_string_lossy().into_owned();
    let _wv = Daemon::worker_env(
        dir,
        "wrong-version",
        "127.0.0.2",
        &coord.grpc,
        None,
        &[("HG_WORKER_COMPILERS", &v)],
    );
    let _wt = Daemon::worker_env(
        dir,
        "wrong-target",
        "127.0.0.3",
        &coord.grpc,
        None,
        &[("HG_WORKER_COMPILERS", &t)],
    );
    wait_workers_up(&coord.http, 2);

    // Only mismatched workers: every compile runs locally, with the reason counted.
    let (b1, p1, err) = build(dir, &coord.grpc, "only-wrong", &src, &stems);
    assert!(
        err.contains(&format!(
            "{} local fallbacks (no_matching_toolchain: {})",
            stems.len(),
            stems.len()
        )),
        "{err}"
    );
    assert_same_outputs(&p1, &b1, &stems);
    let s = stats(&coord.http);
    assert_eq!(
        s["fallbacks"]["no_matching_toolchain"].as_u64(),
        Some(stems.len() as u64),
        "{s}"
    );

    // A matching worker joins: it gets every task, the others still none.
    let _good = Daemon::worker(dir, "good", "127.0.0.4", &coord.grpc, None);
    wait_workers_up(&coord.http, 3);
    let (b2, p2, err) = build(dir, &coord.grpc, "with-good", &src, &stems);
    assert!(
        err.contains(&format!("{} compiled remotely on 1 worker(s)", stems.len())),
        "{err}"
    );
    assert_same_outputs(&p2, &b2, &stems);
    for s_ in &stems {
        assert_eq!(
            elf_machine(&b2.join(format!("{s_}.o"))),
            62,
            "not an x86-64 object"
        );
    }
    let s = stats(&coord.http);
    for w in s["workers"].as_array().expect("workers") {
        let expect = if w["id"] == "good" {
            stems.len() as u64
        } else {
            0
        };
        assert_eq!(w["done"].as_u64(), Some(expect), "{w}");
    }
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_worker_that_corrupts_objects_is_caught_every_time() {
    let tmp = TempDir::new("faulty");
    let dir = tmp.path();
    let src = dir.join("src");
    let stems = copy_sources(&lua_dir("5.4"), &src);
    let coord = Daemon::coordinator(dir, &[]);
    let _bad = Daemon::worker_env(
        dir,
        "faulty",
        "127.0.0.2",
        &coord.grpc,
        None,
        &[("HG_FAULT_FLIP_OBJECT_BYTE", "1")],
    );
    wait_workers_up(&coord.http, 1);
    let _good = Daemon::worker(dir, "good", "127.0.0.3", &coord.grpc, None);
    wait_workers_up(&coord.http, 2);
    let build_dir = dir.join("build");
    let plain = dir.join("build.plain");
    write_makefile(&build_dir, &src, &stems, CFLAGS);
    assert_eq!(
        run(Command::new("make")
            .args(["-s", "-j2", "-C"])
            .arg(&build_dir))
        .0,
        0
    );
    std::fs::rename(&build_dir, &plain).expect("move aside");
    write_makefile(&build_dir, &src, &stems, CFLAGS);
    let (code, _, err) = run(hgbuild(dir, &coord.grpc)
        .env("HG_VERIFY_RATE", "1.0")
        .env("HG_CACHE_ENABLED", "false")
        .args(["make", "-s", "-j8", "-C"])
        .arg(&build_dir));
    assert_eq!(code, 0, "{err}");
    // The final objects are right, whatever the faulty worker sent.
    assert_same_outputs(&plain, &build_dir, &stems);
    let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
    let from_faulty = log.lines().filter(|l| *l == "remote faulty").count();
    let caught = log
        .lines()
        .filter(|l| *l == "verify_mismatch faulty")
        .count();
    assert!(
        from_faulty >= 1,
        "the faulty worker got no task, nothing was proven: {log}"
    );
    assert_eq!(
        caught, from_faulty,
        "every object from the faulty worker must be caught: {log}"
    );
    assert_eq!(
        log.lines()
            .filter(|l| l.starts_with("verify_mismatch good"))
            .count(),
        0,
        "{log}"
    );
    let open = wait_until(Duration::from_secs(5), || {
        let s = stats(&coord.http);
        s["workers"].as_array().is_some_and(|ws| {
            ws.iter().any(|w| {
                // A slow build may outlast the cooldown: the circuit is then
                // half-open, but it has opened, and for this reason.
                w["id"] == "faulty"
                    && w["circuit"]["times_opened"].as_u64() >= Some(1)
                    && w["circuit"]["state"] != "closed"
                    && w["circuit"]["reason"] == "output_mismatch"
            })
        })
    });
    assert!(
        open,
        "the faulty worker's circuit never opened for output_mismatch: {}",
        stats(&coord.http)
    );
    assert!(stats(&coord.http)["verify_mismatches"]["faulty"].as_u64() >= Some(1));
}

#[cfg(feature = "fault-injection")]
#[test]
fn a_poisoned_shared_cache_entry_is_caught_and_replaced() {
    let tmp = TempDir::new("poison");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new("redis://127.0.0.1:6379", "farm");
    let prefix = cleanup.prefix().to_owned();
    let shared = [
        ("HG_CACHE_SHARED", "redis://127.0.0.1:6379"),
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    // The faulty worker shares its corrupted objects with every client through Redis.
    let mut env = shared.to_vec();
    env.push(("HG_FAULT_FLIP_OBJECT_BYTE", "1"));
    let _bad = Daemon::worker_env(dir, "faulty", "127.0.0.2", &coord.grpc, None, &env);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("p.c"), "int p(int x) { return x * 3 + 1; }\n").expect("write");
    let (code, _, err) = run(Command::new("gcc")
        .args(["-O2", "-c", "p.c", "-o", "plain.o"])
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let plain = std::fs::read(dir.join("plain.o")).expect("plain object");
    // A client that checks nothing takes the bad object, and the worker stores it in Redis.
    let a = dir.join("a");
    std::fs::create_dir_all(&a).expect("mkdir");
    let (code, _, err) = run(hgbuild(&a, &coord.grpc)
        .env("HG_VERIFY_RATE", "0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "a.o"])
        .current_dir(&a));
    assert_eq!(code, 0, "{err}");
    assert_ne!(
        std::fs::read(a.join("a.o")).expect("a.o"),
        plain,
        "the fault switch did not corrupt anything"
    );
    // Client B (empty local cache) verifies shared hits: it catches the bad entry and replaces it.
    let b = dir.join("b");
    std::fs::create_dir_all(&b).expect("mkdir");
    let mut cmd = hgbuild(&b, "127.0.0.1:1");
    cmd.envs(shared)
        .env("HG_VERIFY_CACHE_RATE", "1.0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "b.o"])
        .current_dir(&b);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(b.join("b.o")).expect("b.o"),
        plain,
        "B used the poisoned object"
    );
    let log = std::fs::read_to_string(b.join("stats.log")).expect("stats log");
    assert!(
        log.contains("verify_mismatch shared_cache") && log.contains("cache_hit shared"),
        "{log}"
    );
    // Client C finds the repaired entry: a shared hit that verifies clean.
    let c = dir.join("c");
    std::fs::create_dir_all(&c).expect("mkdir");
    let mut cmd = hgbuild(&c, "127.0.0.1:1");
    cmd.envs(shared)
        .env("HG_VERIFY_CACHE_RATE", "1.0")
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "c.o"])
        .current_dir(&c);
    let (code, _, err) = run(&mut cmd);
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(c.join("c.o")).expect("c.o"), plain);
    let log = std::fs::read_to_string(c.join("stats.log")).expect("stats log");
    assert!(
        log.contains("verified shared_cache") && !log.contains("verify_mismatch"),
        "{log}"
    );
}

// ---- The compiler sandbox, through a real worker ---------------------------------------------

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

#[test]
fn gcc_long_aliases_and_text_a_worker_would_refuse_never_reach_a_worker() {
    let tmp = TempDir::new("noship");
    let dir = tmp.path();
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker(dir, "w", "127.0.0.2", &coord.grpc, None);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("h.h"), "#define V 1\n").expect("write");
    std::fs::write(dir.join("p.c"), "int p(int x) { return x + 1; }\n").expect("write");
    // Passes directives-only preprocessing verbatim; on a worker it would read the worker's h.h.
    std::fs::write(
        dir.join("dep.c"),
        "_Pragma(\"GCC dependency \\\"h.h\\\"\")\nint d;\n",
    )
    .expect("write");
    let cases: [(&[&str], &str); 4] = [
        (
            &["-O2", "--prefix=/tmp/hg-evil", "-c", "p.c", "-o", "a.o"],
            "local_only unsupported_flag:--prefix",
        ),
        (
            &[
                "-O2",
                "--for-assembler=-alh=listing.txt",
                "-c",
                "p.c",
                "-o",
                "b.o",
            ],
            "local_only unsupported_flag:--for-assembler",
        ),
        (
            &[
                "-O2",
                "--for-assembler",
                "-alh=listing.txt",
                "-c",
                "p.c",
                "-o",
                "c.o",
            ],
            "local_only unsupported_flag:--for-assembler",
        ),
        (
            &["-O2", "-std=c11", "-c", "dep.c", "-o", "d.o"],
            "fallback reads_worker_files",
        ),
    ];
    for (args, expect) in cases {
        let (code, _, err) = run(hgbuild(dir, &coord.grpc)
            .env("HG_CACHE_ENABLED", "false")
            .arg("gcc")
            .args(args)
            .current_dir(dir));
        assert_eq!(code, 0, "{args:?}: {err}");
        let log = std::fs::read_to_string(dir.join("stats.log")).expect("stats log");
        assert_eq!(log.lines().last(), Some(expect), "{args:?}: {log}");
    }
    let s = stats(&coord.http);
    for w in s["workers"].as_array().expect("workers") {
        assert_eq!(w["done"].as_u64(), Some(0), "a worker got a task: {w}");
    }
    // The reasons are counted by `--stats` too.
    let (code, out, _) = run(hgbuild(dir, &coord.grpc).arg("--stats"));
    assert_eq!(code, 0);
    assert!(
        out.contains("unsupported_flag:--prefix: 1")
            && out.contains("unsupported_flag:--for-assembler: 2"),
        "{out}"
    );
    assert!(out.contains("reads_worker_files: 1"), "{out}");
}

// ---- Shared cache trust --------------------------------------------------------------------

const REDIS: &str = "redis://127.0.0.1:6379";
const FARM_SECRET: &str = "e2e farm secret, 32 characters!";

fn block_on<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::runtime::Runtime::new().expect("runtime").block_on(f)
}

fn redis_cmd(args: &[&str]) -> Result<redis::Value, redis::RedisError> {
    let client = redis::Client::open(REDIS).expect("redis url");
    let mut c = client.get_connection().expect("redis is up");
    let mut cmd = redis::cmd(args[0]);
    for a in &args[1..] {
        cmd.arg(*a);
    }
    cmd.query(&mut c)
}

#[test]
fn a_forged_shared_cache_entry_written_into_redis_is_never_served() {
    let tmp = TempDir::new("forged");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new(REDIS, "forged");
    let prefix = cleanup.prefix().to_owned();
    let shared = [
        ("HG_CACHE_SHARED", REDIS),
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
        ("HG_CACHE_SHARED_SECRET", FARM_SECRET),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    let _w = Daemon::worker_env(dir, "w", "127.0.0.2", &coord.grpc, None, &shared);
    wait_workers_up(&coord.http, 1);
    std::fs::write(dir.join("p.c"), "int p(int x) { return x * 7 + 2; }\n").expect("write");
    let (code, _, err) = run(Command::new("gcc")
        .args(["-O2", "-c", "p.c", "-o", "plain.o"])
        .current_dir(dir));
    assert_eq!(code, 0, "{err}");
    let plain = std::fs::read(dir.join("plain.o")).expect("plain object");
    // Client A compiles through the farm; the worker shares the result, with its MAC.
    let a = dir.join("a");
    std::fs::create_dir_all(&a).expect("mkdir");
    let (code, _, err) = run(hgbuild(&a, &coord.grpc)
        .envs(shared)
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "a.o"])
        .current_dir(&a));
    assert_eq!(code, 0, "{err}");
    let keys = block_on(cleanup.keys());
    assert_eq!(keys.len(), 1, "one shared entry expected: {keys:?}");
    // The attacker can write Redis but has no secret: a well-formed entry with its own object.
    let digest: hybridgrid_core::Digest = keys[0]
        .rsplit(':')
        .next()
        .expect("hex")
        .parse()
        .expect("digest");
    let evil = hybridgrid_farm_protocol::CachedResult {
        exit_code: 0,
        stderr: Vec::new(),
        diag_env: [0; 32],
        object: b"\x7fELF evil".to_vec(),
    };
    let forged = hybridgrid_cache::entry::encode(&digest, &evil.encode());
    let client = redis::Client::open(REDIS).expect("url");
    let mut c = client.get_connection().expect("redis");
    let () = redis::cmd("SET")
        .arg(&keys[0])
        .arg(forged)
        .query(&mut c)
        .expect("SET");
    // Client B, fresh local cache, default verification rates: never uses the forged object.
    let b = dir.join("b");
    std::fs::create_dir_all(&b).expect("mkdir");
    let (code, _, err) = run(hgbuild(&b, "127.0.0.1:1")
        .envs(shared)
        .args(["gcc", "-O2", "-c", "../p.c", "-o", "b.o"])
        .current_dir(&b));
    assert_eq!(code, 0, "{err}");
    assert_eq!(std::fs::read(b.join("b.o")).expect("b.o"), plain);
    assert_eq!(err, "", "the compile's stderr is the compiler's");
    let farm_log = std::fs::read_to_string(b.join("hgbuild.log")).unwrap_or_default();
    assert!(farm_log.contains("failed authentication"), "{farm_log}");
    let log = std::fs::read_to_string(b.join("stats.log")).expect("stats log");
    assert!(
        log.contains("cache_forged 1") && !log.contains("cache_hit shared"),
        "{log}"
    );
    let (_, out, _) = run(hgbuild(&b, "127.0.0.1:1").envs(shared).arg("--stats"));
    assert!(out.contains("1 forged shared entries refused"), "{out}");
    assert!(
        out.contains("entries authenticated with cache.shared_secret"),
        "{out}"
    );
}

/// A Redis ACL user with a password, deleted on drop.
struct AclUser {
    name: String,
    password: String,
}

impl AclUser {
    /// `rules` after `reset on >password`, as in docs/SECURITY.md.
    fn new(tag: &str, rules: &[String]) -> AclUser {
        let u = AclUser {
            name: format!("hg-{tag}-{}", std::process::id()),
            password: format!("pw{}{}", tag, uuid_like()),
        };
        let pass = format!(">{}", u.password);
        let mut args = vec![
            "ACL",
            "SETUSER",
            u.name.as_str(),
            "reset",
            "on",
            pass.as_str(),
        ];
        args.extend(rules.iter().map(String::as_str));
        redis_cmd(&args).expect("ACL SETUSER");
        u
    }

    fn url(&self, password: &str) -> String {
        format!("redis://{}:{password}@127.0.0.1:6379", self.name)
    }
}

impl Drop for AclUser {
    fn drop(&mut self) {
        let _ = redis_cmd(&["ACL", "DELUSER", &self.name]);
    }
}

fn uuid_like() -> String {
    format!(
        "{:x}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
    )
}

#[test]
fn read_only_clients_use_an_acl_user_and_no_password_is_ever_printed() {
    let tmp = TempDir::new("acl");
    let dir = tmp.path();
    let cleanup = RedisPrefix::new(REDIS, "acl");
    let prefix = cleanup.prefix().to_owned();
    let keys = format!("~{prefix}cache:*");
    // The ACL lines of docs/SECURITY.md, for this test's prefix.
    let writer = AclUser::new(
        "writer",
        &[
            keys.clone(),
            "+getrange".into(),
            "+set".into(),
            "+del".into(),
            "+ping".into(),
        ],
    );
    let reader = AclUser::new("reader", &[keys, "+getrange".into(), "+ping".into()]);
    let wrong = "wrongpassword-not-this-one";
    let writer_url = writer.url(&writer.password);
    let reader_url = reader.url(&reader.password);
    let common = [
        ("HG_CACHE_SHARED_PREFIX", prefix.as_str()),
        ("HG_CACHE_SHARED_SECRET", FARM_SECRET),
    ];
    let coord = Daemon::coordinator(dir, &[]);
    let mut env = common.to_vec();
    env.extend([
        ("HG_CACHE_SHARED", writer_url.as_str()),
        ("HG_LOG_LEVEL", "debug"),
    ]);
    let w = Daemon::worker_env(dir, "w", "127.0.0.2", &coord.grpc, None, &env);
    wait_workers_up(&coord.http, 1);
    // A worker with a wrong password: it reports the failure, without the password.
    let bad_url = writer.url(wrong);
    let mut env = common.to_vec();
    env.extend([
        ("HG_CACHE_SHARED", bad_url.as_str()),
        ("HG_LOG_LEVEL", "debug"),
    ]);
    let bad = Daemon::worker_env(dir, "bad", "127.0.0.3", "127.0.0.1:1", None, &env);

    std::fs::write(dir.join("q.c"), "int q(int x) { return x * 5 - 3; }\n").expect("write");
    let mut printed = String::new();
    let mut client = |name: &str, url: &str, coord_addr: &str| {
        let home = dir.join(name);
        std::fs::create_dir_all(&home).expect("mkdir");
        let (code, out, err) = run(hgbuild(&home, coord_addr)
            .envs(common)
            .env("HG_CACHE_SHARED", url)
            .env("HG_CACHE_SHARED_READ_ONLY", "true")
            .env("HG_LOG_LEVEL", "debug")
            .args(["gcc", "-O2", "-c", "../q.c", "-o", "q.o"])
            .current_dir(&home));
        assert_eq!(code, 0, "{name}: {err}");
        let (_, stats_out, stats_err) = run(hgbuild(&home, coord_addr)
            .envs(common)
            .env("HG_CACHE_SHARED", url)
            .env("HG_CACHE_SHARED_READ_ONLY", "true")
            .arg("--stats"));
        // The farm's own messages go to the log file, never into the compile's stderr.
        let farm_log = std::fs::read_to_string(home.join("hgbuild.log")).unwrap_or_default();
        printed.push_str(&format!("{out}{err}{stats_out}{stats_err}{farm_log}"));
        (
            std::fs::read_to_string(home.join("stats.log")).expect("stats log"),
            stats_out,
        )
    };
    // Read-only client A: compiled remotely; only the worker writes the shared entry.
    let (log, _) = client("a", &reader_url, &coord.grpc);
    assert!(log.contains("remote w"), "{log}");
    assert_eq!(block_on(cleanup.key_count()), 1);
    // Read-only client B: a shared hit through the read-only user.
    let (log, stats_out) = client("b", &reader_url, "127.0.0.1:1");
    assert!(log.contains("cache_hit shared"), "{log}");
    assert!(
        stats_out.contains("read-only") && stats_out.contains(":***@"),
        "{stats_out}"
    );
    // Client C with a wrong password: compiles anyway, says the shared tier is unavailable.
    let c_url = reader.url(wrong);
    let (log, _) = client("c", &c_url, "127.0.0.1:1");
    assert!(log.contains("fallback coordinator_unreachable"), "{log}");
    // (An authentication failure within the 500 ms connect budget, or the budget running out
    // while the client retries: either way named, with the password masked.)
    assert!(
        printed.contains("shared compile cache unavailable")
            || printed.contains("shared compile cache did not answer"),
        "{printed}"
    );
    // The server refuses writes by the read-only user whatever a client is configured to do.
    let denied = redis::Client::open(reader_url.as_str())
        .expect("url")
        .get_connection()
        .expect("connect as reader")
        .set::<_, _, ()>(format!("{prefix}cache:x"), "x")
        .expect_err("the read-only user wrote");
    assert!(denied.to_string().contains("no permissions"), "{denied}");

    let logs = [
        w.log_text(),
        bad.log_text(),
        std::fs::read_to_string(&coord.log).unwrap_or_default(),
        printed,
    ]
    .concat();
    assert!(
        bad.log_text().contains("shared compile cache unavailable"),
        "{}",
        bad.log_text()
    );
    for secret in [
        writer.password.as_str(),
        reader.password.as_str(),
        wrong,
        FARM_SECRET,
    ] {
        assert!(!logs.contains(secret), "{secret:?} was printed:\n{logs}");
    }
}
