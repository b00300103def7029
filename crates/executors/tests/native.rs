//! NativeExecutor against real processes.

use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{NativeConfig, NativeExecutor};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// An executor over a fresh temporary work root (kept alive by the returned guard).
fn executor() -> (NativeExecutor, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let exec = NativeExecutor::new(NativeConfig {
        work_root: root.path().join("work"),
        path: None,
    });
    (exec, root)
}

fn sh(script: &str, timeout: Duration) -> TaskSpec {
    TaskSpec::new(vec!["sh".into(), "-c".into(), script.into()], timeout)
}

/// Entries left under the work root (there must be none after any run).
fn leftovers(root: &Path) -> Vec<PathBuf> {
    match std::fs::read_dir(root.join("work")) {
        Ok(entries) => entries.map(|e| e.expect("dir entry").path()).collect(),
        Err(_) => Vec::new(),
    }
}

/// True once `pid` no longer runs (gone, or a zombie waiting for its reaper).
fn is_dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => {
            // The state follows the parenthesised command name.
            let state = stat.rsplit_once(") ").map(|(_, rest)| rest.chars().next());
            matches!(state, Some(Some('Z' | 'X')))
        }
    }
}

async fn wait_for_pid_file(path: &Path) -> u32 {
    hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok())
    })
    .await
    .expect("task wrote its grandchild's pid")
}

#[tokio::test]
async fn native_executor_conforms() {
    let root = tempfile::tempdir().expect("temp dir");
    let work_root = root.path().to_path_buf();
    hybridgrid_testkit::executor::run_executor_suite(|| {
        let work_root = work_root.clone();
        async move {
            Arc::new(NativeExecutor::new(NativeConfig {
                work_root,
                path: None,
            })) as Arc<dyn Executor>
        }
    })
    .await;
    assert_eq!(
        std::fs::read_dir(root.path()).expect("root").count(),
        0,
        "work dirs left behind"
    );
}

