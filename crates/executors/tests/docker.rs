//! DockerExecutor against the real engine (`bash ../shared/services.sh docker`), with images
//! built locally by `hybridgrid_testkit::docker`. A missing engine fails these tests.
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{
    ContainerPolicy, DOCKER_OWNER_LABEL, DockerConfig, DockerError, DockerExecutor,
};
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

fn socket() -> String {
    hybridgrid_testkit::service_url("HG_TEST_DOCKER_SOCKET", "unix:///var/run/docker.sock")
}

fn image() -> String {
    hybridgrid_testkit::docker::ensure_test_image("executor").expect("test image")
}

/// An executor with its own owner label and work root (kept alive by the returned guard).
async fn executor() -> (DockerExecutor, String, tempfile::TempDir) {
    let root = tempfile::tempdir().expect("temp dir");
    let owner = hybridgrid_testkit::unique_prefix("docker");
    let exec = DockerExecutor::connect(DockerConfig {
        socket: socket(),
        image: Some(image()),
        work_root: root.path().join("work"),
        owner: owner.clone(),
        ..DockerConfig::default()
    })
    .await
    .expect("docker engine (start it with ../shared/services.sh docker)");
    (exec, owner, root)
}

/// Ids of the containers carrying `owner`'s label, running or not.
fn containers(owner: &str) -> Vec<String> {
    let out = Command::new("docker")
        .args(["ps", "-aq", "--filter"])
        .arg(format!("label={DOCKER_OWNER_LABEL}={owner}"))
        .output()
        .expect("docker ps");
    assert!(out.status.success(), "docker ps: {out:?}");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

fn leftovers(root: &tempfile::TempDir) -> usize {
    std::fs::read_dir(root.path().join("work")).map_or(0, Iterator::count)
}

fn sh(script: &str, timeout: Duration) -> TaskSpec {
    TaskSpec::new(vec!["sh".into(), "-c".into(), script.into()], timeout)
}

async fn run(exec: &DockerExecutor, spec: TaskSpec) -> hybridgrid_core::TaskOutput {
    exec.execute(spec, CancellationToken::new())
        .await
        .expect("run")
}

fn docker_error(res: &Result<hybridgrid_core::TaskOutput, ExecError>) -> &DockerError {
    match res {
        Err(ExecError::Backend {
            backend: "docker",
            source,
        }) => source
            .downcast_ref::<DockerError>()
            .expect("a DockerError source"),
        other => panic!("expected a docker backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn docker_executor_conforms() {
    let (exec, owner, root) = executor().await;
    hybridgrid_testkit::executor::run_executor_suite(|| {
        let exec = exec.clone();
        async move { Arc::new(exec) as Arc<dyn Executor> }
    })
    .await;
    assert_eq!(containers(&owner), Vec::<String>::new(), "containers left");
    assert_eq!(leftovers(&root), 0, "work dirs left");
}

#[tokio::test]
async fn stdin_env_inputs_outputs_and_cwd() {
    let (exec, owner, root) = executor().await;
    let mut spec = sh(
        "cat > got-stdin; echo \"GREETING=$GREETING PATH=$PATH\"; echo to-stderr >&2; pwd; \
         ../../tool.sh < ../../src/in.c > ../../out/x.o",
        LONG,
    );
    spec.stdin = Bytes::from_static(b"from stdin\x00\xff");
    spec.env.insert("GREETING".into(), "hi there".into());
    spec.env.insert("PATH".into(), "/bin".into());
    spec.cwd = Some("sub/dir".into());
    spec.inputs = vec![
        InputFile {
            path: "tool.sh".into(),
            contents: Bytes::from_static(b"#!/bin/sh\ntr a-z A-Z\n"),
            executable: true,
        },
        InputFile {
            path: "src/in.c".into(),
            contents: Bytes::from_static(b"int main;"),
            executable: false,
        },
    ];
    spec.outputs = vec![
        "out/x.o".into(),
        "sub/dir/got-stdin".into(),
        "absent".into(),
    ];
    // `out/` must exist for the redirect: create it as an input's parent.
    spec.inputs.push(InputFile {
        path: "out/.keep".into(),
        contents: Bytes::new(),
        executable: false,
    });
    let id = spec.id.clone();
    let out = run(&exec, spec).await;
    assert_eq!(out.exit_code, 0, "stderr: {:?}", out.stderr);
    let expected_dir = exec.work_dir_for(&id).expect("safe id").join("sub/dir");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("GREETING=hi there PATH=/bin\n{}\n", expected_dir.display())
    );
    assert_eq!(&out.stderr[..], b"to-stderr\n");
    assert_eq!(
        out.file("out/x.o").map(|f| &f.contents[..]),
        Some(&b"INT MAIN;"[..])
    );
    assert_eq!(
        out.file("sub/dir/got-stdin").map(|f| &f.contents[..]),
        Some(&b"from stdin\x00\xff"[..])
    );
    assert!(out.file("absent").is_none());
    assert!(containers(&owner).is_empty());
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn exit_codes_signals_and_truncation() {
    let (exec, owner, _root) = executor().await;
    for (script, code) in [
        ("exit 0", 0),
        ("exit 7", 7),
        ("sh -c 'kill -KILL $$'; exit $?", 137),
        // A crash: the program dies of SIGSEGV and the exit status says so (128 + 11).
        ("sh -c 'kill -SEGV $$'; exit $?", 139),
    ] {
        let out = run(&exec, sh(script, LONG)).await;
        assert_eq!(out.exit_code, code, "{script}");
    }
    let mut spec = sh(
        "head -c 5000000 /dev/zero; head -c 5000000 /dev/zero >&2; echo done >&2",
        LONG,
    );
    spec.limits.max_stream_bytes = 1 << 16;
    let out = run(&exec, spec).await;
    assert_eq!(out.exit_code, 0);
    assert!(out.truncated);
    assert_eq!((out.stdout.len(), out.stderr.len()), (1 << 16, 1 << 16));
    let missing = exec
        .execute(
            TaskSpec::new(vec!["/no/such/program".into()], LONG),
            CancellationToken::new(),
        )
        .await;
    // The engine refuses to start it: a spawn error naming the program, as natively.
    assert!(
        matches!(&missing, Err(ExecError::Spawn { program, .. }) if program == "/no/such/program"),
        "{missing:?}"
    );
    assert!(containers(&owner).is_empty());
}

#[tokio::test]
async fn network_none_has_only_loopback() {
    let (exec, owner, _root) = executor().await;
    let out = run(&exec, sh("ls /sys/class/net; ip -o link", LONG)).await;
    let text = String::from_utf8_lossy(&out.stdout);
    let ifaces: Vec<&str> = text.lines().take_while(|l| !l.contains(':')).collect();
    assert_eq!(ifaces, vec!["lo"], "interfaces: {text}");
    assert!(!text.contains("eth0"), "{text}");
    // A policy that grants a network (an internal one of this test's own: this engine runs
    // without the default bridge) gets a real interface.
    let network = owner.clone();
    let created = Command::new("docker")
        .args(["network", "create", "--internal", &network])
        .output()
        .expect("docker network create");
    assert!(created.status.success(), "{created:?}");
    let granted = exec
        .with_policy(ContainerPolicy {
            network: network.clone(),
            ..ContainerPolicy::default()
        })
        .expect("policy");
    let out = granted
        .execute(sh("ls /sys/class/net", LONG), CancellationToken::new())
        .await;
    let _ = Command::new("docker")
        .args(["network", "rm", &network])
        .output();
    let out = out.expect("run on the granted network");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines().any(|l| l == "eth0"),
        "granted interfaces: {text}"
    );
    assert!(containers(&owner).is_empty());
}

#[tokio::test]
async fn limits_user_and_read_only_rootfs_apply() {
    let (exec, owner, _root) = executor().await;
    let limited = exec
        .with_policy(ContainerPolicy {
            cpus: Some(0.5),
            memory_mb: Some(64),
            pids_limit: Some(32),
            user: Some("65534:65534".into()),
            read_only_rootfs: true,
            ..ContainerPolicy::default()
        })
        .expect("policy");
    let mut spec = sh(
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us \
         /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max; id -u; \
         touch /rootfs-file 2>/dev/null && echo rootfs-writable; echo ok > written; \
         touch /tmp/t && echo tmp-writable",
        LONG,
    );
    spec.outputs = vec!["written".into()];
    let out = run(&limited, spec).await;
    assert_eq!(out.exit_code, 0, "stderr {:?}", out.stderr);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("50000\n100000\n{}\n32\n65534\ntmp-writable\n", 64 << 20)
    );
    assert_eq!(
        out.file("written").map(|f| &f.contents[..]),
        Some(&b"ok\n"[..])
    );
    assert!(containers(&owner).is_empty());
    assert!(
        exec.with_policy(ContainerPolicy {
            memory_mb: Some(1),
            ..ContainerPolicy::default()
        })
        .is_err()
    );
}

#[tokio::test]
async fn memory_limit_is_enforced_as_out_of_memory() {
    let (exec, owner, _root) = executor().await;
    let small = exec
        .with_policy(ContainerPolicy {
            memory_mb: Some(16),
            ..ContainerPolicy::default()
        })
        .expect("policy");
    // Holds ~100 MB in a shell variable.
    let spec = sh(
        "x=$(head -c 100000000 /dev/zero | tr '\\0' a); echo ${#x}",
        LONG,
    );
    let res = small.execute(spec, CancellationToken::new()).await;
    match docker_error(&res) {
        DockerError::OutOfMemory { limit_mb: 16, .. } => {}
        other => panic!("expected OutOfMemory, got {other}"),
    }
    let msg = res.expect_err("oom").to_string();
    assert!(
        msg.contains("out of memory") && msg.contains("16 MiB"),
        "{msg}"
    );
    assert!(containers(&owner).is_empty());
}

#[tokio::test]
async fn deadline_and_cancel_kill_and_remove_the_container() {
    let (exec, owner, root) = executor().await;
    let timeout = Duration::from_millis(700);
    let res = exec
        .execute(sh("sleep 60", timeout), CancellationToken::new())
        .await;
    assert!(
        matches!(res, Err(ExecError::DeadlineExceeded { after }) if after == timeout),
        "{res:?}"
    );
    assert!(
        containers(&owner).is_empty(),
        "container left after deadline"
    );

    let exec = Arc::new(exec);
    let token = CancellationToken::new();
    let task = {
        let (exec, token) = (exec.clone(), token.clone());
        tokio::spawn(async move { exec.execute(sh("sleep 60", LONG), token).await })
    };
    let seen = hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
        (!containers(&owner).is_empty()).then_some(())
    })
    .await;
    assert!(seen.is_some(), "container never appeared");
    token.cancel();
    let res = tokio::time::timeout(Duration::from_secs(30), task)
        .await
        .expect("cancel returns")
        .expect("join");
    assert!(matches!(res, Err(ExecError::Cancelled)), "{res:?}");
    assert!(containers(&owner).is_empty(), "container left after cancel");
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn dropped_future_removes_the_container_in_the_background() {
    let (exec, owner, root) = executor().await;
    let exec = Arc::new(exec);
    let task = {
        let exec = exec.clone();
        tokio::spawn(async move {
            exec.execute(sh("sleep 60", LONG), CancellationToken::new())
                .await
        })
    };
    let seen = hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
        (!containers(&owner).is_empty()).then_some(())
    })
    .await;
    assert!(seen.is_some(), "container never appeared");
    task.abort();
    let _ = task.await;
    let gone = hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
        containers(&owner).is_empty().then_some(())
    })
    .await;
    assert!(gone.is_some(), "container outlived its dropped task");
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn missing_image_is_named() {
    let (exec, owner, root) = executor().await;
    let mut spec = sh("true", LONG);
    spec.image = Some("hybridgrid-no-such-image:0".into());
    let res = exec.execute(spec, CancellationToken::new()).await;
    assert!(
        matches!(docker_error(&res), DockerError::ImageMissing { image } if image == "hybridgrid-no-such-image:0")
    );
    let msg = res.expect_err("missing image").to_string();
    assert!(
        msg.contains("hybridgrid-no-such-image:0")
            && msg.contains("never pulled")
            && msg.contains("docker build -t hybridgrid-no-such-image:0"),
        "{msg}"
    );
    assert!(containers(&owner).is_empty());
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn unreachable_engine_names_the_socket_and_the_fix() {
    for socket in ["unix:///tmp/hg-no-docker.sock", "tcp://127.0.0.1:1"] {
        let res = DockerExecutor::connect(DockerConfig {
            socket: socket.into(),
            ..DockerConfig::default()
        })
        .await;
        let msg = res.expect_err(socket).to_string();
        assert!(
            msg.contains("Docker not available")
                && msg.contains(socket)
                && msg.contains("usermod -aG docker"),
            "{msg}"
        );
    }
    let bad = DockerExecutor::connect(DockerConfig {
        socket: "ftp://x".into(),
        ..DockerConfig::default()
    })
    .await;
    assert!(bad.expect_err("bad scheme").to_string().contains("ftp://x"));
}

#[tokio::test]
async fn leftovers_of_a_killed_worker_are_reaped() {
    let (exec, owner, _root) = executor().await;
    let out = Command::new("docker")
        .args(["create", "--network", "none", "--label"])
        .arg(format!("{DOCKER_OWNER_LABEL}={owner}"))
        .args([&image(), "sleep", "60"])
        .output()
        .expect("docker create");
    assert!(out.status.success(), "{out:?}");
    assert_eq!(containers(&owner).len(), 1);
    assert_eq!(exec.reap_leftovers().await.expect("reap"), 1);
    assert!(containers(&owner).is_empty());
}

#[tokio::test]
async fn container_runs_a_shell_agent_from_an_added_file() {
    let (exec, owner, _root) = executor().await;
    let image = hybridgrid_testkit::docker::ensure_image_with(
        "agent-echo",
        &[(
            "/agents/echo.sh",
            b"#!/bin/sh\necho \"agent log\" >&2\nprintf '{\"input\": %s, \"arg\": %s}\\n' \"$AGENT_INPUT\" \"$1\"\n",
            0o755,
        )],
    )
    .expect("agent image");
    let input = r#"{"x":1}"#;
    let mut spec = TaskSpec::new(vec!["/agents/echo.sh".into(), input.into()], LONG);
    spec.image = Some(image);
    spec.env.insert("AGENT_INPUT".into(), input.into());
    let out = run(&exec, spec).await;
    assert_eq!(out.exit_code, 0, "{:?}", out.stderr);
    assert_eq!(
        &out.stdout[..],
        br#"{"input": {"x":1}, "arg": {"x":1}}
"#
    );
    assert_eq!(&out.stderr[..], b"agent log\n");
    assert!(containers(&owner).is_empty());
}

#[tokio::test]
async fn concurrent_containers_are_isolated() {
    let (exec, owner, root) = executor().await;
    let exec = Arc::new(exec);
    let mut tasks = Vec::new();
    for i in 0..4 {
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
        assert_eq!(&out.stdout[..], b"name\n", "task {i} saw only its own file");
        assert_eq!(
            out.file("out").map(|f| f.contents.clone()),
            Some(Bytes::from(format!("task {i}")))
        );
    }
    assert!(containers(&owner).is_empty());
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn host_programs_run_inside_an_image_with_their_libraries() {
    let (exec, owner, _root) = executor().await;
    let image = hybridgrid_testkit::docker::ensure_image_with_host(
        "host-md5sum",
        &["/usr/bin/md5sum"],
        &[],
    )
    .expect("image with a host program");
    let mut spec = sh(
        "/usr/bin/md5sum --version | head -n 1; printf abc | /usr/bin/md5sum",
        LONG,
    );
    spec.image = Some(image);
    let out = run(&exec, spec).await;
    assert_eq!(
        out.exit_code,
        0,
        "{:?}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("GNU coreutils"),
        "the host's md5sum ran: {text}"
    );
    assert!(text.contains("900150983cd24fb0d6963f7d28e17f72"), "{text}");
    assert!(containers(&owner).is_empty());
}
