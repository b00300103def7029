//! Rooted tasks (`NativeExecutor::with_root`), sandboxed and not: the task's `root/` is its `/`,
//! the files laid out there appear at their absolute paths, the bound host directories at theirs,
//! and nothing else of the host is visible; the sandbox still confines the task.

use hybridgrid_core::{CancellationToken, Executor, InputFile, TaskOutput, TaskSpec};
use hybridgrid_executors::{NativeConfig, NativeExecutor, ROOT_DIR, Sandbox, SandboxConfig};
use std::path::PathBuf;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(60);

fn binds() -> Vec<PathBuf> {
    [
        "/usr/bin",
        "/usr/lib",
        "/usr/lib64",
        "/lib",
        "/lib64",
        "/bin",
    ]
    .map(PathBuf::from)
    .into()
}

fn rooted(sandboxed: bool) -> (NativeExecutor, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let mut exec = NativeExecutor::new(NativeConfig {
        work_root: root.path().join("work"),
        path: None,
    });
    if sandboxed {
        let sandbox = Sandbox::probe(SandboxConfig {
            read_only: binds(),
            memory_bytes: 1 << 30,
            file_size_bytes: 64 << 20,
            cpu_seconds: 60,
        })
        .expect("this kernel has Landlock");
        exec = exec.with_sandbox(sandbox);
    }
    (exec.with_root(binds()), root)
}

/// Runs `script` with `/bin/sh` in `/home/me/proj` of the root, where `a.txt` holds `hello`.
async fn run(exec: &NativeExecutor, script: &str) -> TaskOutput {
    let mut spec = TaskSpec::new(["/bin/sh", "-c", script].map(String::from).into(), TIMEOUT);
    spec.inputs = vec![InputFile {
        path: format!("{ROOT_DIR}/home/me/proj/a.txt"),
        contents: b"hello\n".to_vec().into(),
        executable: false,
    }];
    spec.cwd = Some(format!("{ROOT_DIR}/home/me/proj"));
    spec.outputs = vec![format!("{ROOT_DIR}/.hg-tmp/out")];
    exec.execute(spec, CancellationToken::new())
        .await
        .expect("runs")
}

async fn files_appear_at_their_paths_and_nothing_else(sandboxed: bool) {
    let (exec, root) = rooted(sandboxed);
    // A host file the task must not see (it exists beside the work directories).
    std::fs::write(root.path().join("secret"), "x").expect("write");
    let secret = root.path().join("secret");
    let out = run(
        &exec,
        &format!(
            "pwd; cat /home/me/proj/a.txt; cat a.txt >\"$TMPDIR/out\"; ls /; test -e {} || echo hidden",
            secret.display()
        ),
    )
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.exit_code,
        0,
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lines = stdout.lines();
    assert_eq!(lines.next(), Some("/home/me/proj"));
    assert_eq!(lines.next(), Some("hello"));
    let rest: Vec<&str> = lines.collect();
    assert_eq!(rest.last(), Some(&"hidden"), "{stdout}");
    for entry in &rest[..rest.len() - 1] {
        assert!(
            ["bin", "home", "lib", "lib64", "usr"].contains(entry),
            "unexpected {entry} in /: {stdout}"
        );
    }
    assert_eq!(&out.files[0].contents[..], b"hello\n");
    // Nothing stays mounted on the host, and the work directory is gone.
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&root.path().display().to_string()),
        "{mounts}"
    );
    assert_eq!(
        std::fs::read_dir(root.path().join("work"))
            .map(|d| d.count())
            .unwrap_or(0),
        0
    );
}

#[tokio::test]
async fn sandboxed_rooted_tasks_see_their_files_at_their_paths_and_nothing_else() {
    files_appear_at_their_paths_and_nothing_else(true).await;
}

#[tokio::test]
async fn rooted_tasks_without_a_sandbox_see_the_same() {
    files_appear_at_their_paths_and_nothing_else(false).await;
}

#[tokio::test]
async fn bound_directories_are_read_only() {
    for sandboxed in [true, false] {
        let (exec, _root) = rooted(sandboxed);
        let out = run(&exec, "echo x > /usr/bin/hybridgrid-rooted-test").await;
        let written = std::path::Path::new("/usr/bin/hybridgrid-rooted-test");
        let leaked = written.exists();
        let _ = std::fs::remove_file(written);
        assert!(
            !leaked,
            "a rooted task wrote to the host (sandboxed: {sandboxed})"
        );
        assert_ne!(out.exit_code, 0);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("Read-only"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[tokio::test]
async fn a_rooted_task_must_run_beneath_the_root() {
    let (exec, _root) = rooted(true);
    let mut spec = TaskSpec::new(vec!["/bin/true".into()], TIMEOUT);
    spec.cwd = Some("elsewhere".into());
    let err = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect_err("refused");
    assert!(err.to_string().contains("beneath"), "{err}");
}
