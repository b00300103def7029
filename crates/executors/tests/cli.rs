//! Real coding-agent CLIs (installed by scripts/ci-deps/llm.sh) against the fake provider, each
//! test inside a network namespace with loopback only (`unshare -n`).
#![allow(clippy::unwrap_used)]

mod common;

use async_trait::async_trait;
use hybridgrid_core::CancellationToken;
use hybridgrid_executors::cli::{CliError, CliRequest, CodingAgentKind, run_cli};
use hybridgrid_executors::llm::{
    ProviderConfig, ProviderKind, ToolDef, ToolError, ToolOutput, ToolRouter,
};
use hybridgrid_executors::mcp::{McpServerSpec, serve_tools_http};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, WireFormat};
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn request(
    kind: CodingAgentKind,
    fake: &FakeLlm,
    work: &std::path::Path,
    prompt: &str,
) -> CliRequest {
    let provider = match kind {
        CodingAgentKind::ClaudeCode => {
            ProviderConfig::new(ProviderKind::Anthropic, "fake-model", "test-key")
                .with_base_url(fake.base_url())
        }
        _ => ProviderConfig::new(ProviderKind::OpenAi, "fake-model", "test-key")
            .with_base_url(fake.openai_base_url()),
    };
    let mut req = CliRequest::new(kind, prompt, work.to_path_buf(), provider);
    req.env.insert("PATH".into(), common::path_with_deps());
    req.timeout = Duration::from_secs(120);
    req
}

/// Processes whose environment carries `marker`.
fn processes_with(marker: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid = e.file_name().to_str()?.parse::<u32>().ok()?;
            let env = std::fs::read(e.path().join("environ")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            (String::from_utf8_lossy(&env).contains(marker) && !stat.contains(") Z")).then_some(pid)
        })
        .collect()
}

/// The Hub-like tools we serve to the CLI over MCP.
#[derive(Default)]
struct Hub {
    posts: AtomicU32,
}

#[async_trait]
impl ToolRouter for Hub {
    fn tools(&self) -> Vec<ToolDef> {
        vec![ToolDef {
            name: "post_reply".into(),
            description: "Posts a reply on the Hub".into(),
            input_schema: json!({"type": "object", "properties": {"text": {"type": "string"}}, "required": ["text"]}),
        }]
    }
    async fn call(&self, name: &str, args: Value) -> Result<ToolOutput, ToolError> {
        if name != "post_reply" {
            return Err(ToolError::Unknown { name: name.into() });
        }
        self.posts.fetch_add(1, Ordering::SeqCst);
        Ok(ToolOutput::text(format!(
            "posted: {}",
            args["text"].as_str().unwrap_or("")
        )))
    }
}

