//! A fake LLM provider (feature `fake-llm`): speaks the real Anthropic Messages and OpenAI chat
//! completions wire formats over HTTP on loopback, streamed (SSE) or not, from a script.
//!
//! - `POST /v1/messages` answers in the Anthropic format (`POST /v1/messages/count_tokens` too);
//! - `POST /v1/chat/completions` (and `/chat/completions`) in the OpenAI format;
//! - `GET /v1/models` lists the model names seen so far plus `fake-model`.
//!
//! Each model request takes the next [`FakeReply`] of the queue (after its delay); when the queue
//! is empty the fallback reply is used (by default a 500 naming the exhausted script). Every
//! request is recorded ([`FakeLlm::requests`]).
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use hybridgrid_testkit::fake_llm::{FakeLlm, FakeReply};
//! let fake = FakeLlm::start().await;
//! fake.push(FakeReply::tool_call("get_time", serde_json::json!({"tz": "UTC"})));
//! fake.push(FakeReply::text("It is noon."));
//! // point ANTHROPIC_BASE_URL at fake.base_url(), or an OpenAI client at fake.openai_base_url()
//! # assert!(fake.base_url().starts_with("http://127.0.0.1:"));
//! # }
//! ```

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// One scripted tool call.
#[derive(Clone, Debug, PartialEq)]
pub struct FakeToolCall {
    /// Tool name.
    pub name: String,
    /// Arguments (a JSON object).
    pub arguments: Value,
}

/// What the fake answers to one model request.
#[derive(Clone, Debug, PartialEq)]
pub enum FakeReply {
    /// A final text answer (`end_turn` / `stop`).
    Text(String),
    /// Optional text, then tool calls (`tool_use` / `tool_calls`).
    ToolCalls {
        /// Text before the calls (may be empty).
        text: String,
        /// The calls.
        calls: Vec<FakeToolCall>,
    },
    /// An HTTP error in the provider's error format.
    Error {
        /// Status code (401, 429, 500, 529 ...).
        status: u16,
        /// `Retry-After` header value, if any.
        retry_after: Option<String>,
        /// The error message.
        message: String,
    },
}

impl FakeReply {
    /// A final text answer.
    pub fn text(t: impl Into<String>) -> Self {
        FakeReply::Text(t.into())
    }

    /// One tool call, no text.
    pub fn tool_call(name: impl Into<String>, arguments: Value) -> Self {
        FakeReply::ToolCalls {
            text: String::new(),
            calls: vec![FakeToolCall {
                name: name.into(),
                arguments,
            }],
        }
    }

    /// An HTTP error.
    pub fn error(status: u16, message: impl Into<String>) -> Self {
        FakeReply::Error {
            status,
            retry_after: None,
            message: message.into(),
        }
    }

    /// A 429 with `Retry-After: secs`.
    pub fn rate_limited(retry_after_secs: u32) -> Self {
        FakeReply::Error {
            status: 429,
            retry_after: Some(retry_after_secs.to_string()),
            message: "rate limited by the fake".into(),
        }
    }
}

/// Which wire format a request used.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WireFormat {
    /// `POST /v1/messages`.
    Anthropic,
    /// `POST /v1/chat/completions`.
    OpenAi,
}

/// One request the fake received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Wire format (by path).
    pub format: WireFormat,
    /// Request path.
    pub path: String,
    /// The key sent (`x-api-key`, or the bearer token).
    pub api_key: Option<String>,
    /// Parsed JSON body.
    pub body: Value,
    /// `"stream": true` was asked.
    pub stream: bool,
    /// Monotonic time it arrived.
    pub at: std::time::Instant,
}

impl RecordedRequest {
    /// Names of the tools the request offered.
    pub fn tool_names(&self) -> Vec<String> {
        let tools = self
            .body
            .get("tools")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        tools
            .iter()
            .filter_map(|t| {
                t.get("name")
                    .or_else(|| t.pointer("/function/name"))
                    .and_then(Value::as_str)
            })
            .map(str::to_owned)
            .collect()
    }
}

struct Scripted {
    reply: FakeReply,
    delay: Duration,
}

struct Inner {
    queue: VecDeque<Scripted>,
    fallback: Option<FakeReply>,
    /// Answer for requests that offer no tools, without consuming the queue (side requests of
    /// coding-agent CLIs: titles, quota checks).
    untooled: Option<FakeReply>,
    required_key: Option<String>,
    usage: (u64, u64),
    requests: Vec<RecordedRequest>,
    models: Vec<String>,
    counter: u64,
}

