//! Anthropic Messages API wire format: `POST /v1/messages`, `tool_use` / `tool_result` blocks.

use super::config::ProviderConfig;
use super::conversation::{Msg, Prompt, ToolCall, Turn, Usage};
use super::sse::Event;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The API version header every request carries.
pub(crate) const API_VERSION: &str = "2023-06-01";

pub(crate) fn url(cfg: &ProviderConfig) -> String {
    let base = cfg.base_url.trim_end_matches('/');
    let base = base.strip_suffix("/v1").unwrap_or(base);
    format!("{base}/v1/messages")
}

pub(crate) fn body(cfg: &ProviderConfig, p: &Prompt<'_>) -> Value {
    let messages: Vec<Value> = p
        .messages
        .iter()
        .map(|m| match m {
            Msg::User(text) => json!({"role": "user", "content": [{"type": "text", "text": text}]}),
            Msg::Assistant { text, calls } => {
                let mut content = Vec::new();
                if !text.is_empty() {
                    content.push(json!({"type": "text", "text": text}));
                }
                for c in calls {
                    content.push(json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.args}));
                }
                json!({"role": "assistant", "content": content})
            }
            Msg::ToolResults(results) => {
                let content: Vec<Value> = results
                    .iter()
                    .map(|(id, out)| {
                        json!({"type": "tool_result", "tool_use_id": id, "content": out.content, "is_error": out.is_error})
                    })
                    .collect();
                json!({"role": "user", "content": content})
            }
        })
        .collect();
    let mut body = json!({
        "model": cfg.model,
        "max_tokens": cfg.max_tokens,
        "messages": messages,
    });
    if !p.system.is_empty() {
        body["system"] = json!(p.system);
    }
    if !p.tools.is_empty() {
        body["tools"] = Value::Array(
            p.tools
                .iter()
                .map(|t| json!({"name": t.name, "description": t.description, "input_schema": t.input_schema}))
                .collect(),
        );
    }
    if let Some(t) = cfg.temperature {
        body["temperature"] = json!(t);
    }
    if cfg.stream {
        body["stream"] = json!(true);
    }
    body
}

fn usage(v: &Value) -> Usage {
    let n = |k: &str| v.get(k).and_then(Value::as_u64).unwrap_or(0);
    Usage {
        input_tokens: n("input_tokens")
            .saturating_add(n("cache_creation_input_tokens"))
            .saturating_add(n("cache_read_input_tokens")),
        output_tokens: n("output_tokens"),
    }
}

/// A whole (non-streamed) response.
pub(crate) fn parse(v: &Value) -> Result<Turn, String> {
    let content = v
        .get("content")
        .and_then(Value::as_array)
        .ok_or("no `content` array")?;
    let mut turn = Turn {
        usage: v.get("usage").map(usage).unwrap_or_default(),
        ..Turn::default()
    };
    for block in content {
        match block.get("type").and_then(Value::as_str) {
            Some("text") => turn
                .text
                .push_str(block.get("text").and_then(Value::as_str).unwrap_or("")),
            Some("tool_use") => turn.calls.push(tool_use(block)?),
            _ => {}
        }
    }
    Ok(turn)
}

fn tool_use(block: &Value) -> Result<ToolCall, String> {
    let id = block
        .get("id")
        .and_then(Value::as_str)
        .ok_or("tool_use block without `id`")?;
    let name = block
        .get("name")
        .and_then(Value::as_str)
        .ok_or("tool_use block without `name`")?;
    Ok(ToolCall {
        id: id.to_owned(),
        name: name.to_owned(),
        args: block.get("input").cloned().unwrap_or_else(|| json!({})),
    })
}

enum Block {
    Text(String),
    Tool {
        id: String,
        name: String,
        json: String,
    },
}

/// Accumulates a streamed response.
#[derive(Default)]
pub(crate) struct Stream {
    blocks: BTreeMap<u64, Block>,
    usage: Usage,
    done: bool,
}

