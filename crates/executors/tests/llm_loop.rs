//! The agent loop against the fake provider, in both wire formats, streamed and not.
#![allow(clippy::unwrap_used)]

use async_trait::async_trait;
use hybridgrid_core::Retry;
use hybridgrid_executors::llm::{
    AgentRequest, LlmError, NoTools, ProviderConfig, ProviderKind, StopReason, ToolDef, ToolError,
    ToolOutput, ToolRouter, Usage, run_agent,
};
use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply, FakeToolCall, WireFormat};
use serde_json::{Value, json};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const KINDS: [(ProviderKind, bool); 4] = [
    (ProviderKind::Anthropic, true),
    (ProviderKind::Anthropic, false),
    (ProviderKind::OpenAi, true),
    (ProviderKind::OpenAi, false),
];

fn provider(kind: ProviderKind, stream: bool, fake: &FakeLlm) -> ProviderConfig {
    let base = match kind {
        ProviderKind::Anthropic => fake.base_url(),
        ProviderKind::OpenAi => fake.openai_base_url(),
    };
    let mut p = ProviderConfig::new(kind, "fake-model", "test-key").with_base_url(base);
    p.stream = stream;
    p.request_timeout = Duration::from_secs(10);
    p
}

/// A clock tool: `now` returns a fixed time, and counts its calls.
#[derive(Default)]
struct Clock {
    calls: AtomicU32,
    args: Mutex<Vec<Value>>,
}

#[async_trait]
impl ToolRouter for Clock {
    fn tools(&self) -> Vec<ToolDef> {
        vec![ToolDef {
            name: "now".into(),
            description: "current time".into(),
            input_schema: json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
        }]
    }
    async fn call(&self, name: &str, args: Value) -> Result<ToolOutput, ToolError> {
        if name != "now" {
            return Err(ToolError::Unknown { name: name.into() });
        }
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.args.lock().unwrap().push(args);
        Ok(ToolOutput::text("12:00 UTC"))
    }
}

/// The tool result text the request carries (last message), in either format.
fn last_tool_result(body: &Value) -> (String, Option<bool>) {
    let msgs = body["messages"].as_array().unwrap();
    let last = msgs.last().unwrap();
    if last["role"] == "tool" {
        return (last["content"].as_str().unwrap().to_owned(), None);
    }
    let block = &last["content"][0];
    assert_eq!(block["type"], "tool_result", "{last}");
    (
        block["content"].as_str().unwrap().to_owned(),
        block["is_error"].as_bool(),
    )
}

#[tokio::test]
async fn tool_call_then_final_answer() {
    for (kind, stream) in KINDS {
        let fake = FakeLlm::start().await;
        fake.push(FakeReply::ToolCalls {
            text: "Checking.".into(),
            calls: vec![FakeToolCall {
                name: "now".into(),
                arguments: json!({"tz": "UTC"}),
            }],
        });
        fake.push(FakeReply::text("It is 12:00 UTC."));
        let clock = Arc::new(Clock::default());
        let req = AgentRequest::new(
            provider(kind, stream, &fake),
            "You tell the time.",
            "What time is it?",
            clock.clone(),
        );
        let out = run_agent(req).await.unwrap();
        assert_eq!(out.stop, StopReason::Final, "{kind} stream={stream}");
        assert_eq!(out.final_text.as_deref(), Some("It is 12:00 UTC."));
        assert_eq!(out.iterations, 2);
        assert_eq!(
            out.usage,
            Usage {
                input_tokens: 200,
                output_tokens: 40
            }
        );
        assert_eq!(out.tool_calls.len(), 1);
        assert_eq!(out.tool_calls[0].name, "now");
        assert_eq!(out.tool_calls[0].arguments, json!({"tz": "UTC"}));
        assert_eq!(*clock.args.lock().unwrap(), vec![json!({"tz": "UTC"})]);

        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2);
        let expected = if kind == ProviderKind::Anthropic {
            WireFormat::Anthropic
        } else {
            WireFormat::OpenAi
        };
        assert!(reqs.iter().all(|r| r.format == expected
            && r.stream == stream
            && r.api_key.as_deref() == Some("test-key")));
        assert_eq!(reqs[0].tool_names(), vec!["now".to_owned()]);
        let (content, is_error) = last_tool_result(&reqs[1].body);
        assert_eq!(content, "12:00 UTC");
        assert_ne!(is_error, Some(true));
        // The system prompt travels the provider's way.
        match kind {
            ProviderKind::Anthropic => assert_eq!(reqs[0].body["system"], "You tell the time."),
            ProviderKind::OpenAi => assert_eq!(reqs[0].body["messages"][0]["role"], "system"),
        }
    }
}

