//! Per-task cost of DockerExecutor (work dir, create, attach, start, wait, remove) on the local
//! engine, next to `docker run --rm` of the same image through the CLI.
//!
//! Run: `cargo bench -p hybridgrid-executors --features docker --bench docker`

// `criterion_group!` generates an undocumented public function.
#![allow(missing_docs)]

use criterion::{Criterion, criterion_group, criterion_main};
use hybridgrid_core::{CancellationToken, Executor, TaskSpec};
use hybridgrid_executors::{DockerConfig, DockerExecutor};
use std::time::Duration;

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let image = hybridgrid_testkit::docker::ensure_test_image("executor").expect("test image");
    let root = tempfile::tempdir().expect("temp dir");
    let exec = rt
        .block_on(DockerExecutor::connect(DockerConfig {
            image: Some(image.clone()),
            work_root: root.path().to_path_buf(),
            owner: hybridgrid_testkit::unique_prefix("bench"),
            ..DockerConfig::default()
        }))
        .expect("docker engine");
    let mut group = c.benchmark_group("docker");
    group.sample_size(20);
    group.measurement_time(Duration::from_secs(10));

    group.bench_function("cli_docker_run_rm_true", |b| {
        b.iter(|| {
            let status = std::process::Command::new("docker")
                .args(["run", "--rm", "--network", "none", &image, "true"])
                .status()
                .expect("docker run");
            assert!(status.success());
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
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