/// A running fake provider; stops when dropped.
pub struct FakeLlm {
    addr: SocketAddr,
    inner: Arc<Mutex<Inner>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

fn lock(m: &Mutex<Inner>) -> MutexGuard<'_, Inner> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl FakeLlm {
    /// Starts on `127.0.0.1` on a free port. Panics if loopback cannot be bound (test helper).
    pub async fn start() -> FakeLlm {
        match Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).await {
            Ok(f) => f,
            Err(e) => panic!("fake-llm: cannot bind 127.0.0.1: {e}"),
        }
    }

    /// Starts on `addr`.
    pub async fn start_on(addr: SocketAddr) -> std::io::Result<FakeLlm> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let inner = Arc::new(Mutex::new(Inner {
            queue: VecDeque::new(),
            fallback: None,
            untooled: None,
            required_key: None,
            usage: (100, 20),
            requests: Vec::new(),
            models: Vec::new(),
            counter: 0,
        }));
        let app = axum::Router::new()
            .route("/v1/messages", post(anthropic))
            .route("/v1/messages/count_tokens", post(count_tokens))
            .route("/v1/chat/completions", post(openai))
            .route("/chat/completions", post(openai))
            .route("/v1/models", get(models))
            .fallback(|| async {
                (
                    StatusCode::NOT_FOUND,
                    axum::Json(json!({"error": {"message": "fake-llm: no such route"}})),
                )
            })
            .with_state(inner.clone());
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = rx.await;
                })
                .await;
        });
        Ok(FakeLlm {
            addr,
            inner,
            stop: Some(tx),
        })
    }

    /// `http://127.0.0.1:PORT` (Anthropic clients append `/v1/messages`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT/v1` (OpenAI clients append `/chat/completions`).
    pub fn openai_base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Queues a reply.
    pub fn push(&self, reply: FakeReply) {
        self.push_delayed(reply, Duration::ZERO);
    }

    /// Queues a reply sent after `delay`.
    pub fn push_delayed(&self, reply: FakeReply, delay: Duration) {
        lock(&self.inner).queue.push_back(Scripted { reply, delay });
    }

    /// The reply used when the queue is empty (`None`: a 500 saying the script is exhausted).
    pub fn set_fallback(&self, reply: Option<FakeReply>) {
        lock(&self.inner).fallback = reply;
    }

    /// The reply to requests offering no tools, which then leave the queue alone (`None`, the
    /// default: they take from the queue like any other).
    pub fn set_untooled_reply(&self, reply: Option<FakeReply>) {
        lock(&self.inner).untooled = reply;
    }

    /// Requests with another key get a 401 (`None`, the default: any key is accepted).
    pub fn require_key(&self, key: Option<&str>) {
        lock(&self.inner).required_key = key.map(str::to_owned);
    }

    /// Token usage reported for every answer (default 100 in, 20 out).
    pub fn set_usage(&self, input_tokens: u64, output_tokens: u64) {
        lock(&self.inner).usage = (input_tokens, output_tokens);
    }

    /// Every model request received so far (not `count_tokens` or `models`).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner).requests.clone()
    }

    /// Replies still queued.
    pub fn remaining(&self) -> usize {
        lock(&self.inner).queue.len()
    }
}

impl Drop for FakeLlm {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

type Shared = Arc<Mutex<Inner>>;

fn key_of(format: WireFormat, h: &HeaderMap) -> Option<String> {
    let v = match format {
        WireFormat::Anthropic => h
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        WireFormat::OpenAi => None,
    };
    v.or_else(|| {
        h.get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_owned)
    })
}

/// What to answer, decided under the lock.
struct Plan {
    reply: FakeReply,
    delay: Duration,
    stream: bool,
    model: String,
    usage: (u64, u64),
    id: u64,
}

