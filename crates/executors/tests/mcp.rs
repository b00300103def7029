//! MCP sessions against real servers from npm and PyPI (installed by scripts/ci-deps/llm.sh),
//! and our own MCP server checked with the official inspector CLI.
#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use hybridgrid_core::CancellationToken;
use hybridgrid_executors::llm::{ToolDef, ToolError, ToolOutput, ToolRouter};
use hybridgrid_executors::mcp::{
    AllowAll, McpError, McpServerSpec, McpSession, McpTransport, ReadOnly, StartOptions,
    group_alive, serve_tools_http,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::Duration;

fn everything() -> McpServerSpec {
    McpServerSpec::stdio(
        "everything",
        common::node(),
        [common::npm_script(
            "@modelcontextprotocol/server-everything",
            "dist/index.js",
        )],
    )
}

fn memory(file: &std::path::Path) -> McpServerSpec {
    let mut s = McpServerSpec::stdio(
        "memory",
        common::node(),
        [common::npm_script(
            "@modelcontextprotocol/server-memory",
            "dist/index.js",
        )],
    );
    if let McpTransport::Stdio { env, .. } = &mut s.transport {
        env.insert("MEMORY_FILE_PATH".into(), file.display().to_string());
    }
    s
}

fn time() -> McpServerSpec {
    McpServerSpec::stdio(
        "time",
        common::dep("py-time/bin/mcp-server-time")
            .display()
            .to_string(),
        ["--local-timezone", "UTC"],
    )
}

fn opts() -> StartOptions {
    StartOptions {
        start_timeout: Duration::from_secs(60),
        call_timeout: Duration::from_secs(30),
    }
}

/// Pids of live processes in group `pgid`.
fn group_members(pgid: u32) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(|n| n.parse::<u32>().ok()))
        .filter(|pid| {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let rest = stat
                .rsplit_once(')')
                .map(|(_, r)| r.to_owned())
                .unwrap_or_default();
            let f: Vec<&str> = rest.split_whitespace().collect();
            f.get(2).and_then(|p| p.parse::<u32>().ok()) == Some(pgid) && f.first() != Some(&"Z")
        })
        .collect()
}

fn pid_alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|s| {
            s.rsplit_once(')')
                .is_some_and(|(_, r)| !r.trim_start().starts_with('Z'))
        })
        .unwrap_or(false)
}

#[tokio::test]
async fn stdio_servers_from_npm_and_pypi_route_calls() {
    let dir = tempfile::tempdir().unwrap();
    let mut every = everything();
    if let McpTransport::Stdio { env, .. } = &mut every.transport {
        env.insert("HG_INJECTED_CREDENTIAL".into(), "injected-value".into());
    }
    let specs = vec![every, memory(&dir.path().join("mem.jsonl")), time()];
    let s = McpSession::start(specs, Arc::new(AllowAll), opts())
        .await
        .unwrap();
    assert_eq!(s.servers(), vec!["everything", "memory", "time"]);
    let names: Vec<String> = s.tools().into_iter().map(|t| t.name).collect();
    for n in [
        "everything__echo",
        "everything__get-sum",
        "memory__create_entities",
        "memory__read_graph",
        "time__get_current_time",
    ] {
        assert!(names.contains(&n.to_owned()), "{n} missing from {names:?}");
    }

    let sum = s
        .call("everything__get-sum", json!({"a": 2, "b": 3}))
        .await
        .unwrap();
    assert!(sum.content.contains('5') && !sum.is_error, "{sum:?}");

    let now = s
        .call("time__get_current_time", json!({"timezone": "UTC"}))
        .await
        .unwrap();
    assert!(now.content.contains("UTC"), "{now:?}");
    // A tool-level error from the Python server comes back as an error result.
    let bad = s
        .call("time__get_current_time", json!({"timezone": "Not/AZone"}))
        .await;
    assert!(
        matches!(&bad, Ok(o) if o.is_error) || matches!(&bad, Err(ToolError::Failed { .. })),
        "{bad:?}"
    );

    let created = s
        .call(
            "memory__create_entities",
            json!({"entities": [{"name": "hybridgrid", "entityType": "project", "observations": ["written in Rust"]}]}),
        )
        .await
        .unwrap();
    assert!(!created.is_error, "{created:?}");
    let graph = s.call("memory__read_graph", json!({})).await.unwrap();
    assert!(graph.content.contains("written in Rust"), "{graph:?}");

    // Servers get a clean environment plus what the spec injects.
    let env = s.call("everything__get-env", json!({})).await.unwrap();
    assert!(env.content.contains("injected-value"), "{}", env.content);
    assert!(
        !env.content.contains("CARGO_PKG_NAME"),
        "the runner's environment leaked: {}",
        env.content
    );

    assert!(matches!(
        s.call("nope__x", json!({})).await,
        Err(ToolError::Unknown { .. })
    ));
    s.shutdown().await;
}

