//! Every error the API returns, as JSON a person can act on: `{"status", "error", "message"}`.
//!
//! This is the one place where failures become HTTP statuses: malformed JSON is 400, an unknown id
//! 404, a duplicate 409, a body over the limit 413, a body of the wrong shape 422, too many requests
//! 429. A 500 only ever means the server itself failed (its store, say), never bad input.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// An API error: a status, a stable machine-readable code and a message naming the culprit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable code (`not_found`, `invalid_json`, `validation_failed`, ...).
    pub code: &'static str,
    /// What is wrong and, where it helps, what to do.
    pub message: String,
    /// Seconds after which a 429 may be retried.
    pub retry_after: Option<u64>,
}

#[derive(Serialize)]
struct Body<'a> {
    status: u16,
    error: &'a str,
    message: &'a str,
}

impl ApiError {
    /// An error with `status`, `code` and `message`.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }
    /// 400: the request cannot be understood or breaks a rule (e.g. a cycle).
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }
    /// 404: an unknown id.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    /// 409: a conflict with the current state (duplicate name, run not retryable...).
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }
    /// 422: well-formed JSON of the wrong shape.
    pub fn unprocessable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "schema_mismatch", message)
    }
    /// 500: the server failed; the message says which part.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// 503: a dependency (database, NATS) is unavailable.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}: {}",
            self.status.as_u16(),
            self.code,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::warn!(status = self.status.as_u16(), code = self.code, message = %self.message, "api_error");
        }
        let mut resp = (
            self.status,
            Json(Body {
                status: self.status.as_u16(),
                error: self.code,
                message: &self.message,
            }),
        )
            .into_response();
        if let Some(secs) = self.retry_after
            && let Ok(v) = HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        resp
    }
}

/// Result of a handler.
pub type ApiResult<T> = Result<T, ApiError>;

/// JSON 404 for paths no route serves.
pub(crate) async fn no_route(uri: axum::http::Uri) -> ApiError {
    ApiError::not_found(format!(
        "no such endpoint {}; see /api/openapi.json for the routes",
        uri.path()
    ))
}

/// Turns axum's plain-text 405 into JSON.
pub(crate) async fn json_method_not_allowed(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let resp = next.run(req).await;
    if resp.status() == StatusCode::METHOD_NOT_ALLOWED {
        let allow = resp.headers().get(header::ALLOW).cloned();
        let mut e = ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            format!(
                "{method} is not allowed on {path}{}",
                allow
                    .as_ref()
                    .and_then(|a| a.to_str().ok())
                    .map(|a| format!(" (allowed: {a})"))
                    .unwrap_or_default()
            ),
        )
        .into_response();
        if let Some(a) = allow {
            e.headers_mut().insert(header::ALLOW, a);
        }
        return e;
    }
    resp
}
