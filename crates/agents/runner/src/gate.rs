//! [`PostGate`]: every Hub call an agent makes, gated by its grants, its daily limits and the
//! Hub's budget health. Used for the final answer and for the agent's Hub tools alike.

use hybridgrid_agents_defs::AgentDefinition;
use hybridgrid_agents_hub::{HubClient, HubError, NewPost, Post};
use hybridgrid_agents_protocol::AgentState;
use std::sync::Arc;

/// Why a Hub call was not made or failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// The agent lacks the grant.
    #[error("agent {agent:?} lacks the grant {grant:?} needed for {action}")]
    Grant {
        /// The agent.
        agent: String,
        /// The grant (`hub:write`).
        grant: &'static str,
        /// What it tried.
        action: &'static str,
    },
    /// A daily limit is reached.
    #[error(
        "agent {agent:?} reached its daily limit of {limit} {kind} (behavior.max_daily_{kind})"
    )]
    DailyLimit {
        /// The agent.
        agent: String,
        /// `posts` or `comments`.
        kind: &'static str,
        /// The limit.
        limit: u32,
    },
    /// `behavior.can_create_posts` is false.
    #[error("agent {agent:?} may not create posts (behavior.can_create_posts is false)")]
    PostsDisabled {
        /// The agent.
        agent: String,
    },
    /// The Hub's budget is unhealthy.
    #[error("Hub budget is unhealthy, not posting: {reason}")]
    Budget {
        /// The Hub's reason.
        reason: String,
    },
    /// The Hub failed.
    #[error(transparent)]
    Hub(#[from] HubError),
    /// The state backend failed.
    #[error(transparent)]
    State(#[from] hybridgrid_agents_protocol::StateError),
}

impl GateError {
    /// Whether this is a policy refusal (not a failure of the agent or the system).
    pub fn is_refusal(&self) -> bool {
        matches!(
            self,
            GateError::Grant { .. }
                | GateError::DailyLimit { .. }
                | GateError::PostsDisabled { .. }
                | GateError::Budget { .. }
        )
    }
}

/// The Hub as one agent may use it.
#[derive(Clone)]
pub struct PostGate {
    hub: HubClient,
    state: Arc<dyn AgentState>,
    def: Arc<AgentDefinition>,
}

impl std::fmt::Debug for PostGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostGate")
            .field("agent", &self.def.name)
            .finish_non_exhaustive()
    }
}

impl PostGate {
    /// The gate for `def`.
    pub fn new(hub: HubClient, state: Arc<dyn AgentState>, def: Arc<AgentDefinition>) -> Self {
        Self { hub, state, def }
    }

    /// The agent.
    pub fn agent(&self) -> &str {
        &self.def.name
    }

    /// Whether the agent may read the Hub.
    pub fn can_read(&self) -> bool {
        self.def.has_grant("hub:read")
    }

    /// Whether the agent may write to the Hub.
    pub fn can_write(&self) -> bool {
        self.def.has_grant("hub:write")
    }

    fn need(&self, grant: &'static str, action: &'static str) -> Result<(), GateError> {
        if self.def.has_grant(grant) {
            Ok(())
        } else {
            Err(GateError::Grant {
                agent: self.def.name.clone(),
                grant,
                action,
            })
        }
    }

    async fn check_budget(&self) -> Result<(), GateError> {
        let b = self.hub.budget().await?;
        if b.healthy {
            Ok(())
        } else {
            Err(GateError::Budget {
                reason: b.reason.unwrap_or_else(|| "no reason given".into()),
            })
        }
    }

    async fn check_daily(&self, kind: &'static str, limit: u32) -> Result<(), GateError> {
        if self.state.daily_count(&self.def.name, kind).await? >= u64::from(limit) {
            return Err(GateError::DailyLimit {
                agent: self.def.name.clone(),
                kind,
                limit,
            });
        }
        Ok(())
    }

    /// Replies under `post_id`, once per `idempotency_key`.
    pub async fn reply(
        &self,
        post_id: &str,
        content: &str,
        idempotency_key: &str,
    ) -> Result<Post, GateError> {
        self.need("hub:write", "replying")?;
        self.check_daily("comments", self.def.behavior.max_daily_comments)
            .await?;
        self.check_budget().await?;
        let post = self
            .hub
            .post(
                &NewPost::reply(&self.def.name, post_id, content),
                idempotency_key,
            )
            .await?;
        self.state.daily_incr(&self.def.name, "comments").await?;
        Ok(post)
    }

    /// Creates a top-level post, once per `idempotency_key`.
    pub async fn post(&self, content: &str, idempotency_key: &str) -> Result<Post, GateError> {
        self.need("hub:write", "posting")?;
        if !self.def.behavior.can_create_posts {
            return Err(GateError::PostsDisabled {
                agent: self.def.name.clone(),
            });
        }
        self.check_daily("posts", self.def.behavior.max_daily_posts)
            .await?;
        self.check_budget().await?;
        let post = self
            .hub
            .post(
                &NewPost::top_level(&self.def.name, content),
                idempotency_key,
            )
            .await?;
        self.state.daily_incr(&self.def.name, "posts").await?;
        Ok(post)
    }

    /// The agent's unread notifications.
    pub async fn notifications(&self) -> Result<serde_json::Value, GateError> {
        self.need("hub:read", "reading notifications")?;
        let n = self.hub.agent_notifications(&self.def.name).await?;
        Ok(serde_json::to_value(n).unwrap_or_default())
    }

    /// Searches posts.
    pub async fn search(&self, query: &str, limit: usize) -> Result<serde_json::Value, GateError> {
        self.need("hub:read", "searching")?;
        let p = self.hub.search(query, limit).await?;
        Ok(serde_json::to_value(p).unwrap_or_default())
    }

    /// Sets the agent's `last_activated_at` (after DISCOVERY).
    pub(crate) async fn mark_activated(&self) -> Result<(), HubError> {
        self.hub.mark_activated(&self.def.name).await
    }
}
