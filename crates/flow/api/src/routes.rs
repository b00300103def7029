//! The HTTP routes: agents, workflows, runs, approvals, webhooks, health, metrics, OpenAPI, UI.
//!
//! [`ROUTES`] lists every route the router serves; a test checks it against `/api/openapi.json`
//! both ways, and another that each listed route is really routed.

use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hybridgrid_flow_engine::TriggerOptions;
use hybridgrid_flow_model::{
    AgentSpec, ApprovalStatus, DecisionRequest, Edge, TriggerSource, Workflow, WorkflowRun,
    WorkflowSpec,
};
use serde::Deserialize;
use serde_json::{Value, json};

/// Every (method, path) the router serves, in OpenAPI path syntax.
pub const ROUTES: &[(&str, &str)] = &[
    ("get", "/health"),
    ("get", "/health/db"),
    ("get", "/health/nats"),
    ("get", "/metrics"),
    ("get", "/api/openapi.json"),
    ("get", "/api/agents"),
    ("post", "/api/agents"),
    ("get", "/api/agents/{id}"),
    ("put", "/api/agents/{id}"),
    ("delete", "/api/agents/{id}"),
    ("get", "/api/workflows"),
    ("post", "/api/workflows"),
    ("get", "/api/workflows/{id}"),
    ("put", "/api/workflows/{id}"),
    ("delete", "/api/workflows/{id}"),
    ("post", "/api/workflows/{id}/trigger"),
    ("get", "/api/workflows/{id}/runs"),
    ("get", "/api/workflows/{id}/runs/{runId}"),
    ("get", "/api/workflows/{id}/runs/{runId}/agent-runs"),
    ("post", "/api/workflows/runs/{runId}/cancel"),
    ("post", "/api/workflows/runs/{runId}/retry"),
    ("get", "/api/approvals"),
    ("post", "/api/approvals/{id}/decision"),
    ("post", "/api/webhooks/alertmanager"),
    ("post", "/api/webhooks/grafana"),
];

pub(crate) const OPENAPI: &str = include_str!("openapi.json");

// ---------- health, metrics, openapi ----------

pub(crate) async fn health() -> Json<Value> {
    Json(json!({"status": "ok", "timestamp": crate::clock::now()}))
}

pub(crate) async fn health_db(State(s): State<AppState>) -> Response {
    match s.engine.health_db().await {
        Ok(()) => Json(json!({"status": "connected", "backend": s.store_kind})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "disconnected", "backend": s.store_kind, "error": e.to_string()}),
            ),
        )
            .into_response(),
    }
}

pub(crate) async fn health_nats(State(s): State<AppState>) -> Response {
    match s.bus.check().await {
        Ok(()) => Json(json!({"status": "connected", "bus": s.bus.kind()})).into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "disconnected", "bus": s.bus.kind(), "error": e})),
        )
            .into_response(),
    }
}

pub(crate) async fn metrics(State(s): State<AppState>) -> Response {
    s.refresh_gauges().await;
    match s.metrics.encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            text,
        )
            .into_response(),
        Err(e) => ApiError::internal(format!("encoding metrics: {e}")).into_response(),
    }
}

pub(crate) async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], OPENAPI).into_response()
}

// ---------- agents ----------

pub(crate) async fn list_agents(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.agents().await?)))
}

pub(crate) async fn create_agent(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let agent = s.engine.create_agent(spec).await?;
    Ok((StatusCode::CREATED, Json(json!(agent))))
}

pub(crate) async fn get_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.agent(&id).await?)))
}

pub(crate) async fn update_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<AgentSpec>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.update_agent(&id, spec).await?)))
}

pub(crate) async fn delete_agent(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    s.engine.delete_agent(&id).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- workflows ----------

/// A workflow as the API shows it: the stored definition plus `edges` covering every dependency
/// (from `dependsOn` and `edges` alike), so `jq '.edges'` always shows the DAG.
fn workflow_json(wf: &Workflow) -> Value {
    let mut v = json!(wf);
    let edges: Vec<Edge> = wf
        .spec
        .dependencies()
        .into_iter()
        .flat_map(|(to, deps)| {
            deps.into_iter().map(move |from| Edge {
                from,
                to: to.clone(),
            })
        })
        .collect();
    if let Some(obj) = v.as_object_mut() {
        obj.insert("edges".into(), json!(edges));
    }
    v
}

pub(crate) async fn list_workflows(State(s): State<AppState>) -> ApiResult<Json<Value>> {
    let wfs = s.engine.workflows().await?;
    Ok(Json(Value::Array(wfs.iter().map(workflow_json).collect())))
}

pub(crate) async fn create_workflow(
    State(s): State<AppState>,
    ApiJson(spec): ApiJson<WorkflowSpec>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let wf = s.engine.create_workflow(spec).await?;
    Ok((StatusCode::CREATED, Json(workflow_json(&wf))))
}

pub(crate) async fn get_workflow(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(workflow_json(&s.engine.workflow(&id).await?)))
}

pub(crate) async fn update_workflow(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(spec): ApiJson<WorkflowSpec>,
) -> ApiResult<Json<Value>> {
    Ok(Json(workflow_json(
        &s.engine.update_workflow(&id, spec).await?,
    )))
}

