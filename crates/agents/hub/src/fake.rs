//! [`FakeHub`]: the Hub API of `docs/hub-openapi.yaml`, served in process on loopback.

use crate::types::{AgentInfo, Budget, NewPost, Notification, NotificationKind, Post, now_secs};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::json;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Notify;

/// Longest long-poll the fake holds a request (whatever `wait` asks).
const MAX_WAIT: Duration = Duration::from_secs(30);

struct Data {
    grants: BTreeSet<String>,
    notifications: Vec<(u64, Notification)>,
    posts: Vec<Post>,
    idempotency: HashMap<String, String>,
    agents: BTreeMap<String, AgentInfo>,
    budget: Budget,
    polls: Vec<(String, u64)>,
    max_fence: u64,
    next_id: u64,
}

struct Shared {
    api_key: String,
    data: Mutex<Data>,
    arrived: Notify,
}

/// A fake Hub on `127.0.0.1`: notifications with long-poll, mark read, posts and replies with
/// idempotency keys, agents with `last_activated_at`, budget health and search; bearer-key auth
/// with grants (`hub:read`, `hub:write`) and fencing of pollers (`X-Fencing-Token` lower than one
/// seen before is refused with 409). Stops when dropped.
pub struct FakeHub {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl std::fmt::Debug for FakeHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeHub").field("addr", &self.addr).finish()
    }
}

impl Drop for FakeHub {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

fn err(status: StatusCode, body: serde_json::Value) -> Response {
    (status, Json(body)).into_response()
}

impl Shared {
    #[allow(clippy::result_large_err)]
    fn auth(&self, headers: &HeaderMap, grant: &str) -> Result<(), Response> {
        let presented = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if presented != Some(self.api_key.as_str()) {
            return Err(err(
                StatusCode::UNAUTHORIZED,
                json!({"error": "invalid or missing API key"}),
            ));
        }
        if !self.data.lock().grants.contains(grant) {
            return Err(err(
                StatusCode::FORBIDDEN,
                json!({"error": format!("missing grant {grant}"), "missing_grant": grant}),
            ));
        }
        Ok(())
    }

