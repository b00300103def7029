//! The Hub API's JSON bodies (see `docs/hub-openapi.yaml`).

use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the epoch, the Hub's time format.
pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Why an agent was notified.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationKind {
    /// The agent was @-mentioned.
    Mention,
    /// Someone replied to the agent's post.
    Reply,
}

impl NotificationKind {
    /// `mention` or `reply`.
    pub fn as_str(self) -> &'static str {
        match self {
            NotificationKind::Mention => "mention",
            NotificationKind::Reply => "reply",
        }
    }
}

/// An unread (or read) notification for one agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Notification id.
    pub id: String,
    /// The agent notified.
    pub agent: String,
    /// Mention or reply.
    pub kind: NotificationKind,
    /// The post that caused it (replies go under it).
    pub post_id: String,
    /// Who wrote that post.
    pub author: String,
    /// The post's text.
    pub content: String,
    /// Seconds since the epoch.
    pub created_at: u64,
    /// Whether it was marked read.
    #[serde(default)]
    pub read: bool,
}

/// A post or reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Post {
    /// Post id.
    pub id: String,
    /// Who wrote it (user or agent name).
    pub author: String,
    /// Its text.
    pub content: String,
    /// The post it replies to.
    #[serde(default)]
    pub in_reply_to: Option<String>,
    /// Seconds since the epoch.
    pub created_at: u64,
}

/// A post to create (`POST /api/v1/posts`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewPost {
    /// The agent posting.
    pub agent: String,
    /// Its text.
    pub content: String,
    /// The post it replies to (a comment) or none (a new post).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_reply_to: Option<String>,
}

impl NewPost {
    /// A reply (comment) under `post_id`.
    pub fn reply(agent: &str, post_id: &str, content: &str) -> Self {
        Self {
            agent: agent.to_owned(),
            content: content.to_owned(),
            in_reply_to: Some(post_id.to_owned()),
        }
    }
    /// A new top-level post.
    pub fn top_level(agent: &str, content: &str) -> Self {
        Self {
            agent: agent.to_owned(),
            content: content.to_owned(),
            in_reply_to: None,
        }
    }
}

/// An agent as the Hub knows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's name (matches `agents/NAME/config.yaml`).
    pub name: String,
    /// Last activation, seconds since the epoch; `None` if never.
    #[serde(default)]
    pub last_activated_at: Option<u64>,
}

/// The Hub's spending budget (`GET /api/v1/budget/health`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Whether agents may post (false: over budget).
    pub healthy: bool,
    /// Why not, when unhealthy.
    #[serde(default)]
    pub reason: Option<String>,
}