pub(crate) async fn delete_workflow(
    State(s): State<AppState>,
    Path(id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(workflow_json(&s.engine.delete_workflow(&id).await?)))
}

// ---------- runs ----------

pub(crate) async fn trigger(
    State(s): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if body.len() > s.max_body {
        return Err(crate::extract::too_large(s.max_body));
    }
    let mut idempotency_key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let context = if body.iter().all(u8::is_ascii_whitespace) {
        json!({})
    } else {
        let v: Value = crate::extract::parse_json(&body)?;
        match v {
            // `{"context": {...}, "idempotencyKey": "..."}`, or the whole body is the context.
            Value::Object(mut m)
                if m.contains_key("context")
                    && m.keys().all(|k| k == "context" || k == "idempotencyKey") =>
            {
                if let Some(Value::String(k)) = m.remove("idempotencyKey") {
                    idempotency_key.get_or_insert(k);
                }
                m.remove("context").unwrap_or(json!({}))
            }
            Value::Object(m) => Value::Object(m),
            other => {
                return Err(ApiError::unprocessable(format!(
                    "the trigger body is the run's context and must be a JSON object, not {}",
                    kind_of(&other)
                )));
            }
        }
    };
    let t = s
        .engine
        .trigger(
            &id,
            context,
            TriggerSource::Manual,
            TriggerOptions { idempotency_key },
        )
        .await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "runId": t.run_id,
            "workflowId": id,
            "duplicate": t.duplicate,
            "links": {
                "run": format!("/api/workflows/{id}/runs/{}", t.run_id),
                "agentRuns": format!("/api/workflows/{id}/runs/{}/agent-runs", t.run_id),
            }
        })),
    ))
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[derive(Deserialize)]
pub(crate) struct RunsQuery {
    limit: Option<usize>,
}

pub(crate) async fn list_runs(
    State(s): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<RunsQuery>,
) -> ApiResult<Json<Value>> {
    // A 404 for an unknown workflow, not an empty list.
    s.engine.workflow(&id).await?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(json!(s.engine.runs(&id, limit).await?)))
}

async fn run_of(s: &AppState, workflow_id: &str, run_id: &str) -> ApiResult<WorkflowRun> {
    let run = s.engine.run(run_id).await?;
    if run.workflow_id != workflow_id {
        return Err(ApiError::not_found(format!(
            "run {run_id} is not a run of workflow {workflow_id} (it belongs to {})",
            run.workflow_id
        )));
    }
    Ok(run)
}

pub(crate) async fn get_run(
    State(s): State<AppState>,
    Path((id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    let run = run_of(&s, &id, &run_id).await?;
    let agent_runs = s.engine.agent_runs(&run_id).await?;
    let mut v = json!(run);
    // The guide reads `.agentRuns[] | {name: .agent.name, duration: .durationMs}`.
    let ars: Vec<Value> = agent_runs
        .iter()
        .map(|a| {
            let mut j = json!(a);
            if let Some(o) = j.as_object_mut() {
                o.insert("agent".into(), json!({"name": a.agent, "action": a.action}));
            }
            j
        })
        .collect();
    if let Some(o) = v.as_object_mut() {
        o.insert("agentRuns".into(), Value::Array(ars));
    }
    Ok(Json(v))
}

pub(crate) async fn list_agent_runs(
    State(s): State<AppState>,
    Path((id, run_id)): Path<(String, String)>,
) -> ApiResult<Json<Value>> {
    run_of(&s, &id, &run_id).await?;
    Ok(Json(json!(s.engine.agent_runs(&run_id).await?)))
}

pub(crate) async fn cancel_run(
    State(s): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.cancel(&run_id).await?)))
}

pub(crate) async fn retry_run(
    State(s): State<AppState>,
    Path(run_id): Path<String>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let run = s.engine.retry(&run_id).await?;
    let mut v = json!(run);
    if let Some(o) = v.as_object_mut() {
        o.insert("runId".into(), json!(run.id));
    }
    Ok((StatusCode::ACCEPTED, Json(v)))
}

// ---------- approvals ----------

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ApprovalsQuery {
    status: Option<String>,
    run_id: Option<String>,
}

pub(crate) async fn list_approvals(
    State(s): State<AppState>,
    Query(q): Query<ApprovalsQuery>,
) -> ApiResult<Json<Value>> {
    let status = match q.status.as_deref().map(str::to_ascii_uppercase).as_deref() {
        None | Some("") | Some("ALL") => None,
        Some("PENDING") | Some("WAITING") => Some(ApprovalStatus::Waiting),
        Some("APPROVED") => Some(ApprovalStatus::Approved),
        Some("REJECTED") => Some(ApprovalStatus::Rejected),
        Some(other) => {
            return Err(ApiError::bad_request(
                "invalid_query",
                format!("unknown approval status {other:?}: use PENDING, APPROVED or REJECTED"),
            ));
        }
    };
    let mut list = s.engine.approvals(status).await?;
    if let Some(run) = q.run_id.filter(|r| !r.is_empty()) {
        list.retain(|a| a.run_id == run);
    }
    Ok(Json(json!(list)))
}

pub(crate) async fn decide(
    State(s): State<AppState>,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<DecisionRequest>,
) -> ApiResult<Json<Value>> {
    Ok(Json(json!(s.engine.decide(&id, req).await?)))
}
