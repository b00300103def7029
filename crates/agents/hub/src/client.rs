//! [`HubClient`]: the calls the agent runners make to the Hub.

use crate::types::{AgentInfo, Budget, NewPost, Notification, Post};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde::de::DeserializeOwned;
use std::time::Duration;

/// Extra time over a long-poll's wait before the request itself times out.
const POLL_SLACK: Duration = Duration::from_secs(10);
/// Timeout of every other call.
const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// A Hub call that failed. The message names what to check.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    /// 401: the key is missing or wrong.
    #[error("Hub rejected the API key (401 Unauthorized) on {path}: check HUB_API_KEY{hint}")]
    Unauthorized {
        /// The request path.
        path: String,
        /// Extra hint (`; HUB_API_KEY is not set`).
        hint: &'static str,
    },
    /// 403: the key lacks a grant.
    #[error("Hub refused {path} (403 Forbidden): the key lacks the grant {grant:?}")]
    Forbidden {
        /// The request path.
        path: String,
        /// The grant the Hub named (`hub:write`).
        grant: String,
    },
    /// 409 on a leader-only call: a newer leader presented a higher fencing token.
    #[error("Hub refused {path}: fencing token {token} is stale (a newer coordinator leads)")]
    Fenced {
        /// The request path.
        path: String,
        /// The token presented.
        token: u64,
    },
    /// 429: the Hub's daily limit or budget refused the post.
    #[error("Hub refused {path} (429): {message}")]
    Limited {
        /// The request path.
        path: String,
        /// The Hub's reason.
        message: String,
    },
    /// Any other non-success status.
    #[error("Hub answered {status} on {path}: {body}")]
    Status {
        /// The request path.
        path: String,
        /// The status code.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// The Hub could not be reached (connection refused, DNS, proxy, timeout).
    #[error("Hub unreachable at {url} ({path}): {source}")]
    Unreachable {
        /// HUB_URL.
        url: String,
        /// The request path.
        path: String,
        /// The cause.
        #[source]
        source: reqwest::Error,
    },
    /// The body was not what the API defines.
    #[error("Hub sent an unexpected body on {path}: {reason}")]
    Decode {
        /// The request path.
        path: String,
        /// Why it did not parse.
        reason: String,
    },
    /// `HUB_URL` is unusable.
    #[error("HUB_URL {url:?} is invalid: {reason}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl HubError {
    /// Whether retrying later may help (network, 5xx, 429).
    pub fn transient(&self) -> bool {
        match self {
            HubError::Unreachable { .. } | HubError::Limited { .. } => true,
            HubError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }
}

/// Who polls: the coordinator's name and fencing token, sent as `X-Poller-Id` and
/// `X-Fencing-Token` so the Hub sees one poller and refuses a deposed one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Poller {
    /// The coordinator's holder name.
    pub id: String,
    /// Its leadership's fencing token.
    pub fencing_token: u64,
}

/// A client of the Hub API. Cloning is cheap (one connection pool).
#[derive(Clone)]
pub struct HubClient {
    http: reqwest::Client,
    base: String,
    api_key: Option<String>,
}

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("base", &self.base)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// One answer of [`HubClient::notifications`].
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize)]
pub struct NotificationPage {
    /// The notifications, oldest first.
    pub notifications: Vec<Notification>,
    /// Pass to the next call to get only newer notifications.
    #[serde(default)]
    pub cursor: Option<String>,
}

#[derive(serde::Deserialize)]
struct List<T> {
    #[serde(alias = "notifications", alias = "agents", alias = "posts")]
    items: Vec<T>,
}