#[tokio::test]
async fn read_only_policy_hides_and_refuses_write_tools() {
    let dir = tempfile::tempdir().unwrap();
    let s = McpSession::start(
        vec![memory(&dir.path().join("mem.jsonl"))],
        Arc::new(ReadOnly::default()),
        opts(),
    )
    .await
    .unwrap();
    let mut names: Vec<String> = s.tools().into_iter().map(|t| t.name).collect();
    names.sort();
    assert_eq!(
        names,
        vec![
            "memory__open_nodes",
            "memory__read_graph",
            "memory__search_nodes"
        ]
    );

    let refused = s
        .call(
            "memory__create_entities",
            json!({"entities": [{"name": "x", "entityType": "t", "observations": []}]}),
        )
        .await;
    match refused {
        Err(ToolError::Refused { name, reason }) => {
            assert_eq!(name, "memory__create_entities");
            assert!(reason.contains("read-only"), "{reason}");
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // The server was never asked: the graph is still empty, and no file was written.
    let graph = s.call("memory__read_graph", json!({})).await.unwrap();
    assert!(!graph.content.contains("\"x\""), "{graph:?}");
    assert!(
        !dir.path().join("mem.jsonl").exists()
            || std::fs::read_to_string(dir.path().join("mem.jsonl"))
                .unwrap()
                .is_empty()
    );
    s.shutdown().await;
}

#[tokio::test]
async fn shutdown_kills_the_whole_process_tree() {
    // `sh` leads the group and runs node as a child (no exec): a tree of two processes.
    let script = common::npm_script("@modelcontextprotocol/server-everything", "dist/index.js");
    let spec = McpServerSpec::stdio(
        "tree",
        "sh",
        [
            "-c".to_owned(),
            format!("'{}' '{}'; echo done", common::node(), script),
        ],
    );
    let s = McpSession::start(vec![spec], Arc::new(AllowAll), opts())
        .await
        .unwrap();
    let groups = s.process_groups();
    assert_eq!(groups.len(), 1);
    let members = group_members(groups[0]);
    assert!(
        members.len() >= 2,
        "expected sh + node in group {}: {members:?}",
        groups[0]
    );
    s.shutdown().await;
    assert!(
        !group_alive(groups[0]),
        "group {} still alive after shutdown",
        groups[0]
    );
    for pid in members {
        assert!(!pid_alive(pid), "process {pid} outlived the session");
    }
}

#[tokio::test]
async fn dropping_the_session_kills_its_servers() {
    let s = McpSession::start(vec![everything()], Arc::new(AllowAll), opts())
        .await
        .unwrap();
    let g = s.process_groups()[0];
    assert!(group_alive(g));
    drop(s);
    let gone = hybridgrid_testkit::eventually(Duration::from_secs(5), || async {
        (!group_alive(g)).then_some(())
    })
    .await;
    assert!(gone.is_some(), "group {g} alive 5 s after drop");
}

#[tokio::test]
async fn failing_server_shows_its_stderr_and_stops_the_others() {
    let bad = McpServerSpec::stdio(
        "github",
        "sh",
        ["-c", "echo 'fatal: GITHUB_PAT is not set' >&2; exit 3"],
    );
    let dir = tempfile::tempdir().unwrap();
    let err = McpSession::start(
        vec![memory(&dir.path().join("m.jsonl")), bad],
        Arc::new(AllowAll),
        opts(),
    )
    .await
    .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("MCP server 'github' failed to start: "),
        "{msg}"
    );
    assert!(msg.contains("fatal: GITHUB_PAT is not set"), "{msg}");
    assert!(matches!(err, McpError::Start { ref server, .. } if server == "github"));
    // No memory server left behind.
    let leftover = hybridgrid_testkit::eventually(Duration::from_secs(5), || async {
        let found = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            // The memory server is the one whose environment names this test's directory.
            std::fs::read(e.path().join("environ")).is_ok_and(|env| {
                String::from_utf8_lossy(&env).contains(&dir.path().display().to_string())
            })
        });
        (!found).then_some(())
    })
    .await;
    assert!(
        leftover.is_some(),
        "the memory server outlived the failed start"
    );
}

