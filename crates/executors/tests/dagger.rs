//! DaggerExecutor against `hybridgrid_testkit::fake_dagger`, a local server that speaks the
//! engine's GraphQL session API and checks the queries (no real engine can run here).
#![allow(clippy::unwrap_used)]

use bytes::Bytes;
use hybridgrid_core::{CancellationToken, ExecError, Executor, InputFile, TaskSpec};
use hybridgrid_executors::{DaggerConfig, DaggerError, DaggerExecutor};
use hybridgrid_testkit::fake_dagger::{FakeDagger, Reply};
use std::collections::BTreeMap;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(30);

fn executor(fake: &FakeDagger, root: &tempfile::TempDir) -> DaggerExecutor {
    DaggerExecutor::new(DaggerConfig {
        port: fake.port(),
        token: fake.token().to_owned(),
        image: Some("alpine:3.20".into()),
        work_root: root.path().join("work"),
        ..DaggerConfig::default()
    })
    .expect("executor")
}

fn leftovers(root: &tempfile::TempDir) -> usize {
    std::fs::read_dir(root.path().join("work")).map_or(0, Iterator::count)
}

fn dagger_error(res: &Result<hybridgrid_core::TaskOutput, ExecError>) -> &DaggerError {
    match res {
        Err(ExecError::Backend {
            backend: "dagger",
            source,
        }) => source.downcast_ref::<DaggerError>().expect("a DaggerError"),
        other => panic!("expected a dagger backend error, got {other:?}"),
    }
}