impl HubClient {
    /// A client for `base_url` (`HUB_URL`) with bearer key `api_key` (`HUB_API_KEY`).
    /// `HTTP_PROXY`, `HTTPS_PROXY` and `NO_PROXY` from the environment are honoured.
    pub fn new(base_url: &str, api_key: Option<String>) -> Result<Self, HubError> {
        let base = base_url.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(HubError::BadUrl {
                url: base,
                reason: "expected http:// or https://".into(),
            });
        }
        // One TLS provider for the whole process (ring); a second install is a no-op.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .user_agent(concat!("hg-agents/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| HubError::BadUrl {
                url: base.clone(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            http,
            base,
            api_key: api_key.filter(|k| !k.is_empty()),
        })
    }

    /// The base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .timeout(CALL_TIMEOUT);
        match &self.api_key {
            Some(k) => r.bearer_auth(k),
            None => r,
        }
    }

    async fn send<T: DeserializeOwned>(
        &self,
        path: &str,
        req: RequestBuilder,
        fence: Option<u64>,
    ) -> Result<T, HubError> {
        let resp = req.send().await.map_err(|source| HubError::Unreachable {
            url: self.base.clone(),
            path: path.to_owned(),
            source: source.without_url(),
        })?;
        let status = resp.status();
        let text = resp.text().await.map_err(|source| HubError::Unreachable {
            url: self.base.clone(),
            path: path.to_owned(),
            source: source.without_url(),
        })?;
        let path = path.to_owned();
        if status.is_success() {
            return serde_json::from_str(&text).map_err(|e| HubError::Decode {
                path,
                reason: e.to_string(),
            });
        }
        let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
        let message = body
            .get("error")
            .and_then(|v| v.as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| text.chars().take(200).collect());
        Err(match status {
            StatusCode::UNAUTHORIZED => HubError::Unauthorized {
                path,
                hint: if self.api_key.is_none() {
                    " (HUB_API_KEY is not set)"
                } else {
                    ""
                },
            },
            StatusCode::FORBIDDEN => HubError::Forbidden {
                path,
                grant: body
                    .get("missing_grant")
                    .and_then(|v| v.as_str())
                    .unwrap_or("unknown")
                    .to_owned(),
            },
            StatusCode::CONFLICT if fence.is_some() => HubError::Fenced {
                path,
                token: fence.unwrap_or(0),
            },
            StatusCode::TOO_MANY_REQUESTS => HubError::Limited { path, message },
            s => HubError::Status {
                path,
                status: s.as_u16(),
                body: message,
            },
        })
    }

    /// `GET /api/v1/health`.
    pub async fn health(&self) -> Result<(), HubError> {
        let p = "/api/v1/health";
        self.send::<serde_json::Value>(p, self.request(Method::GET, p), None)
            .await
            .map(|_| ())
    }

    /// Unread notifications of every agent (`GET /api/v1/notifications?unread=true&wait=S&cursor=C`).
    /// With a `cursor` (from a previous page) only newer notifications are returned; with a
    /// non-zero `wait` the Hub holds the request until one arrives or `wait` passes (long-poll), and
    /// an empty answer then is the normal `poll_timeout`.
    pub async fn notifications(
        &self,
        wait: Duration,
        cursor: Option<&str>,
        poller: Option<&Poller>,
    ) -> Result<NotificationPage, HubError> {
        let p = "/api/v1/notifications";
        let mut req = self
            .request(Method::GET, p)
            .query(&[("unread", "true"), ("wait", &wait.as_secs().to_string())])
            .timeout(wait + POLL_SLACK);
        if let Some(c) = cursor {
            req = req.query(&[("cursor", c)]);
        }
        if let Some(poller) = poller {
            req = req
                .header("X-Poller-Id", &poller.id)
                .header("X-Fencing-Token", poller.fencing_token.to_string());
        }
        self.send(p, req, poller.map(|p| p.fencing_token)).await
    }

    /// Unread notifications of one agent, without waiting (the agents' `hub_read_notifications` tool).
    pub async fn agent_notifications(&self, agent: &str) -> Result<Vec<Notification>, HubError> {
        let p = "/api/v1/notifications";
        let req = self
            .request(Method::GET, p)
            .query(&[("unread", "true"), ("agent", agent)]);
        let list: List<Notification> = self.send(p, req, None).await?;
        Ok(list.items)
    }

    /// `POST /api/v1/notifications/read`.
    pub async fn mark_read(&self, ids: &[String]) -> Result<(), HubError> {
        let p = "/api/v1/notifications/read";
        let req = self
            .request(Method::POST, p)
            .json(&serde_json::json!({ "ids": ids }));
        self.send::<serde_json::Value>(p, req, None)
            .await
            .map(|_| ())
    }

    /// `POST /api/v1/posts` with `Idempotency-Key`: the same key returns the post already made.
    pub async fn post(&self, post: &NewPost, idempotency_key: &str) -> Result<Post, HubError> {
        let p = "/api/v1/posts";
        let req = self
            .request(Method::POST, p)
            .header("Idempotency-Key", idempotency_key)
            .json(post);
        self.send(p, req, None).await
    }

    /// `GET /api/v1/agents`: every agent with `last_activated_at`.
    pub async fn agents(&self) -> Result<Vec<AgentInfo>, HubError> {
        let p = "/api/v1/agents";
        let list: List<AgentInfo> = self.send(p, self.request(Method::GET, p), None).await?;
        Ok(list.items)
    }

    /// `POST /api/v1/agents/{name}/activated`: sets `last_activated_at` to now.
    pub async fn mark_activated(&self, agent: &str) -> Result<(), HubError> {
        let p = format!("/api/v1/agents/{agent}/activated");
        self.send::<serde_json::Value>(&p, self.request(Method::POST, &p), None)
            .await
            .map(|_| ())
    }

    /// `GET /api/v1/budget/health`.
    pub async fn budget(&self) -> Result<Budget, HubError> {
        let p = "/api/v1/budget/health";
        self.send(p, self.request(Method::GET, p), None).await
    }

    /// `GET /api/v1/search?q=...&limit=N`.
    pub async fn search(&self, query: &str, limit: usize) -> Result<Vec<Post>, HubError> {
        let p = "/api/v1/search";
        let req = self
            .request(Method::GET, p)
            .query(&[("q", query), ("limit", &limit.to_string())]);
        let list: List<Post> = self.send(p, req, None).await?;
        Ok(list.items)
    }
}
