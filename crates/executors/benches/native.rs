//! Per-task cost of NativeExecutor (work dir, process group, capture, cleanup) next to a bare
//! `tokio::process::Command` spawn of the same program.
//!
//! Run: `cargo bench -p hybridgrid-executors --bench native`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use hybridgrid_core::{CancellationToken, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{NativeConfig, NativeExecutor};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let root = tempfile::tempdir().expect("temp dir");
    let exec = NativeExecutor::new(NativeConfig {
        work_root: root.path().to_path_buf(),
        path: None,
    });
    let mut group = c.benchmark_group("native");

    group.bench_function("bare_tokio_spawn_true", |b| {
        b.to_async(&rt).iter(|| async {
            let status = tokio::process::Command::new("true")
                .status()
                .await
                .expect("true");
            assert!(status.success());
        });
    });

    // The same spawn options as the executor (pipes, cwd, clean env, own group), no work dir.
    let cwd = root.path().to_path_buf();
    group.bench_function("bare_tokio_spawn_true_like_executor", |b| {
        b.to_async(&rt).iter(|| async {
            let out = tokio::process::Command::new("true")
                .current_dir(&cwd)
                .env_clear()
                .env("PATH", std::env::var_os("PATH").unwrap_or_default())
                .process_group(0)
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .output()
                .await
                .expect("true");
            assert!(out.status.success());
        });
    });

    group.bench_function("execute_true", |b| {
        b.to_async(&rt).iter(|| async {
            let spec = TaskSpec::new(vec!["true".into()], Duration::from_secs(30));
            let out = exec
                .execute(spec, CancellationToken::new())
                .await
                .expect("run");
            assert_eq!(out.exit_code, 0);
        });
    });

    let input = Bytes::from(vec![b'x'; 64 * 1024]);
    group.bench_function("execute_cp_64k_input_to_output", |b| {
        b.to_async(&rt).iter(|| async {
            let mut spec = TaskSpec::new(
                vec!["cp".into(), "in.c".into(), "out.o".into()],
                Duration::from_secs(30),
            );
            spec.inputs.push(InputFile {
                path: "in.c".into(),
                contents: input.clone(),
                executable: false,
            });
            spec.outputs.push("out.o".into());
            let out = exec
                .execute(spec, CancellationToken::new())
                .await
                .expect("run");
            assert_eq!(out.files[0].contents.len(), input.len());
        });
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
