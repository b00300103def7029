//! Bearer-token guard for write endpoints (`server.api_token` / `HG_FLOW_API_TOKEN`): when a token
//! is configured, every `POST`, `PUT`, `PATCH` and `DELETE` needs `Authorization: Bearer <token>`.
//! Reads stay open, so dashboards and the health probes need no secret.

use crate::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::Response;
use std::sync::Arc;

/// The configured token. Its `Debug` never shows it.
#[derive(Clone)]
pub(crate) struct Token(pub Arc<str>);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn is_write(m: &Method) -> bool {
    matches!(
        *m,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    )
}

/// Middleware: 401 unless a write carries the configured bearer token.
pub(crate) async fn require_token(
    State(token): State<Option<Token>>,
    req: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let Some(token) = token else {
        return Ok(next.run(req).await);
    };
    if !is_write(req.method()) {
        return Ok(next.run(req).await);
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        });
    match presented {
        Some(p) if constant_time_eq(p.trim().as_bytes(), token.0.as_bytes()) => {
            Ok(next.run(req).await)
        }
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "the bearer token does not match server.api_token",
        )),
        None => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "{} needs Authorization: Bearer <token> (server.api_token is set)",
                req.method()
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compare_and_redact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        let t = Token(Arc::from("s3cret"));
        assert!(!format!("{t:?}").contains("s3cret"));
        assert!(is_write(&Method::DELETE) && !is_write(&Method::GET));
    }
}