    fn id(d: &mut Data, kind: &str) -> String {
        d.next_id += 1;
        format!("{kind}-{}", d.next_id)
    }
}

#[derive(Deserialize)]
struct NotificationsQuery {
    #[serde(default)]
    unread: Option<bool>,
    #[serde(default)]
    wait: Option<u64>,
    #[serde(default)]
    agent: Option<String>,
    #[serde(default)]
    cursor: Option<u64>,
}

async fn notifications(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<NotificationsQuery>,
) -> Response {
    if let Err(r) = s.auth(&headers, "hub:read") {
        return r;
    }
    if let Some(token) = headers
        .get("x-fencing-token")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
    {
        let poller = headers
            .get("x-poller-id")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let mut d = s.data.lock();
        if token < d.max_fence {
            return err(
                StatusCode::CONFLICT,
                json!({"error": format!("fencing token {token} is older than {}", d.max_fence)}),
            );
        }
        d.max_fence = token;
        d.polls.push((poller, token));
    }
    let unread_only = q.unread.unwrap_or(false);
    let wait = Duration::from_secs(q.wait.unwrap_or(0)).min(MAX_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let arrived = s.arrived.notified();
        tokio::pin!(arrived);
        arrived.as_mut().enable();
        let (found, cursor) = {
            let d = s.data.lock();
            let found: Vec<Notification> = d
                .notifications
                .iter()
                .filter(|(seq, _)| q.cursor.is_none_or(|c| *seq > c))
                .map(|(_, n)| n)
                .filter(|n| !unread_only || !n.read)
                .filter(|n| q.agent.as_ref().is_none_or(|a| &n.agent == a))
                .cloned()
                .collect();
            let newest = d.notifications.last().map(|(seq, _)| *seq).unwrap_or(0);
            (found, newest)
        };
        if !found.is_empty() || tokio::time::Instant::now() >= deadline {
            return Json(json!({ "notifications": found, "cursor": cursor.to_string() }))
                .into_response();
        }
        let _ = tokio::time::timeout_at(deadline, arrived).await;
    }
}

#[derive(Deserialize)]
struct ReadBody {
    ids: Vec<String>,
}

async fn mark_read(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<ReadBody>,
) -> Response {
    if let Err(r) = s.auth(&headers, "hub:write") {
        return r;
    }
    let mut d = s.data.lock();
    let mut marked = 0;
    for (_, n) in d.notifications.iter_mut() {
        if body.ids.contains(&n.id) && !n.read {
            n.read = true;
            marked += 1;
        }
    }
    Json(json!({ "marked": marked })).into_response()
}

async fn create_post(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Json(body): Json<NewPost>,
) -> Response {
    if let Err(r) = s.auth(&headers, "hub:write") {
        return r;
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut d = s.data.lock();
    if !d.budget.healthy {
        let reason = d
            .budget
            .reason
            .clone()
            .unwrap_or_else(|| "over budget".into());
        return err(StatusCode::TOO_MANY_REQUESTS, json!({ "error": reason }));
    }
    if let Some(existing) = key.as_ref().and_then(|k| d.idempotency.get(k)).cloned()
        && let Some(p) = d.posts.iter().find(|p| p.id == existing)
    {
        return (StatusCode::OK, Json(p.clone())).into_response();
    }
    if let Some(parent) = &body.in_reply_to
        && !d.posts.iter().any(|p| &p.id == parent)
    {
        return err(
            StatusCode::NOT_FOUND,
            json!({"error": format!("no post {parent}")}),
        );
    }
    let post = Post {
        id: Shared::id(&mut d, "post"),
        author: body.agent,
        content: body.content,
        in_reply_to: body.in_reply_to,
        created_at: now_secs(),
    };
    if let Some(k) = key {
        d.idempotency.insert(k, post.id.clone());
    }
    d.posts.push(post.clone());
    (StatusCode::CREATED, Json(post)).into_response()
}

async fn agents(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = s.auth(&headers, "hub:read") {
        return r;
    }
    let list: Vec<AgentInfo> = s.data.lock().agents.values().cloned().collect();
    Json(json!({ "agents": list })).into_response()
}

async fn activated(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err(r) = s.auth(&headers, "hub:write") {
        return r;
    }
    let mut d = s.data.lock();
    let a = d.agents.entry(name.clone()).or_insert(AgentInfo {
        name,
        last_activated_at: None,
    });
    a.last_activated_at = Some(now_secs());
    Json(a.clone()).into_response()
}

async fn budget(State(s): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(r) = s.auth(&headers, "hub:read") {
        return r;
    }
    Json(s.data.lock().budget.clone()).into_response()
}

#[derive(Deserialize)]
struct SearchQuery {
    q: String,
    #[serde(default)]
    limit: Option<usize>,
}

async fn search(
    State(s): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<SearchQuery>,
) -> Response {
    if let Err(r) = s.auth(&headers, "hub:read") {
        return r;
    }
    let needle = q.q.to_lowercase();
    let found: Vec<Post> = s
        .data
        .lock()
        .posts
        .iter()
        .filter(|p| p.content.to_lowercase().contains(&needle))
        .take(q.limit.unwrap_or(10).min(100))
        .cloned()
        .collect();
    Json(json!({ "posts": found })).into_response()
}

impl FakeHub {
    /// Serves on a free loopback port.
    pub async fn start() -> std::io::Result<Self> {
        Self::start_on("127.0.0.1:0").await
    }

    /// Serves on `addr` (loopback only in tests).
    pub async fn start_on(addr: &str) -> std::io::Result<Self> {
        let shared = Arc::new(Shared {
            api_key: format!("hub-key-{}", uuid::Uuid::new_v4().simple()),
            data: Mutex::new(Data {
                grants: ["hub:read", "hub:write"].map(str::to_owned).into(),
                notifications: Vec::new(),
                posts: Vec::new(),
                idempotency: HashMap::new(),
                agents: BTreeMap::new(),
                budget: Budget {
                    healthy: true,
                    reason: None,
                },
                polls: Vec::new(),
                max_fence: 0,
                next_id: 0,
            }),
            arrived: Notify::new(),
        });
        let router = Router::new()
            .route(
                "/api/v1/health",
                get(|| async { Json(json!({"status": "ok"})) }),
            )
            .route("/api/v1/notifications", get(notifications))
            .route("/api/v1/notifications/read", post(mark_read))
            .route("/api/v1/posts", post(create_post))
            .route("/api/v1/agents", get(agents))
            .route("/api/v1/agents/{name}/activated", post(activated))
            .route("/api/v1/budget/health", get(budget))
            .route("/api/v1/search", get(search))
            .with_state(shared.clone());
        let listener = tokio::net::TcpListener::bind(addr).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = stopped.await;
                })
                .await;
        });
        Ok(Self {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The one API key it accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.api_key
    }

    fn notify(
        &self,
        agent: &str,
        author: &str,
        content: &str,
        kind: NotificationKind,
        parent: Option<&str>,
    ) -> String {
        let id = {
            let mut d = self.shared.data.lock();
            let post = Post {
                id: Shared::id(&mut d, "post"),
                author: author.to_owned(),
                content: content.to_owned(),
                in_reply_to: parent.map(str::to_owned),
                created_at: now_secs(),
            };
            let n = Notification {
                id: Shared::id(&mut d, "n"),
                agent: agent.to_owned(),
                kind,
                post_id: post.id.clone(),
                author: author.to_owned(),
                content: content.to_owned(),
                created_at: now_secs(),
                read: false,
            };
            d.posts.push(post);
            let id = n.id.clone();
            d.next_id += 1;
            let seq = d.next_id;
            d.notifications.push((seq, n));
            d.agents.entry(agent.to_owned()).or_insert(AgentInfo {
                name: agent.to_owned(),
                last_activated_at: Some(now_secs()),
            });
            id
        };
        self.shared.arrived.notify_waiters();
        id
    }

    /// `author` posts `content` mentioning `agent`; returns the notification id.
    pub fn mention(&self, agent: &str, author: &str, content: &str) -> String {
        self.notify(agent, author, content, NotificationKind::Mention, None)
    }

    /// `author` replies to `parent` (an agent's post); returns the notification id.
    pub fn reply_to(&self, agent: &str, parent: &str, author: &str, content: &str) -> String {
        self.notify(
            agent,
            author,
            content,
            NotificationKind::Reply,
            Some(parent),
        )
    }

    /// Registers (or updates) an agent's `last_activated_at`.
    pub fn set_agent(&self, name: &str, last_activated_at: Option<u64>) {
        self.shared.data.lock().agents.insert(
            name.to_owned(),
            AgentInfo {
                name: name.to_owned(),
                last_activated_at,
            },
        );
    }

    /// An agent's record.
    pub fn agent(&self, name: &str) -> Option<AgentInfo> {
        self.shared.data.lock().agents.get(name).cloned()
    }

    /// Every post, oldest first.
    pub fn posts(&self) -> Vec<Post> {
        self.shared.data.lock().posts.clone()
    }

    /// Replies under `post_id`.
    pub fn replies_to(&self, post_id: &str) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.in_reply_to.as_deref() == Some(post_id))
            .collect()
    }

    /// Posts written by `author`.
    pub fn posts_by(&self, author: &str) -> Vec<Post> {
        self.posts()
            .into_iter()
            .filter(|p| p.author == author)
            .collect()
    }

    /// A notification by id.
    pub fn notification(&self, id: &str) -> Option<Notification> {
        self.shared
            .data
            .lock()
            .notifications
            .iter()
            .map(|(_, n)| n)
            .find(|n| n.id == id)
            .cloned()
    }

    /// Every accepted poll that carried a fencing token: (poller id, token).
    pub fn polls(&self) -> Vec<(String, u64)> {
        self.shared.data.lock().polls.clone()
    }

    /// Distinct poller ids seen.
    pub fn pollers(&self) -> BTreeSet<String> {
        self.polls().into_iter().map(|(p, _)| p).collect()
    }

    /// Forgets the polls seen so far.
    pub fn clear_polls(&self) {
        self.shared.data.lock().polls.clear();
    }

    /// Sets the budget health; an unhealthy budget also refuses posts with 429.
    pub fn set_budget(&self, healthy: bool, reason: Option<&str>) {
        self.shared.data.lock().budget = Budget {
            healthy,
            reason: reason.map(str::to_owned),
        };
    }

    /// Removes a grant (`hub:write`) from the API key: calls needing it get 403.
    pub fn revoke_grant(&self, grant: &str) {
        self.shared.data.lock().grants.remove(grant);
    }
}
