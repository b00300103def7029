//! Conformance suite for the [`Executor`] seam.
//!
//! ```no_run
//! # async fn demo() {
//! // In crates/executors/tests/native.rs:
//! // hybridgrid_testkit::executor::run_executor_suite(|| async {
//! //     Arc::new(NativeExecutor::new(config)) as Arc<dyn Executor>
//! // }).await;
//! # }
//! ```
//!
//! The checks use `cat`, `sh` and `sleep`, so the executor must offer a POSIX userland.

use crate::check;
use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, InputFile, TaskSpec};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

/// How long any check may wait for a task that should end quickly (a hang fails the check).
const HANG: Duration = Duration::from_secs(30);

/// Runs every executor check, each on a fresh executor from `make`, and fails once listing every
/// failed check.
pub async fn run_executor_suite<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Executor>>,
{
    let mut failed = Vec::new();
    check(
        &mut failed,
        "stdin_round_trips_to_stdout",
        echo(make().await),
    )
    .await;
    check(
        &mut failed,
        "nonzero_exit_is_ok_with_code",
        nonzero(make().await),
    )
    .await;
    check(
        &mut failed,
        "deadline_is_deadline_exceeded",
        deadline(make().await),
    )
    .await;
    check(&mut failed, "cancel_is_cancelled", cancel(make().await)).await;
    check(&mut failed, "inputs_in_outputs_out", files(make().await)).await;
    check(&mut failed, "env_reaches_the_program", env(make().await)).await;
    check(
        &mut failed,
        "streams_are_cut_at_the_limit",
        stream_limit(make().await),
    )
    .await;
    assert!(
        failed.is_empty(),
        "Executor conformance failures:\n{}",
        failed.join("\n")
    );
}

fn sh(script: &str, timeout: Duration) -> TaskSpec {
    TaskSpec::new(vec!["sh".into(), "-c".into(), script.into()], timeout)
}

async fn run(
    executor: &Arc<dyn Executor>,
    spec: TaskSpec,
    cancel: CancellationToken,
) -> Result<Result<hybridgrid_core::TaskOutput, ExecError>, String> {
    tokio::time::timeout(HANG, executor.execute(spec, cancel))
        .await
        .map_err(|_| format!("execute did not return within {HANG:?}"))
}

async fn echo(executor: Arc<dyn Executor>) -> Result<(), String> {
    let payload = Bytes::from_static(b"line one\nline two\n\x00binary\xff");
    let mut spec = TaskSpec::new(vec!["cat".into()], HANG);
    spec.stdin = payload.clone();
    let out = run(&executor, spec, CancellationToken::new())
        .await?
        .map_err(|e| format!("expected Ok, got error {e}"))?;
    if out.exit_code != 0 || out.stdout != payload || out.truncated {
        return Err(format!(
            "expected exit 0 with stdout {payload:?}, got exit {} stdout {:?} truncated {}",
            out.exit_code, out.stdout, out.truncated
        ));
    }
    Ok(())
}

async fn nonzero(executor: Arc<dyn Executor>) -> Result<(), String> {
    let spec = sh("echo oops >&2; exit 3", HANG);
    let out = run(&executor, spec, CancellationToken::new())
        .await?
        .map_err(|e| format!("expected Ok with exit code 3, got error {e}"))?;
    if out.exit_code != 3 || out.success() || &out.stderr[..] != b"oops\n" {
        return Err(format!(
            "expected exit 3 and stderr \"oops\\n\", got exit {} stderr {:?}",
            out.exit_code, out.stderr
        ));
    }
    Ok(())
}

async fn deadline(executor: Arc<dyn Executor>) -> Result<(), String> {
    let timeout = Duration::from_millis(300);
    match run(&executor, sh("sleep 60", timeout), CancellationToken::new()).await? {
        Err(ExecError::DeadlineExceeded { after }) if after == timeout => Ok(()),
        other => Err(format!(
            "expected DeadlineExceeded after {timeout:?}, got {other:?}"
        )),
    }
}

async fn cancel(executor: Arc<dyn Executor>) -> Result<(), String> {
    let token = CancellationToken::new();
    let task = {
        let executor = executor.clone();
        let token = token.clone();
        tokio::spawn(async move { run(&executor, sh("sleep 60", HANG * 2), token).await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    token.cancel();
    match task.await.map_err(|e| format!("execute panicked: {e}"))?? {
        Err(ExecError::Cancelled) => Ok(()),
        other => Err(format!("expected Cancelled, got {other:?}")),
    }
}

async fn files(executor: Arc<dyn Executor>) -> Result<(), String> {
    let mut spec = sh("cat in/a.txt > out.txt; printf x >> out.txt", HANG);
    spec.inputs.push(InputFile {
        path: "in/a.txt".into(),
        contents: Bytes::from_static(b"input "),
        executable: false,
    });
    spec.outputs = vec!["out.txt".into(), "never-written.txt".into()];
    let out = run(&executor, spec, CancellationToken::new())
        .await?
        .map_err(|e| format!("expected Ok, got error {e}"))?;
    let got = out.file("out.txt").map(|f| f.contents.clone());
    if out.exit_code != 0 || got.as_deref() != Some(&b"input x"[..]) {
        return Err(format!(
            "expected exit 0 and out.txt = \"input x\", got exit {} out.txt {got:?} (stderr {:?})",
            out.exit_code, out.stderr
        ));
    }
    if out.file("never-written.txt").is_some() || out.files.len() != 1 {
        return Err(format!(
            "expected only out.txt among the files, got {:?}",
            out.files.iter().map(|f| &f.path).collect::<Vec<_>>()
        ));
    }
    Ok(())
}

async fn env(executor: Arc<dyn Executor>) -> Result<(), String> {
    let mut spec = sh("printf '%s|%s' \"$HG_SUITE_A\" \"$HG_SUITE_B\"", HANG);
    spec.env.insert("HG_SUITE_A".into(), "one two".into());
    spec.env
        .insert("HG_SUITE_B".into(), "{\"json\": [1]}".into());
    let out = run(&executor, spec, CancellationToken::new())
        .await?
        .map_err(|e| format!("expected Ok, got error {e}"))?;
    let want = &b"one two|{\"json\": [1]}"[..];
    if out.exit_code != 0 || &out.stdout[..] != want {
        return Err(format!(
            "expected exit 0 and stdout {:?}, got exit {} stdout {:?}",
            String::from_utf8_lossy(want),
            out.exit_code,
            out.stdout
        ));
    }
    Ok(())
}

async fn stream_limit(executor: Arc<dyn Executor>) -> Result<(), String> {
    let mut spec = TaskSpec::new(vec!["cat".into()], HANG);
    spec.stdin = Bytes::from(vec![b'x'; 10_000]);
    spec.limits.max_stream_bytes = 1000;
    let out = run(&executor, spec, CancellationToken::new())
        .await?
        .map_err(|e| format!("expected Ok, got error {e}"))?;
    if out.exit_code != 0 || out.stdout.len() != 1000 || !out.truncated {
        return Err(format!(
            "expected exit 0, 1000 bytes of stdout and truncated, got exit {} {} bytes truncated {}",
            out.exit_code,
            out.stdout.len(),
            out.truncated
        ));
    }
    Ok(())
}