#[tokio::test]
async fn runs_a_pipeline_with_inputs_env_stdin_and_outputs() {
    let fake = FakeDagger::start(|call| {
        // The fake sees the mounted input directory on the host, as the engine would.
        let (_, host) = &call.mounts[0];
        let input = std::fs::read_to_string(host.join("src/in.txt")).unwrap_or_default();
        Reply::Exit {
            exit_code: 0,
            stdout: format!(
                "{} {}",
                input.to_uppercase(),
                call.stdin.clone().unwrap_or_default()
            ),
            stderr: "log line\n".into(),
            files: vec![("out/result.txt".into(), b"result \xe2\x9c\x93".to_vec())],
        }
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);
    let mut spec = TaskSpec::new(
        vec!["sh".into(), "-c".into(), "echo \"quoted\" \\ back".into()],
        LONG,
    );
    spec.env = BTreeMap::from([
        ("AGENT_INPUT".to_owned(), r#"{"k": "v\n"}"#.to_owned()),
        ("B".to_owned(), "2".to_owned()),
    ]);
    spec.stdin = Bytes::from_static("stdin ✓".as_bytes());
    spec.cwd = Some("sub".into());
    spec.inputs.push(InputFile {
        path: "src/in.txt".into(),
        contents: Bytes::from_static(b"hello"),
        executable: false,
    });
    spec.outputs = vec![
        "out/result.txt".into(),
        "src/in.txt".into(),
        "absent".into(),
    ];
    let id = spec.id.clone();
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("run");
    assert_eq!(out.exit_code, 0);
    assert_eq!(&out.stdout[..], "HELLO stdin ✓".as_bytes());
    assert_eq!(&out.stderr[..], b"log line\n");
    assert_eq!(
        out.file("out/result.txt").map(|f| &f.contents[..]),
        Some("result ✓".as_bytes())
    );
    assert_eq!(
        out.file("src/in.txt").map(|f| &f.contents[..]),
        Some(&b"hello"[..])
    );
    assert!(out.file("absent").is_none());

    let calls = fake.calls();
    assert_eq!(calls.len(), 1);
    let call = &calls[0];
    let mount = exec.work_dir_for(&id).expect("safe id");
    assert_eq!(call.image, "alpine:3.20");
    assert_eq!(call.args, ["sh", "-c", "echo \"quoted\" \\ back"]);
    assert_eq!(
        call.env,
        [
            ("AGENT_INPUT".to_owned(), r#"{"k": "v\n"}"#.to_owned()),
            ("B".to_owned(), "2".to_owned())
        ]
    );
    assert_eq!(call.stdin.as_deref(), Some("stdin ✓"));
    assert_eq!(
        call.workdir.as_deref(),
        Some(mount.join("sub").to_str().unwrap())
    );
    assert_eq!(call.mounts.len(), 1);
    assert_eq!(call.mounts[0].0, mount.to_str().unwrap());
    assert!(call.expect_any, "withExec must ask for expect: ANY");
    let queries = fake.queries();
    assert_eq!(queries.len(), 2, "host directory, then the pipeline");
    assert!(queries[0].contains("host") && queries[0].contains("directory"));
    assert_eq!(leftovers(&root), 0, "host directories left");
}

#[tokio::test]
async fn non_zero_exit_is_a_result() {
    let fake = FakeDagger::start(|_| Reply::exit(3, "", "oops\n")).await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);
    let out = exec
        .execute(
            TaskSpec::new(vec!["sh".into(), "-c".into(), "exit 3".into()], LONG),
            CancellationToken::new(),
        )
        .await
        .expect("a non-zero exit is Ok");
    assert_eq!(out.exit_code, 3);
    assert_eq!(&out.stderr[..], b"oops\n");
    assert!(!out.truncated);
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn graphql_errors_are_reported_with_their_path() {
    let fake = FakeDagger::start(|call| {
        Reply::Error(format!(
            "failed to resolve source metadata for docker.io/library/{}: not found",
            call.image
        ))
    })
    .await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);
    let mut spec = TaskSpec::new(vec!["true".into()], LONG);
    spec.image = Some("nope:1".into());
    let res = exec.execute(spec, CancellationToken::new()).await;
    match dagger_error(&res) {
        DaggerError::Query { message, path } => {
            assert!(message.contains("nope:1"), "{message}");
            assert!(
                path.starts_with("container.from.") && path.ends_with(".withExec"),
                "{path}"
            );
        }
        other => panic!("expected a Query error, got {other}"),
    }
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn auth_failure_is_named() {
    let fake = FakeDagger::start(|_| Reply::exit(0, "", "")).await;
    let root = tempfile::tempdir().unwrap();
    let exec = DaggerExecutor::new(DaggerConfig {
        port: fake.port(),
        token: "wrong-token".into(),
        image: Some("alpine".into()),
        work_root: root.path().join("work"),
        ..DaggerConfig::default()
    })
    .unwrap();
    let res = exec
        .execute(
            TaskSpec::new(vec!["true".into()], LONG),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(
        dagger_error(&res),
        DaggerError::Unauthorized { .. }
    ));
    let msg = res.expect_err("401").to_string();
    assert!(
        msg.contains("401") && msg.contains("DAGGER_SESSION_TOKEN"),
        "{msg}"
    );
    assert!(!msg.contains("wrong-token"), "the token leaked: {msg}");
    assert!(
        !format!("{exec:?}").contains("wrong-token"),
        "Debug leaks the token"
    );
    assert!(fake.calls().is_empty() && fake.queries().is_empty());
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn deadline_and_cancel_drop_the_query() {
    let fake = FakeDagger::start(|_| Reply::Hang).await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);
    let timeout = Duration::from_millis(300);
    let res = exec
        .execute(
            TaskSpec::new(vec!["sleep".into(), "60".into()], timeout),
            CancellationToken::new(),
        )
        .await;
    assert!(
        matches!(res, Err(ExecError::DeadlineExceeded { after }) if after == timeout),
        "{res:?}"
    );
    let token = CancellationToken::new();
    let task = {
        let (exec, token) = (exec.clone(), token.clone());
        tokio::spawn(async move {
            exec.execute(
                TaskSpec::new(vec!["sleep".into(), "60".into()], LONG),
                token,
            )
            .await
        })
    };
    let seen =
        hybridgrid_testkit::eventually(LONG, || async { (fake.calls().len() == 2).then_some(()) })
            .await;
    assert!(seen.is_some(), "the second exec never reached the engine");
    token.cancel();
    let res = tokio::time::timeout(LONG, task)
        .await
        .expect("returns")
        .expect("join");
    assert!(matches!(res, Err(ExecError::Cancelled)), "{res:?}");
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn engine_errors_unreachable_engine_and_bad_specs() {
    let fake = FakeDagger::start(|_| Reply::exit(0, "", "")).await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);

    // Unreachable engine: a port nobody listens on.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port();
    drop(closed);
    let down = DaggerExecutor::new(DaggerConfig {
        port,
        token: "t".into(),
        image: Some("alpine".into()),
        work_root: root.path().join("work"),
        ..DaggerConfig::default()
    })
    .unwrap();
    let res = down
        .execute(
            TaskSpec::new(vec!["true".into()], LONG),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(
        dagger_error(&res),
        DaggerError::Unavailable { .. }
    ));
    let msg = res.expect_err("down").to_string();
    assert!(
        msg.contains(&format!("127.0.0.1:{port}")) && msg.contains("dagger run"),
        "{msg}"
    );

    // Non-UTF-8 stdin cannot travel as a GraphQL string.
    let mut spec = TaskSpec::new(vec!["cat".into()], LONG);
    spec.stdin = Bytes::from_static(b"\xff\xfe");
    let res = exec.execute(spec, CancellationToken::new()).await;
    assert!(
        matches!(res, Err(ExecError::InvalidSpec(ref m)) if m.contains("UTF-8")),
        "{res:?}"
    );

    // No image anywhere.
    let no_image = DaggerExecutor::new(DaggerConfig {
        port: fake.port(),
        token: fake.token().to_owned(),
        work_root: root.path().join("work"),
        ..DaggerConfig::default()
    })
    .unwrap();
    let res = no_image
        .execute(
            TaskSpec::new(vec!["true".into()], LONG),
            CancellationToken::new(),
        )
        .await;
    assert!(matches!(res, Err(ExecError::InvalidSpec(_))), "{res:?}");

    // Settings from the session's environment.
    let env = BTreeMap::from([
        ("DAGGER_SESSION_PORT".to_owned(), "not-a-port".to_owned()),
        ("DAGGER_SESSION_TOKEN".to_owned(), "secret".to_owned()),
    ]);
    let err = DaggerConfig::from_env(&env)
        .expect_err("bad port")
        .to_string();
    assert!(
        err.contains("DAGGER_SESSION_PORT") && !err.contains("secret"),
        "{err}"
    );
    let env = BTreeMap::from([
        ("DAGGER_SESSION_PORT".to_owned(), fake.port().to_string()),
        ("DAGGER_SESSION_TOKEN".to_owned(), fake.token().to_owned()),
    ]);
    let config = DaggerConfig::from_env(&env).expect("from env");
    assert_eq!(
        (config.port, config.token.as_str()),
        (fake.port(), fake.token())
    );
    assert!(!format!("{config:?}").contains(fake.token()));
    assert_eq!(leftovers(&root), 0);
}

#[tokio::test]
async fn stream_limits_truncate() {
    let fake = FakeDagger::start(|_| Reply::exit(0, "x".repeat(1000), "y".repeat(10))).await;
    let root = tempfile::tempdir().unwrap();
    let exec = executor(&fake, &root);
    let mut spec = TaskSpec::new(vec!["true".into()], LONG);
    spec.limits.max_stream_bytes = 100;
    let out = exec
        .execute(spec, CancellationToken::new())
        .await
        .expect("run");
    assert!(out.truncated);
    assert_eq!((out.stdout.len(), out.stderr.len()), (100, 10));
}

/// The fake answers malformed or unsupported queries as the engine does, so a client bug shows.
#[tokio::test]
async fn fake_engine_refuses_what_the_engine_refuses() {
    use base64::Engine as _;
    let fake = FakeDagger::start(|_| Reply::exit(1, "", "boom")).await;
    let url = format!("http://127.0.0.1:{}/query", fake.port());
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:", fake.token()))
    );
    let _ = rustls::crypto::ring::default_provider().install_default();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let post = |query: &str, auth: Option<&str>| {
        let mut req = http.post(&url).json(&serde_json::json!({ "query": query }));
        if let Some(a) = auth {
            req = req.header("Authorization", a.to_owned());
        }
        req.send()
    };
    let no_auth = post(
        "{ container { from(address: \"a\") { withExec(args: [\"true\"]) { exitCode } } } }",
        None,
    )
    .await
    .unwrap();
    assert_eq!(no_auth.status(), 401);

    let answer = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap())
    };
    let (status, body) = answer(post("{ container { from(", Some(&auth)).await.unwrap()).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("Syntax Error")
    );

    let (_, body) = answer(
        post(
            "{ container { from(address: \"a\") { withFoo(x: 1) { withExec(args: [\"true\"]) { exitCode } } } } }",
            Some(&auth),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        body["errors"][0]["message"],
        "Cannot query field \"withFoo\" on type \"Container\"."
    );
    assert_eq!(
        body["errors"][0]["path"],
        serde_json::json!(["container", "from", "withFoo"])
    );

    // Without `expect: ANY` a failing exec is an error, as on the engine.
    let (_, body) = answer(
        post(
            "{ container { from(address: \"a\") { withExec(args: [\"false\"]) { exitCode } } } }",
            Some(&auth),
        )
        .await
        .unwrap(),
    )
    .await;
    assert!(
        body["errors"][0]["message"]
            .as_str()
            .unwrap()
            .contains("did not complete successfully: exit code: 1"),
        "{body}"
    );
    // With it, the code is data.
    let (_, body) = answer(
        post(
            "{ container { from(address: \"a\") { run: withExec(args: [\"false\"], expect: ANY) { exitCode stderr } } } }",
            Some(&auth),
        )
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        body["data"],
        serde_json::json!({"container": {"from": {"run": {"exitCode": 1, "stderr": "boom"}}}})
    );
}