#[tokio::test]
async fn skip_answer_stops_without_text() {
    for (kind, stream) in KINDS {
        let fake = FakeLlm::start().await;
        fake.push(FakeReply::text("SKIP"));
        let out = run_agent(AgentRequest::new(
            provider(kind, stream, &fake),
            "",
            "hi",
            Arc::new(NoTools),
        ))
        .await
        .unwrap();
        assert_eq!(out.stop, StopReason::Skip, "{kind} stream={stream}");
        assert_eq!(out.final_text, None);
        assert_eq!(out.iterations, 1);
    }
}

#[tokio::test]
async fn max_iterations_is_reported() {
    for (kind, stream) in KINDS {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::tool_call("now", json!({}))));
        let clock = Arc::new(Clock::default());
        let mut req = AgentRequest::new(provider(kind, stream, &fake), "", "loop", clock.clone());
        req.max_iterations = 3;
        req.repeat_limit = 0;
        let out = run_agent(req).await.unwrap();
        assert_eq!(
            out.stop,
            StopReason::MaxIterations,
            "{kind} stream={stream}"
        );
        assert_eq!(out.iterations, 3);
        assert_eq!(fake.requests().len(), 3);
        // The last turn's calls are not run.
        assert_eq!(clock.calls.load(Ordering::SeqCst), 2);
        assert_eq!(out.tool_calls.len(), 2);
    }
}

#[tokio::test]
async fn repeated_tool_call_stops_the_loop() {
    for (kind, stream) in KINDS {
        let fake = FakeLlm::start().await;
        fake.set_fallback(Some(FakeReply::tool_call("now", json!({"tz": "CET"}))));
        let clock = Arc::new(Clock::default());
        let mut req = AgentRequest::new(provider(kind, stream, &fake), "", "loop", clock.clone());
        req.max_iterations = 10;
        req.repeat_limit = 3;
        let out = run_agent(req).await.unwrap();
        assert_eq!(
            out.stop,
            StopReason::RepeatedToolCall { tool: "now".into() },
            "{kind} stream={stream}"
        );
        assert_eq!(out.iterations, 3);
        assert_eq!(clock.calls.load(Ordering::SeqCst), 2);
    }
}

#[tokio::test]
async fn rate_limit_then_success_honours_retry_after() {
    for (kind, stream) in [
        (ProviderKind::Anthropic, true),
        (ProviderKind::OpenAi, false),
    ] {
        let fake = FakeLlm::start().await;
        fake.push(FakeReply::rate_limited(1));
        fake.push(FakeReply::text("ok"));
        let out = run_agent(AgentRequest::new(
            provider(kind, stream, &fake),
            "",
            "hi",
            Arc::new(NoTools),
        ))
        .await
        .unwrap();
        assert_eq!(out.final_text.as_deref(), Some("ok"));
        let reqs = fake.requests();
        assert_eq!(reqs.len(), 2, "{kind}");
        // Behaviour, not speed: the retry did not come before the provider allowed it.
        assert!(
            reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(990),
            "{kind}: retried early"
        );
        // Usage counts the successful call only.
        assert_eq!(
            out.usage,
            Usage {
                input_tokens: 100,
                output_tokens: 20
            }
        );
    }
}

#[tokio::test]
async fn rate_limit_after_every_retry_is_an_error() {
    let fake = FakeLlm::start().await;
    fake.set_fallback(Some(FakeReply::rate_limited(0)));
    let mut p = provider(ProviderKind::OpenAi, true, &fake);
    p.max_retries = 2;
    let err = run_agent(AgentRequest::new(p, "", "hi", Arc::new(NoTools)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::RateLimited { attempts: 3, .. }),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "openai: rate limited (429) after 3 attempts (Retry-After 0s)"
    );
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(err.retry(), Retry::After(Duration::ZERO));
}

