//! The admin HTTP surface every daemon serves: `GET /health`, `GET /metrics` (Prometheus text), and
//! whatever routes the daemon adds (`/api/stats`, the dashboard).

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::registry::Registry;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Called before each `/metrics` scrape, to refresh gauges computed from live state.
pub type Refresh = Arc<dyn Fn() + Send + Sync>;

/// Builds the router with `/health` and `/metrics` over `registry`, merged with `extra` routes.
pub fn router(registry: Arc<Registry>, refresh: Refresh, extra: Router) -> Router {
    Router::new()
        .route("/health", get(|| async { "OK\n" }))
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
                refresh();
                async move {
                    let mut text = String::new();
                    match prometheus_client::encoding::text::encode(&mut text, &registry) {
                        Ok(()) => (
                            StatusCode::OK,
                            [(
                                header::CONTENT_TYPE,
                                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                            )],
                            text,
                        )
                            .into_response(),
                        Err(e) => (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            format!("encoding metrics: {e}\n"),
                        )
                            .into_response(),
                    }
                }
            }),
        )
        .merge(extra)
}

/// Serves `router` on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
