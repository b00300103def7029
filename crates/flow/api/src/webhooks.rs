//! `POST /api/webhooks/alertmanager` and `POST /api/webhooks/grafana`: every alert is matched
//! against the `alerts.rules` of the config and against workflows whose trigger is
//! `{type: alert, match: {...}}`; each match starts one run per alert fingerprint and firing
//! episode (the engine's idempotency key), so AlertManager's re-sends start nothing new.

use crate::alerts::{Alert, AlertRule, AlertState, AlertmanagerPayload, RuleOn};
use crate::error::{ApiError, ApiResult};
use crate::extract::ApiJson;
use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use hybridgrid_flow_engine::TriggerOptions;
use hybridgrid_flow_model::{TriggerSource, TriggerType, Workflow, WorkflowStatus};
use serde_json::{Value, json};

pub(crate) async fn alertmanager(
    State(s): State<AppState>,
    ApiJson(payload): ApiJson<AlertmanagerPayload>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    handle(&s, payload, "alertmanager").await
}

pub(crate) async fn grafana(
    State(s): State<AppState>,
    ApiJson(body): ApiJson<Value>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let payload = crate::alerts::parse_grafana(body).map_err(ApiError::unprocessable)?;
    handle(&s, payload, "grafana").await
}

fn targets<'a>(
    alert: &Alert,
    rules: &[AlertRule],
    workflows: &'a [Workflow],
) -> (Vec<&'a Workflow>, Vec<String>) {
    let mut out: Vec<&Workflow> = Vec::new();
    let mut errors = Vec::new();
    for rule in rules.iter().filter(|r| r.matches(alert)) {
        match workflows
            .iter()
            .find(|w| w.id == rule.workflow)
            .or_else(|| workflows.iter().find(|w| w.spec.name == rule.workflow))
        {
            Some(w) => {
                if !out.iter().any(|o| o.id == w.id) {
                    out.push(w);
                }
            }
            None => errors.push(format!(
                "alerts.rules names workflow {:?}, which does not exist",
                rule.workflow
            )),
        }
    }
    for w in workflows {
        let t = &w.spec.trigger;
        if t.kind == TriggerType::Alert && w.spec.status == WorkflowStatus::Active {
            let rule = AlertRule {
                matchers: t.matchers.clone(),
                workflow: w.id.clone(),
                on: RuleOn::Firing,
            };
            if rule.matches(alert) && !out.iter().any(|o| o.id == w.id) {
                out.push(w);
            }
        }
    }
    (out, errors)
}

async fn handle(
    s: &AppState,
    payload: AlertmanagerPayload,
    source: &'static str,
) -> ApiResult<(StatusCode, Json<Value>)> {
    s.metrics
        .webhooks
        .get_or_create(&crate::metrics::WebhookLabels {
            source: source.to_owned(),
        })
        .inc();
    let alerts = payload.alerts(source).map_err(ApiError::unprocessable)?;
    let envelope = payload.envelope(source);
    let workflows = s.engine.workflows().await?;
    let mut started = Vec::new();
    let mut duplicates = Vec::new();
    let mut errors = Vec::new();
    let mut unmatched = 0usize;
    for alert in &alerts {
        let (targets, mut errs) = targets(alert, &s.alerts.rules, &workflows);
        errors.append(&mut errs);
        if targets.is_empty() {
            unmatched += 1;
            continue;
        }
        for wf in targets {
            let key = alert.episode_key(&wf.id);
            match s
                .engine
                .trigger(
                    &wf.id,
                    alert.context(&envelope),
                    TriggerSource::Alert,
                    TriggerOptions {
                        idempotency_key: Some(key),
                    },
                )
                .await
            {
                Ok(t) => {
                    let entry = json!({"runId": t.run_id, "workflowId": wf.id, "workflow": wf.spec.name, "fingerprint": alert.fingerprint});
                    if t.duplicate {
                        duplicates.push(entry);
                    } else {
                        tracing::info!(run_id = %t.run_id, workflow = %wf.spec.name, fingerprint = %alert.fingerprint, source, "alert_triggered_run");
                        started.push(entry);
                    }
                }
                Err(e) => {
                    let api: ApiError = e.into();
                    // A store outage is worth AlertManager's retry (the key makes it safe);
                    // a workflow that cannot start (archived, draft) is reported, not retried.
                    if api.status.is_server_error() {
                        return Err(api);
                    }
                    errors.push(format!("workflow {}: {}", wf.spec.name, api.message));
                }
            }
        }
    }
    let resolved = alerts
        .iter()
        .filter(|a| a.state == AlertState::Resolved)
        .count();
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "alerts": alerts.len(),
            "resolved": resolved,
            "started": started,
            "duplicates": duplicates,
            "unmatched": unmatched,
            "errors": errors,
        })),
    ))
}