#[tokio::test]
async fn server_error_is_retried() {
    let fake = FakeLlm::start().await;
    fake.push(FakeReply::Error {
        status: 529,
        retry_after: Some("0".into()),
        message: "overloaded".into(),
    });
    fake.push(FakeReply::text("fine"));
    let out = run_agent(AgentRequest::new(
        provider(ProviderKind::Anthropic, true, &fake),
        "",
        "hi",
        Arc::new(NoTools),
    ))
    .await
    .unwrap();
    assert_eq!(out.final_text.as_deref(), Some("fine"));
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn bad_key_names_provider_and_env_var() {
    for (kind, msg) in [
        (
            ProviderKind::Anthropic,
            "anthropic: authentication failed (401): check ANTHROPIC_API_KEY",
        ),
        (
            ProviderKind::OpenAi,
            "openai: authentication failed (401): check OPENAI_API_KEY",
        ),
    ] {
        let fake = FakeLlm::start().await;
        fake.require_key(Some("the-right-key"));
        fake.push(FakeReply::text("never"));
        let err = run_agent(AgentRequest::new(
            provider(kind, true, &fake),
            "",
            "hi",
            Arc::new(NoTools),
        ))
        .await
        .unwrap_err();
        assert_eq!(err.to_string(), msg);
        assert_eq!(err.retry(), Retry::Never);
        assert_eq!(fake.requests().len(), 1, "401 is not retried");
        assert!(!format!("{err:?}").contains("test-key"));
    }
}

#[tokio::test]
async fn bad_request_is_not_retried_and_shows_the_provider_message() {
    let fake = FakeLlm::start().await;
    fake.push(FakeReply::error(400, "max_tokens: too large"));
    let err = run_agent(AgentRequest::new(
        provider(ProviderKind::Anthropic, false, &fake),
        "",
        "hi",
        Arc::new(NoTools),
    ))
    .await
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "anthropic: HTTP 400: max_tokens: too large"
    );
    assert_eq!(fake.requests().len(), 1);
}

#[tokio::test]
async fn slow_provider_times_out() {
    let fake = FakeLlm::start().await;
    fake.push_delayed(FakeReply::text("late"), Duration::from_secs(5));
    let mut p = provider(ProviderKind::OpenAi, true, &fake);
    p.request_timeout = Duration::from_millis(200);
    p.max_retries = 0;
    let err = run_agent(AgentRequest::new(p, "", "hi", Arc::new(NoTools)))
        .await
        .unwrap_err();
    assert!(
        matches!(err, LlmError::Timeout { attempts: 1, .. }),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .starts_with("openai: request timed out after 200ms"),
        "{err}"
    );
}

#[tokio::test]
async fn cancel_abandons_the_model_call() {
    let fake = FakeLlm::start().await;
    fake.push_delayed(FakeReply::text("late"), Duration::from_secs(30));
    let req = AgentRequest::new(
        provider(ProviderKind::Anthropic, true, &fake),
        "",
        "hi",
        Arc::new(NoTools),
    );
    let cancel = req.cancel.clone();
    let task = tokio::spawn(run_agent(req));
    // Cancel once the request reached the provider.
    hybridgrid_testkit::eventually(Duration::from_secs(5), || async {
        (!fake.requests().is_empty()).then_some(())
    })
    .await
    .unwrap();
    cancel.cancel();
    let err = tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, LlmError::Cancelled { .. }), "{err:?}");
}

#[tokio::test]
async fn unknown_tool_is_fed_back_as_an_error() {
    for (kind, stream) in [
        (ProviderKind::Anthropic, true),
        (ProviderKind::OpenAi, true),
    ] {
        let fake = FakeLlm::start().await;
        fake.push(FakeReply::tool_call("nope", json!({})));
        fake.push(FakeReply::text("sorry"));
        let out = run_agent(AgentRequest::new(
            provider(kind, stream, &fake),
            "",
            "hi",
            Arc::new(Clock::default()),
        ))
        .await
        .unwrap();
        assert_eq!(out.stop, StopReason::Final);
        assert!(out.tool_calls[0].output.is_error);
        let (content, is_error) = last_tool_result(&fake.requests()[1].body);
        assert!(content.contains("unknown tool 'nope'"), "{content}");
        if kind == ProviderKind::Anthropic {
            assert_eq!(is_error, Some(true));
        }
    }
}

#[tokio::test]
async fn unreachable_provider_names_the_endpoint() {
    // A port nothing listens on: bind, note the port, drop the listener.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut p = ProviderConfig::new(ProviderKind::Anthropic, "m", "k")
        .with_base_url(format!("http://127.0.0.1:{port}"));
    p.max_retries = 0;
    let err = run_agent(AgentRequest::new(p, "", "hi", Arc::new(NoTools)))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "anthropic: cannot reach http://127.0.0.1:{port}/v1/messages"
        )),
        "{msg}"
    );
}