/// The tool_result texts of a request (Anthropic format).
fn tool_results(body: &Value) -> Vec<String> {
    body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|m| m["content"].as_array().cloned().unwrap_or_default())
        .filter(|b| b["type"] == "tool_result")
        .map(|b| match &b["content"] {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn claude_code_uses_the_fake_and_real_mcp_servers() {
    if !common::in_netns("claude_code_uses_the_fake_and_real_mcp_servers") {
        return;
    }
    rt().block_on(async {
        let fake = FakeLlm::start().await;
        // Side requests without tools (titles, quota) get a plain answer and leave the script.
        fake.set_untooled_reply(Some(FakeReply::text("ok")));
        fake.push(FakeReply::tool_call(
            "mcp__time__get_current_time",
            json!({"timezone": "UTC"}),
        ));
        fake.push(FakeReply::tool_call(
            "mcp__hub__post_reply",
            json!({"text": "hello hub"}),
        ));
        fake.push(FakeReply::text("Replied on the Hub."));

        let hub = Arc::new(Hub::default());
        let served = serve_tools_http(
            hub.clone(),
            "hub",
            "127.0.0.1:0".parse().unwrap(),
            CancellationToken::new(),
        )
        .await
        .unwrap();
        let work = tempfile::tempdir().unwrap();
        let mut req = request(
            CodingAgentKind::ClaudeCode,
            &fake,
            work.path(),
            "Tell the Hub the time.",
        );
        req.mcp_servers = vec![
            McpServerSpec::stdio(
                "time",
                common::dep("py-time/bin/mcp-server-time")
                    .display()
                    .to_string(),
                ["--local-timezone", "UTC"],
            ),
            McpServerSpec::http("hub", served.url()),
        ];
        let out = run_cli(req).await.unwrap();
        assert!(
            out.success(),
            "claude exited {}: {}\n{}",
            out.exit_code,
            out.stdout_tail,
            out.stderr_tail
        );
        assert_eq!(
            out.final_text.as_deref(),
            Some("Replied on the Hub."),
            "{}",
            out.stdout_tail
        );
        assert!(out.usage.is_some_and(|u| u.output_tokens > 0));
        assert_eq!(
            hub.posts.load(Ordering::SeqCst),
            1,
            "the Hub tool was not called through MCP"
        );
        assert_eq!(fake.remaining(), 0);

        let tooled: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| !r.tool_names().is_empty())
            .collect();
        assert!(tooled.iter().all(|r| r.format == WireFormat::Anthropic
            && r.stream
            && r.api_key.as_deref() == Some("test-key")));
        // claude-code connects to MCP servers in the background: a slow one (Python) may join
        // after the first request.
        let names: Vec<String> = tooled.iter().flat_map(|r| r.tool_names()).collect();
        assert!(
            names.contains(&"mcp__time__get_current_time".to_owned()),
            "{names:?}"
        );
        assert!(
            names.contains(&"mcp__hub__post_reply".to_owned()),
            "{names:?}"
        );
        // The real time server answered the first call, our server the second.
        let last = tooled.last().unwrap();
        let results = tool_results(&last.body);
        assert!(
            results
                .iter()
                .any(|r| r.contains("\"timezone\"") && r.contains("UTC")),
            "{results:?}"
        );
        assert!(
            results.iter().any(|r| r.contains("posted: hello hub")),
            "{results:?}"
        );
        // The MCP config file with its credentials is gone.
        assert!(!work.path().join(".hg-mcp.json").exists());
        served.shutdown().await;
    });
}

#[test]
fn claude_code_timeout_kills_the_process_tree() {
    if !common::in_netns("claude_code_timeout_kills_the_process_tree") {
        return;
    }
    rt().block_on(async {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::text("too late")));
        for _ in 0..5 {
            fake.push_delayed(FakeReply::text("too late"), Duration::from_secs(60));
        }
        let work = tempfile::tempdir().unwrap();
        let marker = format!("hg-marker-{}", std::process::id());
        let mut req = request(CodingAgentKind::ClaudeCode, &fake, work.path(), "wait");
        req.env.insert("HG_TEST_MARKER".into(), marker.clone());
        req.timeout = Duration::from_secs(12);
        let err = run_cli(req).await.unwrap_err();
        assert!(
            matches!(
                err,
                CliError::Timeout {
                    executor: "claude-code",
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(
            err.to_string()
                .starts_with("Executor 'claude-code' timed out after 12s"),
            "{err}"
        );
        assert!(!fake.requests().is_empty(), "claude never called the model");
        let left = processes_with(&marker);
        assert!(left.is_empty(), "processes outlived the timeout: {left:?}");
    });
}

#[test]
fn cancel_kills_the_cli() {
    if !common::in_netns("cancel_kills_the_cli") {
        return;
    }
    rt().block_on(async {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::text("late")));
        for _ in 0..5 {
            fake.push_delayed(FakeReply::text("late"), Duration::from_secs(60));
        }
        let work = tempfile::tempdir().unwrap();
        let marker = format!("hg-cancel-{}", std::process::id());
        let mut req = request(CodingAgentKind::ClaudeCode, &fake, work.path(), "wait");
        req.env.insert("HG_TEST_MARKER".into(), marker.clone());
        let cancel = req.cancel.clone();
        let task = tokio::spawn(run_cli(req));
        let asked = hybridgrid_testkit::eventually(Duration::from_secs(60), || async {
            (!fake.requests().is_empty()).then_some(())
        })
        .await;
        assert!(asked.is_some(), "claude never called the model");
        cancel.cancel();
        let err = tokio::time::timeout(Duration::from_secs(15), task)
            .await
            .unwrap()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, CliError::Cancelled { .. }), "{err:?}");
        assert!(processes_with(&marker).is_empty());
    });
}