#[tokio::test]
async fn exit_codes_and_signals() {
    let (exec, root) = executor();
    for (script, code) in [("exit 0", 0), ("exit 7", 7), ("kill -TERM $$", 128 + 15)] {
        let out = exec
            .execute(sh(script, LONG), CancellationToken::new())
            .await
            .expect(script);
        assert_eq!(out.exit_code, code, "{script}");
    }
    let missing = exec
        .execute(
            TaskSpec::new(vec!["hg-no-such-program".into()], LONG),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(&missing, Err(ExecError::Spawn { program, .. }) if program == "hg-no-such-program"),
        "{missing:?}"
    );
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn stdin_stdout_stderr_and_clean_env() {
    let (exec, root) = executor();
    let mut spec = sh(
        "cat; echo to-stderr >&2; echo \"HOME=${HOME-unset} GREETING=$GREETING\"",
        LONG,
    );
    spec.stdin = Bytes::from_static(b"from stdin\n");
    spec.env.insert("GREETING".into(), "hi".into());
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(&out.stdout[..], b"from stdin\nHOME=unset GREETING=hi\n");
    assert_eq!(&out.stderr[..], b"to-stderr\n");
    assert!(!out.truncated);
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn inputs_and_outputs() {
    let (exec, root) = executor();
    let mut spec = sh("mkdir out && ./tool.sh > out/x.o && pwd > where", LONG);
    spec.inputs = vec![
        InputFile {
            path: "tool.sh".into(),
            contents: Bytes::from_static(b"#!/bin/sh\ntr a-z A-Z < src/in.c\n"),
            executable: true,
        },
        InputFile {
            path: "src/in.c".into(),
            contents: Bytes::from_static(b"int main;"),
            executable: false,
        },
    ];
    spec.outputs = vec!["out/x.o".into(), "where".into(), "absent".into()];
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(out.exit_code, 0, "stderr: {:?}", out.stderr);
    assert_eq!(
        out.file("out/x.o").map(|f| &f.contents[..]),
        Some(&b"INT MAIN;"[..])
    );
    let cwd = String::from_utf8(out.file("where").expect("where").contents.to_vec()).expect("utf8");
    assert!(
        cwd.trim()
            .starts_with(&root.path().join("work").display().to_string()),
        "ran in {cwd}"
    );
    assert!(out.file("absent").is_none());
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn output_limit_is_enforced() {
    let (exec, root) = executor();
    let mut spec = sh("head -c 5000 /dev/zero > big", LONG);
    spec.outputs = vec!["big".into()];
    spec.limits.max_file_bytes = 4096;
    let res = exec.execute(spec, CancellationToken::new()).await;
    assert!(
        matches!(res, Err(ExecError::OutputTooLarge { limit: 4096 })),
        "{res:?}"
    );
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn deadline_kills_the_whole_group() {
    let (exec, root) = executor();
    let pid_file = root.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; sleep 30", pid_file.display());
    let timeout = Duration::from_millis(500);
    let exec = Arc::new(exec);
    let task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.execute(sh(&script, timeout), CancellationToken::new())
                .await
        })
    };
    let grandchild = wait_for_pid_file(&pid_file).await;
    let res = task.await.expect("join");
    assert!(
        matches!(res, Err(ExecError::DeadlineExceeded { after }) if after == timeout),
        "{res:?}"
    );
    assert_eq!(
        res.as_ref().map_err(ToString::to_string).err().as_deref(),
        Some("deadline exceeded after 500ms")
    );
    let dead = hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
        is_dead(grandchild).then_some(())
    })
    .await;
    assert!(
        dead.is_some(),
        "grandchild {grandchild} survived the deadline"
    );
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn cancel_kills_the_whole_group() {
    let (exec, root) = executor();
    let pid_file = root.path().join("grandchild.pid");
    let script = format!("sleep 30 & echo $! > {}; wait", pid_file.display());
    let exec = Arc::new(exec);
    let token = CancellationToken::new();
    let task = {
        let (exec, token) = (exec.clone(), token.clone());
        tokio::spawn(async move { exec.execute(sh(&script, LONG), token).await })
    };
    let grandchild = wait_for_pid_file(&pid_file).await;
    token.cancel();
    let res = task.await.expect("join");
    assert!(matches!(res, Err(ExecError::Cancelled)), "{res:?}");
    let dead = hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
        is_dead(grandchild).then_some(())
    })
    .await;
    assert!(dead.is_some(), "grandchild {grandchild} survived cancel");
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn leftover_background_process_is_killed_at_exit() {
    let (exec, root) = executor();
    let pid_file = root.path().join("bg.pid");
    // The background sleep keeps stdout open: without the group kill this would run to the deadline.
    let script = format!("sleep 30 & echo $! > {}; echo done", pid_file.display());
    let out = exec
        .execute(sh(&script, LONG), CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(&out.stdout[..], b"done\n");
    let bg = wait_for_pid_file(&pid_file).await;
    let dead = hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
        is_dead(bg).then_some(())
    })
    .await;
    assert!(dead.is_some(), "background process {bg} outlived the task");
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn huge_output_is_truncated_without_deadlock() {
    let (exec, root) = executor();
    // 50 MB on each stream; keep 1 MiB of each.
    let mut spec = sh(
        "head -c 50000000 /dev/zero; head -c 50000000 /dev/zero >&2; echo finished > marker",
        LONG,
    );
    spec.limits.max_stream_bytes = 1 << 20;
    spec.outputs = vec!["marker".into()];
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(out.exit_code, 0);
    assert!(out.truncated);
    assert_eq!(out.stdout.len(), 1 << 20);
    assert_eq!(out.stderr.len(), 1 << 20);
    assert_eq!(
        out.file("marker").map(|f| &f.contents[..]),
        Some(&b"finished\n"[..]),
        "the program ran to its end"
    );
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn path_escapes_are_refused() {
    let (exec, root) = executor();
    for bad in ["/etc/evil", "../evil", "a/../../evil", ""] {
        let mut spec = sh("true", LONG);
        spec.inputs.push(InputFile {
            path: bad.into(),
            contents: Bytes::from_static(b"x"),
            executable: false,
        });
        let res = exec.execute(spec, CancellationToken::new()).await;
        assert!(
            matches!(&res, Err(ExecError::InvalidSpec(msg)) if msg.contains(&format!("{bad:?}"))),
            "input {bad:?}: {res:?}"
        );
        let mut spec = sh("true", LONG);
        spec.outputs.push(bad.into());
        let res = exec.execute(spec, CancellationToken::new()).await;
        assert!(
            matches!(&res, Err(ExecError::InvalidSpec(_))),
            "output {bad:?}: {res:?}"
        );
    }
    assert!(!root.path().parent().expect("parent").join("evil").exists());

    // A task that links an output to a file outside its directory does not get it read back.
    let secret = root.path().join("secret");
    std::fs::write(&secret, "s3cret").expect("write secret");
    let mut spec = sh(
        &format!(
            "ln -s {} out.txt && mkdir d && ln -s {} d/link && ln -s {} dirlink",
            secret.display(),
            secret.display(),
            root.path().display()
        ),
        LONG,
    );
    spec.outputs = vec!["out.txt".into()];
    let res = exec.execute(spec.clone(), CancellationToken::new()).await;
    assert!(
        matches!(&res, Err(ExecError::InvalidSpec(msg)) if msg.contains("\"out.txt\"")),
        "{res:?}"
    );
    spec.outputs = vec!["dirlink/secret".into()];
    let res = exec.execute(spec, CancellationToken::new()).await;
    assert!(
        matches!(&res, Err(ExecError::InvalidSpec(msg)) if msg.contains("dirlink")),
        "{res:?}"
    );

    let mut spec = sh("true", LONG);
    spec.image = Some("alpine".into());
    let res = exec.execute(spec, CancellationToken::new()).await;
    assert!(matches!(res, Err(ExecError::InvalidSpec(_))), "{res:?}");
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn dropped_future_kills_and_cleans_up() {
    let (exec, root) = executor();
    let pid_file = root.path().join("child.pid");
    let script = format!("echo $$ > {}; sleep 30", pid_file.display());
    let exec = Arc::new(exec);
    let task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.execute(sh(&script, LONG), CancellationToken::new())
                .await
        })
    };
    let pid = wait_for_pid_file(&pid_file).await;
    task.abort();
    let _ = task.await;
    let dead = hybridgrid_testkit::eventually(Duration::from_secs(10), || async {
        is_dead(pid).then_some(())
    })
    .await;
    assert!(dead.is_some(), "process {pid} outlived its dropped task");
    assert!(leftovers(root.path()).is_empty());
}

#[tokio::test]
async fn concurrent_runs_are_isolated() {
    let (exec, root) = executor();
    let exec = Arc::new(exec);
    let mut tasks = Vec::new();
    for i in 0..8 {
        let exec = exec.clone();
        tasks.push(tokio::spawn(async move {
            let mut spec = sh("ls; cat name > out", LONG);
            spec.inputs.push(InputFile {
                path: "name".into(),
                contents: Bytes::from(format!("task {i}")),
                executable: false,
            });
            spec.outputs = vec!["out".into()];
            (i, exec.execute(spec, CancellationToken::new()).await)
        }));
    }
    for task in tasks {
        let (i, res) = task.await.expect("join");
        let out = res.expect("run");
        // Each task saw only its own input file.
        assert_eq!(&out.stdout[..], b"name\n", "task {i}");
        assert_eq!(
            out.file("out").map(|f| f.contents.clone()),
            Some(Bytes::from(format!("task {i}")))
        );
    }
    assert!(leftovers(root.path()).is_empty());
}
