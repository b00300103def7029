//! The admin HTTP surface of every `hg-agents` role (`:9090`): `GET /health` (JSON, given by the
//! role), `GET /metrics` (Prometheus text from [`Metrics`]), plus the role's own routes.

use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Label: a priority lane of a task type's queue.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// `INBOX` or `DISCOVERY`.
    pub task_type: String,
    /// `high`, `normal`, `low`.
    pub priority: String,
}

/// Label: an activation outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    /// `replied`, `posted`, `skipped`, `max_iterations`, `repeated_tool_call`, `failed`,
    /// `timeout`, `cancelled`.
    pub outcome: String,
}

/// Label: token direction.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    /// `input` or `output`.
    pub direction: String,
}

/// Every metric of the agent roles (each role updates its own).
#[derive(Clone)]
pub struct Metrics {
    /// `hg_agents_queue_depth{task_type,priority}`: ready items.
    pub queue_depth: Family<QueueLabels, Gauge>,
    /// `hg_agents_is_leader`: 1 while this coordinator leads.
    pub is_leader: Gauge,
    /// `hg_agents_agents_in_backoff`.
    pub backoffs: Gauge,
    /// `hg_agents_enqueued_total`: new work items.
    pub enqueued: Counter,
    /// `hg_agents_polls_total`.
    pub polls: Counter,
    /// `hg_agents_activations_total{outcome}`.
    pub activations: Family<OutcomeLabels, Counter>,
    /// `hg_agents_activations_running`.
    pub running: Gauge,
    /// `hg_agents_activation_duration_seconds`.
    pub duration: Histogram,
    /// `hg_agents_tokens_total{direction}`.
    pub tokens: Family<TokenLabels, Counter>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new() -> (Self, Registry) {
        let mut r = Registry::with_prefix("hg_agents");
        let m = Metrics {
            queue_depth: Family::default(),
            is_leader: Gauge::default(),
            backoffs: Gauge::default(),
            enqueued: Counter::default(),
            polls: Counter::default(),
            activations: Family::default(),
            running: Gauge::default(),
            duration: Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 30.0, 120.0, 600.0]),
            tokens: Family::default(),
        };
        r.register(
            "queue_depth",
            "Ready work items per task type and priority",
            m.queue_depth.clone(),
        );
        r.register(
            "is_leader",
            "1 while this coordinator is the leader",
            m.is_leader.clone(),
        );
        r.register(
            "agents_in_backoff",
            "Agents currently backed off",
            m.backoffs.clone(),
        );
        r.register("enqueued", "Work items enqueued", m.enqueued.clone());
        r.register("polls", "Hub polls made", m.polls.clone());
        r.register(
            "activations",
            "Finished activations by outcome",
            m.activations.clone(),
        );
        r.register(
            "activations_running",
            "Activations running now",
            m.running.clone(),
        );
        r.register(
            "activation_duration_seconds",
            "Activation durations",
            m.duration.clone(),
        );
        r.register("tokens", "LLM tokens used", m.tokens.clone());
        (m, r)
    }

    /// Counts one finished activation.
    pub fn outcome(&self, outcome: &str) {
        self.activations
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Produces the `/health` body.
pub type HealthFn =
    Arc<dyn Fn() -> Pin<Box<dyn Future<Output = serde_json::Value> + Send>> + Send + Sync>;

/// `/health` and `/metrics`, merged with `extra`.
pub fn router(registry: Arc<Registry>, health: HealthFn, extra: Router) -> Router {
    Router::new()
        .route(
            "/health",
            get(move || {
                let health = health.clone();
                async move { axum::Json(health().await) }
            }),
        )
        .route(
            "/metrics",
            get(move || {
                let registry = registry.clone();
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
                        Err(e) => {
                            (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response()
                        }
                    }
                }
            }),
        )
        .merge(extra)
}

/// Binds `addr` and serves `router` until `shutdown` resolves; returns the bound address.
pub async fn serve(
    addr: &str,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("binding admin address {addr}: {e}")))?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::error!(error = %e, "admin_server_failed");
        }
    });
    Ok(local)
}

/// Operations every role serves: `GET /api/v1/activations`, `POST /api/v1/activations/{id}/cancel`,
/// `GET /api/v1/backoffs`, `POST /api/v1/agents/{name}/clear-backoff`.
pub fn ops_routes(state: Arc<dyn crate::AgentState>) -> Router {
    use axum::extract::Path;
    use axum::routing::post;
    let s1 = state.clone();
    let s2 = state.clone();
    let s3 = state.clone();
    let failed = |e: crate::StateError| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({ "error": e.to_string() })),
        )
            .into_response()
    };
    Router::new()
        .route(
            "/api/v1/activations",
            get(move || {
                let s = s1.clone();
                async move {
                    match s.activations().await {
                        Ok(a) => axum::Json(serde_json::json!({ "activations": a })).into_response(),
                        Err(e) => failed(e),
                    }
                }
            }),
        )
        .route(
            "/api/v1/activations/{id}/cancel",
            post(move |Path(id): Path<String>| {
                let s = s2.clone();
                async move {
                    match s.request_cancel(&id).await {
                        Ok(true) => axum::Json(serde_json::json!({ "cancel_requested": id })).into_response(),
                        Ok(false) => (
                            StatusCode::NOT_FOUND,
                            axum::Json(serde_json::json!({ "error": format!("no running activation {id}") })),
                        )
                            .into_response(),
                        Err(e) => failed(e),
                    }
                }
            }),
        )
        .route(
            "/api/v1/backoffs",
            get(move || {
                let s = s3.clone();
                async move {
                    match s.backoffs().await {
                        Ok(b) => {
                            let list: Vec<_> = b
                                .into_iter()
                                .map(|(agent, e)| serde_json::json!({ "agent": agent, "failures": e.failures, "until_ms": e.until_ms, "active": e.active() }))
                                .collect();
                            axum::Json(serde_json::json!({ "backoffs": list })).into_response()
                        }
                        Err(e) => failed(e),
                    }
                }
            }),
        )
        .route(
            "/api/v1/agents/{name}/clear-backoff",
            post(move |Path(name): Path<String>| {
                let s = state.clone();
                async move {
                    match s.clear_backoff(&name).await {
                        Ok(had) => axum::Json(serde_json::json!({ "agent": name, "cleared": had })).into_response(),
                        Err(e) => failed(e),
                    }
                }
            }),
        )
}
