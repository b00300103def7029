//! OpenAI-compatible chat completions wire format: `POST /chat/completions`, `tool_calls` /
//! `role: "tool"` messages.

use super::config::ProviderConfig;
use super::conversation::{Msg, Prompt, ToolCall, Turn, Usage};
use super::sse::Event;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub(crate) fn url(cfg: &ProviderConfig) -> String {
    format!("{}/chat/completions", cfg.base_url.trim_end_matches('/'))
}

pub(crate) fn body(cfg: &ProviderConfig, p: &Prompt<'_>) -> Value {
    let mut messages = Vec::with_capacity(p.messages.len() + 1);
    if !p.system.is_empty() {
        messages.push(json!({"role": "system", "content": p.system}));
    }
    for m in p.messages {
        match m {
            Msg::User(text) => messages.push(json!({"role": "user", "content": text})),
            Msg::Assistant { text, calls } => {
                let mut msg = json!({"role": "assistant", "content": if text.is_empty() { Value::Null } else { json!(text) }});
                if !calls.is_empty() {
                    msg["tool_calls"] = Value::Array(
                        calls
                            .iter()
                            .map(|c| {
                                json!({"id": c.id, "type": "function",
                                       "function": {"name": c.name, "arguments": c.args.to_string()}})
                            })
                            .collect(),
                    );
                }
                messages.push(msg);
            }
            Msg::ToolResults(results) => {
                for (id, out) in results {
                    let content = if out.is_error {
                        format!("Error: {}", out.content)
                    } else {
                        out.content.clone()
                    };
                    messages.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                }
            }
        }
    }
    let mut body = json!({"model": cfg.model, "messages": messages, "max_tokens": cfg.max_tokens});
    if !p.tools.is_empty() {
        body["tools"] = Value::Array(
            p.tools
                .iter()
                .map(|t| {
                    json!({"type": "function",
                           "function": {"name": t.name, "description": t.description, "parameters": t.input_schema}})
                })
                .collect(),
        );
    }
    if let Some(t) = cfg.temperature {
        body["temperature"] = json!(t);
    }
    if cfg.stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn usage(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("prompt_tokens"),
        output_tokens: n("completion_tokens"),
    }
}

fn parse_args(name: &str, raw: &str) -> Result<Value, String> {
    if raw.trim().is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_str(raw)
        .map_err(|e| format!("arguments of tool call `{name}` are not JSON: {e}"))
}

/// A whole (non-streamed) response.
pub(crate) fn parse(v: &Value) -> Result<Turn, String> {
    let msg = v
        .pointer("/choices/0/message")
        .ok_or("no `choices[0].message`")?;
    let mut turn = Turn {
        text: msg
            .get("content")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned(),
        usage: v.get("usage").map(usage).unwrap_or_default(),
        ..Turn::default()
    };
    for c in msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .ok_or("tool call without `id`")?;
        let name = c
            .pointer("/function/name")
            .and_then(Value::as_str)
            .ok_or("tool call without `function.name`")?;
        let raw = c
            .pointer("/function/arguments")
            .and_then(Value::as_str)
            .unwrap_or("");
        turn.calls.push(ToolCall {
            id: id.to_owned(),
            name: name.to_owned(),
            args: parse_args(name, raw)?,
        });
    }
    Ok(turn)
}

#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    args: String,
}

/// Accumulates a streamed response.
#[derive(Default)]
pub(crate) struct Stream {
    text: String,
    calls: BTreeMap<u64, PartialCall>,
    usage: Usage,
    finished: bool,
    done: bool,
}

impl Stream {
    /// Takes one event; `Ok(true)` at `data: [DONE]`.
    pub fn event(&mut self, ev: &Event) -> Result<bool, String> {
        let data = ev.data.trim();
        if data.is_empty() {
            return Ok(self.done);
        }
        if data == "[DONE]" {
            self.done = true;
            return Ok(true);
        }
        let v: Value =
            serde_json::from_str(data).map_err(|e| format!("stream chunk is not JSON: {e}"))?;
        if let Some(msg) = v.pointer("/error/message").and_then(Value::as_str) {
            return Err(format!("stream error: {msg}"));
        }
        if let Some(u) = v.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage(u);
        }
        for choice in v
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if choice.get("finish_reason").is_some_and(|f| !f.is_null()) {
                self.finished = true;
            }
            let Some(delta) = choice.get("delta") else {
                continue;
            };
            if let Some(t) = delta.get("content").and_then(Value::as_str) {
                self.text.push_str(t);
            }
            for c in delta
                .get("tool_calls")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
                let p = self.calls.entry(index).or_default();
                if let Some(id) = c.get("id").and_then(Value::as_str) {
                    p.id = id.to_owned();
                }
                if let Some(n) = c.pointer("/function/name").and_then(Value::as_str) {
                    p.name.push_str(n);
                }
                if let Some(a) = c.pointer("/function/arguments").and_then(Value::as_str) {
                    p.args.push_str(a);
                }
            }
        }
        Ok(false)
    }

    pub fn finish(self) -> Result<Turn, String> {
        if !self.done && !self.finished {
            return Err("stream ended before a `finish_reason` or `[DONE]`".to_owned());
        }
        let mut turn = Turn {
            text: self.text,
            usage: self.usage,
            ..Turn::default()
        };
        for (i, p) in self.calls {
            if p.name.is_empty() {
                return Err(format!("streamed tool call {i} has no name"));
            }
            let id = if p.id.is_empty() {
                format!("call_{i}")
            } else {
                p.id
            };
            turn.calls.push(ToolCall {
                args: parse_args(&p.name, &p.args)?,
                id,
                name: p.name,
            });
        }
        Ok(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_tool_calls_are_assembled() {
        let mut s = Stream::default();
        for d in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":"hi "}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"c1","type":"function","function":{"name":"get","arguments":"{\"a\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":2}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":5,"completion_tokens":3}}"#,
            "[DONE]",
        ] {
            s.event(&Event {
                event: String::new(),
                data: d.to_owned(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let t = s.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.text, "hi ");
        assert_eq!(
            t.calls,
            vec![ToolCall {
                id: "c1".into(),
                name: "get".into(),
                args: json!({"a": 2})
            }]
        );
        assert_eq!(
            t.usage,
            Usage {
                input_tokens: 5,
                output_tokens: 3
            }
        );
    }
}