fn plan(
    state: &Shared,
    format: WireFormat,
    path: &str,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<Plan, Box<Response>> {
    let body: Value = serde_json::from_slice(body).map_err(|e| {
        Box::new(error_response(
            format,
            400,
            None,
            &format!("fake-llm: body is not JSON: {e}"),
        ))
    })?;
    let api_key = key_of(format, headers);
    let stream = body.get("stream").and_then(Value::as_bool).unwrap_or(false);
    let model = body
        .get("model")
        .and_then(Value::as_str)
        .unwrap_or("fake-model")
        .to_owned();
    let has_tools = body
        .get("tools")
        .and_then(Value::as_array)
        .is_some_and(|t| !t.is_empty());
    let mut g = lock(state);
    g.counter += 1;
    let id = g.counter;
    if !g.models.contains(&model) {
        g.models.push(model.clone());
    }
    g.requests.push(RecordedRequest {
        format,
        path: path.to_owned(),
        api_key: api_key.clone(),
        body,
        stream,
        at: std::time::Instant::now(),
    });
    if let Some(required) = &g.required_key
        && api_key.as_deref() != Some(required.as_str())
    {
        return Err(Box::new(error_response(
            format,
            401,
            None,
            "invalid x-api-key",
        )));
    }
    let usage = g.usage;
    let (reply, delay) = match (&g.untooled, has_tools) {
        (Some(r), false) => (r.clone(), Duration::ZERO),
        _ => match g.queue.pop_front() {
            Some(s) => (s.reply, s.delay),
            None => match &g.fallback {
                Some(r) => (r.clone(), Duration::ZERO),
                None => (
                    FakeReply::error(500, "fake-llm: script exhausted"),
                    Duration::ZERO,
                ),
            },
        },
    };
    Ok(Plan {
        reply,
        delay,
        stream,
        model,
        usage,
        id,
    })
}

fn error_response(
    format: WireFormat,
    status: u16,
    retry_after: Option<&str>,
    message: &str,
) -> Response {
    let body = match format {
        WireFormat::Anthropic => {
            let kind = match status {
                401 => "authentication_error",
                403 => "permission_error",
                429 => "rate_limit_error",
                529 => "overloaded_error",
                400 => "invalid_request_error",
                _ => "api_error",
            };
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        WireFormat::OpenAi => {
            json!({"error": {"message": message, "type": "fake_error", "code": status}})
        }
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, axum::Json(body)).into_response();
    if let Some(ra) = retry_after
        && let Ok(v) = ra.parse()
    {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

fn sse(events: Vec<String>) -> Response {
    let stream = futures::stream::iter(
        events
            .into_iter()
            .map(|e| Ok::<_, Infallible>(Bytes::from(e))),
    );
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream")
        .header(header::CACHE_CONTROL, "no-cache")
        .body(Body::from_stream(stream))
        .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
}

/// Splits `s` into about three pieces on char boundaries (so clients must reassemble deltas).
fn pieces(s: &str) -> Vec<String> {
    let chars: Vec<char> = s.chars().collect();
    if chars.len() < 3 {
        return vec![s.to_owned()];
    }
    let n = chars.len().div_ceil(3);
    chars.chunks(n).map(|c| c.iter().collect()).collect()
}

async fn anthropic(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match plan(
        &state,
        WireFormat::Anthropic,
        "/v1/messages",
        &headers,
        &body,
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    tokio::time::sleep(p.delay).await;
    let (text, calls) = match &p.reply {
        FakeReply::Error {
            status,
            retry_after,
            message,
        } => {
            return error_response(
                WireFormat::Anthropic,
                *status,
                retry_after.as_deref(),
                message,
            );
        }
        FakeReply::Text(t) => (t.clone(), Vec::new()),
        FakeReply::ToolCalls { text, calls } => (text.clone(), calls.clone()),
    };
    let stop = if calls.is_empty() {
        "end_turn"
    } else {
        "tool_use"
    };
    let msg_id = format!("msg_fake{}", p.id);
    let tool_id = |i: usize| format!("toolu_fake{}_{i}", p.id);
    if !p.stream {
        let mut content = Vec::new();
        if !text.is_empty() {
            content.push(json!({"type": "text", "text": text}));
        }
        for (i, c) in calls.iter().enumerate() {
            content.push(
                json!({"type": "tool_use", "id": tool_id(i), "name": c.name, "input": c.arguments}),
            );
        }
        return axum::Json(json!({
            "id": msg_id, "type": "message", "role": "assistant", "model": p.model, "content": content,
            "stop_reason": stop, "stop_sequence": null,
            "usage": {"input_tokens": p.usage.0, "output_tokens": p.usage.1}
        }))
        .into_response();
    }
    let ev = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut events = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"id": msg_id, "type": "message", "role": "assistant",
                "model": p.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": p.usage.0, "output_tokens": 1}}}),
        ),
        ev("ping", json!({"type": "ping"})),
    ];
    let mut index = 0;
    if !text.is_empty() {
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}),
        ));
        for piece in pieces(&text) {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    for (i, c) in calls.iter().enumerate() {
        events.push(ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": index,
                   "content_block": {"type": "tool_use", "id": tool_id(i), "name": c.name, "input": {}}}),
        ));
        for piece in pieces(&c.arguments.to_string()) {
            events.push(ev(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": index,
                       "delta": {"type": "input_json_delta", "partial_json": piece}}),
            ));
        }
        events.push(ev(
            "content_block_stop",
            json!({"type": "content_block_stop", "index": index}),
        ));
        index += 1;
    }
    events.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
               "usage": {"output_tokens": p.usage.1}}),
    ));
    events.push(ev("message_stop", json!({"type": "message_stop"})));
    sse(events)
}

