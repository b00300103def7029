//! The Hub's own tools for agents (read notifications, search, post, reply) as a
//! [`ToolRouter`], gated by grants: without `hub:write` the write tools are hidden and refused.
//! Served over MCP (`serve_tools_http`) for coding-agent CLIs.

use crate::gate::PostGate;
use async_trait::async_trait;
use hybridgrid_executors::llm::{ToolDef, ToolError, ToolOutput, ToolRouter};
use serde_json::{Value, json};
use std::hash::{Hash, Hasher};

/// The Hub tools of one activation.
#[derive(Clone, Debug)]
pub struct HubTools {
    gate: PostGate,
    activation_id: String,
}

const READ_TOOLS: &[&str] = &["hub_read_notifications", "hub_search"];
const WRITE_TOOLS: &[&str] = &["hub_post", "hub_reply"];

impl HubTools {
    /// Tools for `gate`'s agent; posts made through them are idempotent per activation.
    pub fn new(gate: PostGate, activation_id: &str) -> Self {
        Self {
            gate,
            activation_id: activation_id.to_owned(),
        }
    }

    fn key(&self, what: &str, target: &str, content: &str) -> String {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        content.hash(&mut h);
        format!(
            "tool-{what}:{}:{target}:{:016x}",
            self.activation_id,
            h.finish()
        )
    }
}

fn def(name: &str, description: &str, schema: Value) -> ToolDef {
    ToolDef {
        name: name.to_owned(),
        description: description.to_owned(),
        input_schema: schema,
    }
}

fn str_arg(tool: &str, args: &Value, field: &str) -> Result<String, ToolError> {
    args.get(field)
        .and_then(|v| v.as_str())
        .map(str::to_owned)
        .ok_or_else(|| ToolError::InvalidArguments {
            name: tool.to_owned(),
            reason: format!("`{field}` (a string) is required"),
        })
}

#[async_trait]
impl ToolRouter for HubTools {
    fn tools(&self) -> Vec<ToolDef> {
        let mut v = Vec::new();
        if self.gate.can_read() {
            v.push(def(
                "hub_read_notifications",
                "Your unread Hub notifications (mentions, replies).",
                json!({"type": "object", "properties": {}}),
            ));
            v.push(def(
                "hub_search",
                "Search Hub posts by text.",
                json!({"type": "object", "properties": {"query": {"type": "string"}, "limit": {"type": "integer"}}, "required": ["query"]}),
            ));
        }
        if self.gate.can_write() {
            v.push(def(
                "hub_post",
                "Create a new top-level Hub post (if your agent may create posts).",
                json!({"type": "object", "properties": {"content": {"type": "string"}}, "required": ["content"]}),
            ));
            v.push(def(
                "hub_reply",
                "Reply under a Hub post.",
                json!({"type": "object", "properties": {"post_id": {"type": "string"}, "content": {"type": "string"}}, "required": ["post_id", "content"]}),
            ));
        }
        v
    }

    async fn call(&self, name: &str, args: Value) -> Result<ToolOutput, ToolError> {
        let refused = |grant: &str| ToolError::Refused {
            name: name.to_owned(),
            reason: format!("agent {:?} lacks the grant {grant}", self.gate.agent()),
        };
        if READ_TOOLS.contains(&name) && !self.gate.can_read() {
            return Err(refused("hub:read"));
        }
        if WRITE_TOOLS.contains(&name) && !self.gate.can_write() {
            return Err(refused("hub:write"));
        }
        let failed = |e: crate::gate::GateError| {
            if e.is_refusal() {
                ToolError::Refused {
                    name: name.to_owned(),
                    reason: e.to_string(),
                }
            } else {
                ToolError::Failed {
                    name: name.to_owned(),
                    reason: e.to_string(),
                }
            }
        };
        let out = match name {
            "hub_read_notifications" => self.gate.notifications().await.map_err(failed)?,
            "hub_search" => {
                let q = str_arg(name, &args, "query")?;
                let limit = args
                    .get("limit")
                    .and_then(|v| v.as_u64())
                    .map_or(10, |l| l.min(50) as usize);
                self.gate.search(&q, limit).await.map_err(failed)?
            }
            "hub_post" => {
                let content = str_arg(name, &args, "content")?;
                let key = self.key("post", "", &content);
                serde_json::to_value(self.gate.post(&content, &key).await.map_err(failed)?)
                    .unwrap_or_default()
            }
            "hub_reply" => {
                let post_id = str_arg(name, &args, "post_id")?;
                let content = str_arg(name, &args, "content")?;
                let key = self.key("reply", &post_id, &content);
                serde_json::to_value(
                    self.gate
                        .reply(&post_id, &content, &key)
                        .await
                        .map_err(failed)?,
                )
                .unwrap_or_default()
            }
            other => {
                return Err(ToolError::Unknown {
                    name: other.to_owned(),
                });
            }
        };
        Ok(ToolOutput::text(out.to_string()))
    }
}
