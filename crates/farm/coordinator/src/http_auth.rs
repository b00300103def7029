//! The HTTP API's token: with `coordinator.api_token` set, `/api/stats` (and the JSON behind the
//! dashboard) needs `Authorization: Bearer <token>`; any request that is not a GET or HEAD needs
//! it whether or not `/api/stats` does, and is refused outright when no token is configured, so
//! nothing can change state over HTTP unauthenticated.

use axum::Router;
use axum::extract::Request;
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hybridgrid_transport::auth::TokenSet;
use std::sync::Arc;

/// Wraps `api` with the token check.
pub(crate) fn guard(api: Router, token: Option<String>) -> Router {
    let tokens = Arc::new(TokenSet::new(token));
    api.layer(axum::middleware::from_fn(
        move |req: Request, next: Next| {
            let tokens = tokens.clone();
            async move { check(&tokens, req, next).await }
        },
    ))
}

async fn check(tokens: &TokenSet, req: Request, next: Next) -> Response {
    let reads = matches!(*req.method(), Method::GET | Method::HEAD);
    let needs = !reads || (req.uri().path().starts_with("/api/") && !tokens.is_empty());
    if needs {
        if tokens.is_empty() {
            return (
                StatusCode::FORBIDDEN,
                "this endpoint changes state and needs coordinator.api_token, which is not configured\n",
            )
                .into_response();
        }
        let header = req
            .headers()
            .get(header::AUTHORIZATION)
            .map(|v| v.to_str().unwrap_or("<not text>"));
        if let Err(why) = tokens.check(header) {
            return (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                format!("{why}; send coordinator.api_token as Authorization: Bearer <token>\n"),
            )
                .into_response();
        }
    }
    next.run(req).await
}