impl Stream {
    /// Takes one event; `Ok(true)` once the message is complete.
    pub fn event(&mut self, ev: &Event) -> Result<bool, String> {
        if ev.data.is_empty() {
            return Ok(self.done);
        }
        let v: Value = serde_json::from_str(&ev.data)
            .map_err(|e| format!("event `{}` is not JSON: {e}", ev.event))?;
        let kind = v
            .get("type")
            .and_then(Value::as_str)
            .unwrap_or(ev.event.as_str());
        let index = v.get("index").and_then(Value::as_u64).unwrap_or(0);
        match kind {
            "message_start" => {
                if let Some(u) = v.pointer("/message/usage") {
                    self.usage.add(usage(u));
                }
            }
            "content_block_start" => {
                let b = v
                    .get("content_block")
                    .ok_or("content_block_start without `content_block`")?;
                let block = match b.get("type").and_then(Value::as_str) {
                    Some("tool_use") => {
                        let call = tool_use(b)?;
                        let json = match b.get("input") {
                            Some(Value::Object(m)) if !m.is_empty() => b["input"].to_string(),
                            _ => String::new(),
                        };
                        Block::Tool {
                            id: call.id,
                            name: call.name,
                            json,
                        }
                    }
                    _ => Block::Text(
                        b.get("text")
                            .and_then(Value::as_str)
                            .unwrap_or("")
                            .to_owned(),
                    ),
                };
                self.blocks.insert(index, block);
            }
            "content_block_delta" => {
                let d = v
                    .get("delta")
                    .ok_or("content_block_delta without `delta`")?;
                match (
                    self.blocks.get_mut(&index),
                    d.get("type").and_then(Value::as_str),
                ) {
                    (Some(Block::Text(t)), Some("text_delta")) => {
                        t.push_str(d.get("text").and_then(Value::as_str).unwrap_or(""));
                    }
                    (Some(Block::Tool { json, .. }), Some("input_json_delta")) => {
                        json.push_str(d.get("partial_json").and_then(Value::as_str).unwrap_or(""));
                    }
                    (None, _) => return Err(format!("delta for unknown content block {index}")),
                    _ => {}
                }
            }
            "message_delta" => {
                if let Some(u) = v.get("usage") {
                    let u = usage(u);
                    // message_delta carries the cumulative output count.
                    self.usage.output_tokens = u.output_tokens.max(self.usage.output_tokens);
                    if u.input_tokens > 0 && self.usage.input_tokens == 0 {
                        self.usage.input_tokens = u.input_tokens;
                    }
                }
            }
            "message_stop" => self.done = true,
            "error" => {
                let msg = v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .unwrap_or("error event");
                return Err(format!("stream error: {msg}"));
            }
            _ => {}
        }
        Ok(self.done)
    }

    pub fn finish(self) -> Result<Turn, String> {
        if !self.done {
            return Err("stream ended before `message_stop`".to_owned());
        }
        let mut turn = Turn {
            usage: self.usage,
            ..Turn::default()
        };
        for (_, b) in self.blocks {
            match b {
                Block::Text(t) => turn.text.push_str(&t),
                Block::Tool { id, name, json } => {
                    let args = if json.trim().is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json)
                            .map_err(|e| format!("tool_use `{name}` input is not JSON: {e}"))?
                    };
                    turn.calls.push(ToolCall { id, name, args });
                }
            }
        }
        Ok(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streamed_tool_use_is_assembled() {
        let mut s = Stream::default();
        let evs = [
            r#"{"type":"message_start","message":{"usage":{"input_tokens":10,"output_tokens":1}}}"#,
            r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me look"}}"#,
            r#"{"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"t1","name":"get","input":{}}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"a\":"}}"#,
            r#"{"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"1}"}}"#,
            r#"{"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":7}}"#,
            r#"{"type":"message_stop"}"#,
        ];
        for e in evs {
            s.event(&Event {
                event: String::new(),
                data: e.to_owned(),
            })
            .unwrap_or_else(|e| panic!("{e}"));
        }
        let t = s.finish().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.text, "Let me look");
        assert_eq!(
            t.calls,
            vec![ToolCall {
                id: "t1".into(),
                name: "get".into(),
                args: json!({"a": 1})
            }]
        );
        assert_eq!(
            t.usage,
            Usage {
                input_tokens: 10,
                output_tokens: 7
            }
        );
    }

    #[test]
    fn url_accepts_base_with_or_without_v1() {
        let mut c = ProviderConfig::new(super::super::ProviderKind::Anthropic, "m", "k");
        c.base_url = "http://127.0.0.1:9/".into();
        assert_eq!(url(&c), "http://127.0.0.1:9/v1/messages");
        c.base_url = "http://127.0.0.1:9/v1".into();
        assert_eq!(url(&c), "http://127.0.0.1:9/v1/messages");
    }
}
