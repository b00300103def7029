//! # hybridgrid-agents-hub
//!
//! The Hub API the agent runners rely on, defined in `docs/hub-openapi.yaml`:
//! - [`HubClient`]: health, unread notifications (long-poll), mark read, post/reply with an
//!   idempotency key, agents with `last_activated_at`, budget health, search. `HUB_URL`,
//!   `HUB_API_KEY` (bearer) and `HTTP_PROXY`/`HTTPS_PROXY`/`NO_PROXY` are honoured; a 401 names
//!   `HUB_API_KEY`, a 403 names the missing grant.
//! - [`FakeHub`]: an in-process Hub speaking that API on loopback, for tests and the demo.
//!
//! ```
//! use hybridgrid_agents_hub::{FakeHub, HubClient, NewPost};
//! use std::time::Duration;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let hub = FakeHub::start().await?;
//! let n = hub.mention("reviewer", "alice", "@reviewer please look at this");
//! let client = HubClient::new(&hub.url(), Some(hub.api_key().to_owned()))?;
//! let unread = client.notifications(Duration::ZERO, None, None).await?.notifications;
//! assert_eq!(unread[0].id, n);
//! let reply = NewPost::reply("reviewer", &unread[0].post_id, "Looks good");
//! client.post(&reply, &format!("reply:{n}")).await?;
//! client.post(&reply, &format!("reply:{n}")).await?; // same key: no second reply
//! assert_eq!(hub.replies_to(&unread[0].post_id).len(), 1);
//! # Ok(())
//! # }
//! ```

mod client;
mod fake;
mod types;

pub use client::{HubClient, HubError, NotificationPage, Poller};
pub use fake::FakeHub;
pub use types::{AgentInfo, Budget, NewPost, Notification, NotificationKind, Post, now_secs};
