//! The native executor's sandbox against real gcc/as: normal compiles work, reading files
//! outside the toolchain and the work dir fails, growing the object is stopped by a limit, and
//! there is no network.

use hybridgrid_core::{CancellationToken, ExecError, Executor, InputFile, TaskOutput, TaskSpec};
use hybridgrid_executors::{NativeConfig, NativeExecutor, Sandbox, SandboxConfig};
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(120);

fn sandboxed() -> (NativeExecutor, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let sandbox = Sandbox::probe(SandboxConfig {
        read_only: ["/usr", "/lib", "/lib64", "/bin"].map(Into::into).into(),
        memory_bytes: 1 << 30,
        file_size_bytes: 64 << 20,
        cpu_seconds: 60,
    })
    .expect("this kernel has Landlock");
    let exec = NativeExecutor::new(NativeConfig {
        work_root: root.path().join("work"),
        path: None,
    })
    .with_sandbox(sandbox);
    (exec, root)
}

/// Compiles `source` (as `a.c`) with gcc in the sandbox.
async fn compile(exec: &NativeExecutor, source: &str) -> Result<TaskOutput, ExecError> {
    let mut spec = TaskSpec::new(
        ["gcc", "-c", "a.c", "-o", "a.o"].map(String::from).into(),
        TIMEOUT,
    );
    spec.inputs = vec![InputFile {
        path: "a.c".into(),
        contents: source.as_bytes().to_vec().into(),
        executable: false,
    }];
    spec.outputs = vec!["a.o".into()];
    spec.limits.max_file_bytes = 256 << 20;
    exec.execute(spec, CancellationToken::new()).await
}

fn stderr(out: &TaskOutput) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_normal_compile_works_and_matches_an_unsandboxed_one() {
    let (exec, _root) = sandboxed();
    let src = "#include <stdio.h>\nint main(void) { puts(\"hi\"); return 0; }\n";
    let out = compile(&exec, src).await.expect("runs");
    assert_eq!(out.exit_code, 0, "{}", stderr(&out));
    let plain_root = tempfile::tempdir().expect("temp dir");
    let plain = NativeExecutor::new(NativeConfig {
        work_root: plain_root.path().join("work"),
        path: None,
    });
    let expected = compile(&plain, src).await.expect("runs");
    assert_eq!(out.files[0].contents, expected.files[0].contents);
}

#[tokio::test]
async fn incbin_of_files_outside_the_sandbox_fails() {
    let (exec, _root) = sandboxed();
    let parent = format!("/proc/{}/environ", std::process::id());
    for file in [
        "/etc/passwd",
        "/proc/self/environ",
        parent.as_str(),
        "/etc/hostname",
    ] {
        assert!(std::fs::metadata(file).is_ok(), "{file} exists here");
        let src = format!("__asm__(\".incbin \\\"{file}\\\"\");\n");
        let out = compile(&exec, &src).await.expect("runs");
        assert_ne!(out.exit_code, 0, "{file} was read: {}", stderr(&out));
        assert!(out.files.is_empty(), "{file}");
        assert!(
            stderr(&out).contains(&format!("file not found: {file}")),
            "{file}: {}",
            stderr(&out)
        );
    }
}

#[tokio::test]
async fn growing_the_object_is_stopped_by_a_limit() {
    let (exec, _root) = sandboxed();
    for src in [
        "__asm__(\".incbin \\\"/dev/zero\\\"\");\n",
        "__asm__(\".skip 100000000000\");\n",
        "__asm__(\".fill 4000000000, 8, 0\");\n",
    ] {
        let out = compile(&exec, src)
            .await
            .expect("stopped by a limit, not the deadline");
        assert_ne!(out.exit_code, 0, "{src}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains("File size limit exceeded")
                || err.contains("file not found: /dev/zero")
                || err.contains("memory exhausted"),
            "{src}: {err}"
        );
    }
}

#[tokio::test]
async fn there_is_no_network() {
    let (exec, _root) = sandboxed();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let script = format!(
        "import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=5)\nprint('connected')\n"
    );
    let spec = TaskSpec::new(vec!["python3".into(), "-c".into(), script], TIMEOUT);
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("runs");
    assert_ne!(out.exit_code, 0);
    assert!(!String::from_utf8_lossy(&out.stdout).contains("connected"));
    let err = stderr(&out);
    assert!(
        err.contains("Network is unreachable") || err.contains("Permission denied"),
        "{err}"
    );
}

#[tokio::test]
async fn writes_outside_the_work_dir_fail() {
    let (exec, root) = sandboxed();
    let target = root.path().join("outside");
    let spec = TaskSpec::new(
        vec![
            "sh".into(),
            "-c".into(),
            format!("echo x > {} && echo wrote", target.display()),
        ],
        TIMEOUT,
    );
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("runs");
    assert_ne!(out.exit_code, 0);
    assert!(!target.exists());
}