#[tokio::test]
async fn silent_server_hits_the_start_timeout() {
    let spec = McpServerSpec::stdio(
        "sleepy",
        "sh",
        ["-c", "echo waiting for nothing >&2; exec sleep 60"],
    );
    let o = StartOptions {
        start_timeout: Duration::from_millis(800),
        call_timeout: Duration::from_secs(5),
    };
    let err = McpSession::start(vec![spec], Arc::new(AllowAll), o)
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("MCP server 'sleepy' failed to start: not ready after 800ms"),
        "{msg}"
    );
    assert!(msg.contains("waiting for nothing"), "{msg}");
    let left = hybridgrid_testkit::eventually(Duration::from_secs(5), || async {
        let alive = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            std::fs::read_to_string(e.path().join("cmdline"))
                .is_ok_and(|c| c.starts_with("sleep\u{0}60"))
                && std::fs::read_to_string(e.path().join("stat")).is_ok_and(|s| !s.contains(") Z"))
        });
        (!alive).then_some(())
    })
    .await;
    assert!(left.is_some(), "sleep 60 outlived the timed-out start");
}

#[tokio::test]
async fn bad_specs_are_refused_before_starting() {
    let e = McpSession::start(vec![everything(), everything()], Arc::new(AllowAll), opts())
        .await
        .unwrap_err();
    assert_eq!(e.to_string(), "MCP server 'everything' is listed twice");
    let e = McpSession::start(
        vec![McpServerSpec::stdio("a b", "true", Vec::<String>::new())],
        Arc::new(AllowAll),
        opts(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string().starts_with("MCP server 'a b': invalid spec"),
        "{e}"
    );
    let e = McpSession::start(
        vec![McpServerSpec::stdio(
            "gone",
            "/nonexistent/mcp",
            Vec::<String>::new(),
        )],
        Arc::new(AllowAll),
        opts(),
    )
    .await
    .unwrap_err();
    assert!(
        e.to_string()
            .starts_with("MCP server 'gone' failed to start: cannot run `/nonexistent/mcp`"),
        "{e}"
    );
}

/// Kills a std child's process group on drop.
struct GroupGuard(std::process::Child);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.0.id())])
            .status();
        let _ = self.0.wait();
    }
}

async fn wait_port(port: u16) {
    let up = hybridgrid_testkit::eventually(Duration::from_secs(30), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .ok()
            .map(|_| ())
    })
    .await;
    assert!(
        up.is_some(),
        "nothing listening on 127.0.0.1:{port} after 30 s"
    );
}