#[test]
fn aider_answers_through_the_openai_format() {
    if !common::in_netns("aider_answers_through_the_openai_format") {
        return;
    }
    rt().block_on(async {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::text("The answer is 42.")));
        let work = tempfile::tempdir().unwrap();
        let out = run_cli(request(
            CodingAgentKind::Aider,
            &fake,
            work.path(),
            "What is the answer?",
        ))
        .await
        .unwrap();
        assert!(
            out.success(),
            "aider exited {}: {}\n{}",
            out.exit_code,
            out.stdout_tail,
            out.stderr_tail
        );
        assert_eq!(
            out.final_text.as_deref(),
            Some("The answer is 42."),
            "{}",
            out.stdout_tail
        );
        let reqs = fake.requests();
        assert!(
            !reqs.is_empty()
                && reqs
                    .iter()
                    .all(|r| r.format == WireFormat::OpenAi
                        && r.api_key.as_deref() == Some("test-key"))
        );
        let body = reqs[0].body.to_string();
        assert!(body.contains("What is the answer?"), "{body}");
    });
}

#[test]
fn opencode_answers_through_an_openai_compatible_provider() {
    if !common::in_netns("opencode_answers_through_an_openai_compatible_provider") {
        return;
    }
    rt().block_on(async {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::text("The answer is 42.")));
        let work = tempfile::tempdir().unwrap();
        let out = run_cli(request(CodingAgentKind::OpenCode, &fake, work.path(), "What is the answer?")).await.unwrap();
        assert!(out.success(), "opencode exited {}: {}\n{}", out.exit_code, out.stdout_tail, out.stderr_tail);
        assert_eq!(out.final_text.as_deref(), Some("The answer is 42."), "{}", out.stdout_tail);
        let reqs = fake.requests();
        assert!(reqs.iter().any(|r| r.body.to_string().contains("What is the answer?")));
        assert!(reqs.iter().all(|r| r.format == WireFormat::OpenAi && r.api_key.as_deref() == Some("test-key")));
    });
}

#[tokio::test]
async fn goose_is_not_available_with_a_fix() {
    let fake = FakeLlm::start().await;
    let work = tempfile::tempdir().unwrap();
    let err = run_cli(request(CodingAgentKind::Goose, &fake, work.path(), "x"))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(msg.starts_with("Executor 'goose' not available: "), "{msg}");
    assert!(msg.contains("github.com/block/goose"), "{msg}");
    assert!(fake.requests().is_empty());
}

#[tokio::test]
async fn missing_cli_names_path_and_install_hint() {
    let fake = FakeLlm::start().await;
    let work = tempfile::tempdir().unwrap();
    let mut req = request(CodingAgentKind::OpenCode, &fake, work.path(), "x");
    req.env.insert("PATH".into(), "/nonexistent-bin".into());
    let msg = run_cli(req).await.unwrap_err().to_string();
    assert!(msg.starts_with("Executor 'opencode' not available: `opencode` is not on PATH (/nonexistent-bin); install it with `npm install opencode-ai`"), "{msg}");
    let mut req = request(CodingAgentKind::Aider, &fake, work.path(), "x");
    req.mcp_servers
        .push(McpServerSpec::http("hub", "http://127.0.0.1:1/mcp"));
    let msg = run_cli(req).await.unwrap_err().to_string();
    assert_eq!(
        msg,
        "Executor 'aider' does not support MCP servers (aider has no MCP client)"
    );
}

#[tokio::test]
async fn isolate_network_leaves_only_a_private_loopback() {
    let fake = FakeLlm::start().await;
    let port = fake.addr().port();
    let work = tempfile::tempdir().unwrap();
    // A stand-in program (ignores the CLI arguments) that reports whether it reaches the fake.
    let probe = work.path().join("probe.sh");
    std::fs::write(
        &probe,
        format!("#!/bin/bash\nif (exec 3<>/dev/tcp/127.0.0.1/{port}) 2>/dev/null; then echo reachable; else echo isolated; fi\n"),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&probe, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (isolate, expected) in [(false, "reachable"), (true, "isolated")] {
        let mut req = request(CodingAgentKind::Aider, &fake, work.path(), "x");
        req.program = Some(probe.clone());
        req.isolate_network = isolate;
        req.timeout = Duration::from_secs(20);
        let out = run_cli(req).await.unwrap();
        assert_eq!(
            out.final_text.as_deref(),
            Some(expected),
            "isolate={isolate}: {}",
            out.stderr_tail
        );
    }
}