async fn count_tokens(body: Bytes) -> Response {
    axum::Json(json!({"input_tokens": (body.len() / 4).max(1)})).into_response()
}

async fn models(State(state): State<Shared>) -> Response {
    let mut names = lock(&state).models.clone();
    if !names.iter().any(|n| n == "fake-model") {
        names.push("fake-model".into());
    }
    let data: Vec<Value> = names
        .iter()
        .map(|n| json!({"id": n, "object": "model", "type": "model", "display_name": n, "created": 0, "owned_by": "fake"}))
        .collect();
    axum::Json(json!({"object": "list", "data": data, "has_more": false})).into_response()
}

async fn openai(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let p = match plan(
        &state,
        WireFormat::OpenAi,
        "/v1/chat/completions",
        &headers,
        &body,
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    tokio::time::sleep(p.delay).await;
    let (text, calls) = match &p.reply {
        FakeReply::Error {
            status,
            retry_after,
            message,
        } => {
            return error_response(WireFormat::OpenAi, *status, retry_after.as_deref(), message);
        }
        FakeReply::Text(t) => (t.clone(), Vec::new()),
        FakeReply::ToolCalls { text, calls } => (text.clone(), calls.clone()),
    };
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let id = format!("chatcmpl-fake{}", p.id);
    let call_id = |i: usize| format!("call_fake{}_{i}", p.id);
    let usage = json!({"prompt_tokens": p.usage.0, "completion_tokens": p.usage.1, "total_tokens": p.usage.0 + p.usage.1});
    if !p.stream {
        let mut message = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
        if !calls.is_empty() {
            message["tool_calls"] = Value::Array(
                calls
                    .iter()
                    .enumerate()
                    .map(|(i, c)| {
                        json!({"id": call_id(i), "type": "function",
                               "function": {"name": c.name, "arguments": c.arguments.to_string()}})
                    })
                    .collect(),
            );
        }
        return axum::Json(json!({
            "id": id, "object": "chat.completion", "created": 0, "model": p.model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": usage
        }))
        .into_response();
    }
    let chunk = |choices: Value, usage: Value| {
        let mut c = json!({"id": id, "object": "chat.completion.chunk", "created": 0, "model": p.model, "choices": choices});
        if !usage.is_null() {
            c["usage"] = usage;
        }
        format!("data: {c}\n\n")
    };
    let mut events = vec![chunk(
        json!([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": null}]),
        Value::Null,
    )];
    for piece in if text.is_empty() {
        Vec::new()
    } else {
        pieces(&text)
    } {
        events.push(chunk(
            json!([{"index": 0, "delta": {"content": piece}, "finish_reason": null}]),
            Value::Null,
        ));
    }
    for (i, c) in calls.iter().enumerate() {
        events.push(chunk(
            json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "id": call_id(i), "type": "function",
                     "function": {"name": c.name, "arguments": ""}}]}, "finish_reason": null}]),
            Value::Null,
        ));
        for piece in pieces(&c.arguments.to_string()) {
            events.push(chunk(
                json!([{"index": 0, "delta": {"tool_calls": [{"index": i, "function": {"arguments": piece}}]}, "finish_reason": null}]),
                Value::Null,
            ));
        }
    }
    events.push(chunk(
        json!([{"index": 0, "delta": {}, "finish_reason": finish}]),
        Value::Null,
    ));
    events.push(chunk(json!([]), usage));
    events.push("data: [DONE]\n\n".to_owned());
    sse(events)
}