#[test]
fn streamable_http_server_everything() {
    // server-everything binds every interface: run it (and us) in a namespace with loopback only.
    if !common::in_netns("streamable_http_server_everything") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = {
            use std::os::unix::process::CommandExt;
            std::process::Command::new(common::node())
                .arg(common::npm_script(
                    "@modelcontextprotocol/server-everything",
                    "dist/index.js",
                ))
                .arg("streamableHttp")
                .env("PORT", port.to_string())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .process_group(0)
                .spawn()
                .unwrap()
        };
        let _guard = GroupGuard(child);
        wait_port(port).await;
        let spec = McpServerSpec::http("everything", format!("http://127.0.0.1:{port}/mcp"));
        let s = McpSession::start(vec![spec], Arc::new(ReadOnly::default()), opts())
            .await
            .unwrap();
        let names: Vec<String> = s.tools().into_iter().map(|t| t.name).collect();
        assert!(names.contains(&"everything__echo".to_owned()), "{names:?}");
        assert!(
            !names.contains(&"everything__toggle-simulated-logging".to_owned()),
            "write tool visible: {names:?}"
        );
        let out = s
            .call("everything__echo", json!({"message": "over http"}))
            .await
            .unwrap();
        assert_eq!(out.content, "Echo: over http");
        let refused = s
            .call("everything__toggle-simulated-logging", json!({}))
            .await;
        assert!(
            matches!(refused, Err(ToolError::Refused { .. })),
            "{refused:?}"
        );
        s.shutdown().await;
    });
}

/// The tools we serve in the inspector test.
struct Clock;

#[async_trait]
impl ToolRouter for Clock {
    fn tools(&self) -> Vec<ToolDef> {
        vec![ToolDef {
            name: "now".into(),
            description: "The current time in a zone".into(),
            input_schema: json!({"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]}),
        }]
    }
    async fn call(&self, name: &str, args: Value) -> Result<ToolOutput, ToolError> {
        match name {
            "now" => Ok(ToolOutput::text(format!(
                "12:00 {}",
                args["tz"].as_str().unwrap_or("?")
            ))),
            _ => Err(ToolError::Unknown { name: name.into() }),
        }
    }
}

fn inspector(home: &std::path::Path, args: &[&str]) -> Value {
    let out = std::process::Command::new(common::node())
        .arg(common::npm_script(
            "@modelcontextprotocol/inspector",
            "clients/launcher/build/index.js",
        ))
        .arg("--cli")
        .args(args)
        .env("HOME", home)
        .env("PATH", common::path_with_deps())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "inspector {args:?} failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("inspector output is not JSON ({e}): {stdout}"))
}

#[test]
fn serve_tools_http_answers_the_official_inspector() {
    if !common::in_netns("serve_tools_http_answers_the_official_inspector") {
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    let cancel = CancellationToken::new();
    let server = rt
        .block_on(serve_tools_http(
            Arc::new(Clock),
            "hybridgrid-test",
            "127.0.0.1:0".parse().unwrap(),
            cancel.clone(),
        ))
        .unwrap();
    let url = server.url();
    let home = tempfile::tempdir().unwrap();
    let listed = inspector(
        home.path(),
        &[&url, "--transport", "http", "--method", "tools/list"],
    );
    let tools = listed["tools"].as_array().unwrap();
    assert_eq!(tools.len(), 1, "{listed}");
    assert_eq!(tools[0]["name"], "now");
    assert_eq!(tools[0]["inputSchema"]["required"], json!(["tz"]));
    let called = inspector(
        home.path(),
        &[
            &url,
            "--transport",
            "http",
            "--method",
            "tools/call",
            "--tool-name",
            "now",
            "--tool-arg",
            "tz=UTC",
        ],
    );
    assert_eq!(called["content"][0]["text"], "12:00 UTC", "{called}");
    assert_ne!(called["isError"], json!(true));
    rt.block_on(server.shutdown());
}
