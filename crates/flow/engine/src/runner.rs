//! One claimed step: approval, inputs, schema checks, the agent, its output, the completion.

use crate::FlowChange;
use crate::core::Core;
use crate::executor::AgentCall;
use crate::plan::Plan;
use hybridgrid_core::ids::RunId;
use hybridgrid_core::store::{RunStatus, Step, StoreError};
use hybridgrid_core::store_flow::{PHASE_DECIDED, StepCompletion, StepOutcome};
use hybridgrid_flow_model::template::{self, Scope};
use hybridgrid_flow_model::time::{parse_rfc3339, rfc3339};
use hybridgrid_flow_model::{
    Approval, ApprovalStatus, FlowEventKind, FlowRunStatus, Node, NodeStatus, RiskLevel,
};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tracing::Instrument;

/// Longest backoff between attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why an attempt failed, and whether another attempt could help.
struct Failure {
    reason: String,
    retryable: bool,
}

pub(crate) async fn run_step(core: Arc<Core>, step: Step) {
    let plan = core.plan(step.run_id.as_str()).await;
    let parent = match &plan {
        Ok(p) => p.span.clone(),
        Err(_) => tracing::Span::none(),
    };
    let span = tracing::info_span!(parent: &parent, "agent.execute", run_id = %step.run_id, node = %step.name, attempt = step.attempt);
    async move {
        if let Err(e) = run_step_inner(&core, &step, plan).await {
            match e {
                StoreError::Stale { detail, .. } => {
                    tracing::info!(%detail, "step_stale: another attempt holds the step; result dropped")
                }
                other => tracing::warn!(error = %other, "step_store_error: the lease will expire and the step run again"),
            }
        }
    }
    .instrument(span)
    .await
}

async fn run_step_inner(
    core: &Arc<Core>,
    step: &Step,
    plan: Result<Arc<Plan>, crate::FlowError>,
) -> Result<(), StoreError> {
    let run_id = step.run_id.to_string();
    let plan = match plan {
        Ok(p) => p,
        Err(e) => {
            let reason = format!("cannot load the run's definition: {e}");
            return complete(core, step, None, fail_run(step, reason), None, None).await;
        }
    };
    let Some(node) = plan.pinned.definition.node(&step.name).cloned() else {
        let reason = format!("node {:?} is not in the pinned definition", step.name);
        return complete(core, step, Some(&plan), fail_run(step, reason), None, None).await;
    };
    let agent = plan.agents.get(&node.agent).cloned();
    let needs_approval = node.approval_required
        || agent
            .as_ref()
            .is_some_and(|a| a.risk_level == RiskLevel::ApprovalRequired);

    // Inputs first: an approval shows what the step will get.
    let input = match resolve_inputs(core, &plan, &node).await {
        Ok(i) => i,
        Err(reason) => {
            let outcome = failed(&plan, &node, step, reason, false);
            return complete(core, step, Some(&plan), outcome, None, None).await;
        }
    };

    if needs_approval && step.phase.as_deref() != Some(PHASE_DECIDED) {
        return park(core, step, &plan, &node, input).await;
    }
    if let Some(a) = step
        .approval
        .as_ref()
        .and_then(|a| serde_json::from_value::<Approval>(a.clone()).ok())
        && a.status == ApprovalStatus::Rejected
    {
        let reason = format!(
            "approval rejected by {}{}",
            a.decided_by.as_deref().unwrap_or("?"),
            a.notes
                .as_deref()
                .map(|n| format!(": {n}"))
                .unwrap_or_default()
        );
        let outcome = failed(&plan, &node, step, reason, false);
        return complete(core, step, Some(&plan), outcome, None, None).await;
    }

    let Some(agent) = agent else {
        let reason = format!("agent {:?} is not in the pinned definition", node.agent);
        let outcome = failed(&plan, &node, step, reason, false);
        return complete(core, step, Some(&plan), outcome, None, None).await;
    };
    if let Err(problems) = check(&plan, &node, &input, false) {
        let reason = format!(
            "input does not match the input schema of {}/{}: {problems}",
            node.agent, node.action
        );
        let detail = serde_json::json!({"input": input});
        let outcome = failed(&plan, &node, step, reason, false);
        return complete(core, step, Some(&plan), outcome, Some(detail), None).await;
    }
    let Some(executor) = core.executors.get(agent.kind).cloned() else {
        let reason = format!("no executor for {} agents is configured", agent.kind);
        let outcome = failed(&plan, &node, step, reason, false);
        return complete(core, step, Some(&plan), outcome, None, None).await;
    };

    let timeout = node
        .timeout
        .map(|t| *t)
        .unwrap_or(*core.config.node_timeout);
    let call = AgentCall {
        run_id: run_id.clone(),
        node_id: node.id.clone(),
        attempt: step.attempt,
        agent: agent.clone(),
        action: node.action.clone(),
        input: input.clone(),
        timeout,
        max_stream_bytes: core.config.max_stream_bytes,
    };
    let cancel = core.run_token(&run_id);
    let started = Instant::now();
    tracing::info!(agent = %agent.name, kind = %agent.kind, "agent_started");
    // The executor enforces the timeout; the outer bound only guards against one that does not.
    let result = tokio::time::timeout(
        timeout + Duration::from_secs(10),
        executor.run(call, cancel.clone()),
    )
    .await;
    let elapsed = started.elapsed();
    if cancel.is_cancelled() {
        // Cancelled or shutting down: the store already says what happened, or the lease lapses.
        return Ok(());
    }
    let max = core.config.max_stream_bytes;
    let mut detail = serde_json::json!({"input": input, "durationMs": elapsed.as_millis() as u64});
    let outcome: Result<serde_json::Value, Failure> = match result {
        Err(_) => Err(Failure {
            reason: format!("timed out after {timeout:?} (executor did not stop it)"),
            retryable: true,
        }),
        Ok(Err(e)) => Err(Failure {
            reason: match e {
                hybridgrid_core::ExecError::DeadlineExceeded { after } => {
                    format!("timed out after {after:?}")
                }
                other => format!("agent could not run: {other}"),
            },
            retryable: true,
        }),
        Ok(Ok(out)) => {
            let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            detail["stdout"] = serde_json::Value::String(bounded(&stdout, max));
            detail["stderr"] = serde_json::Value::String(bounded(&stderr, max));
            detail["exitCode"] = out.exit_code.into();
            detail["truncated"] = out.truncated.into();
            if out.exit_code != 0 {
                Err(Failure {
                    reason: format!(
                        "exited with code {}{}",
                        out.exit_code,
                        last_line(&stderr)
                            .map(|l| format!(": {l}"))
                            .unwrap_or_default()
                    ),
                    retryable: true,
                })
            } else {
                match serde_json::from_str::<serde_json::Value>(stdout.trim()) {
                    Err(e) => Err(Failure {
                        reason: format!(
                            "invalid output: stdout is not exactly one JSON document ({e})"
                        ),
                        retryable: true,
                    }),
                    Ok(doc) => match check(&plan, &node, &doc, true) {
                        Ok(()) => Ok(doc),
                        Err(problems) => Err(Failure {
                            reason: format!(
                                "output does not match the output schema of {}/{}: {problems}",
                                node.agent, node.action
                            ),
                            retryable: true,
                        }),
                    },
                }
            }
        }
    };
    let (outcome, status) = match outcome {
        Ok(doc) => {
            plan.outputs.lock().insert(node.id.clone(), doc.clone());
            let release = plan
                .dag
                .children(&node.id)
                .into_iter()
                .map(str::to_owned)
                .collect();
            (
                StepOutcome::Done {
                    status: RunStatus::Succeeded,
                    output: Some(doc),
                    error: None,
                    release,
                },
                NodeStatus::Succeeded,
            )
        }
        Err(f) => {
            tracing::info!(reason = %f.reason, "agent_failed");
            (
                failed(&plan, &node, step, f.reason, f.retryable),
                NodeStatus::Failed,
            )
        }
    };
    core.agent_finished(&run_id, &node.id, &agent.name, status, elapsed);
    complete(core, step, Some(&plan), outcome, Some(detail), Some(&node)).await
}

/// The outcome of a failed attempt: retry, fail for good (the run too unless `mayFail`).
fn failed(plan: &Plan, node: &Node, step: &Step, reason: String, retryable: bool) -> StepOutcome {
    let policy = node.retry.unwrap_or_default();
    if retryable && step.attempt < policy.max_attempts {
        let exp = step.attempt.saturating_sub(1).min(16);
        let delay = policy.backoff.saturating_mul(1u32 << exp).min(MAX_BACKOFF);
        return StepOutcome::Retry {
            error: format!("attempt {} failed: {reason}", step.attempt),
            not_before: SystemTime::now() + delay,
        };
    }
    if node.may_fail {
        return StepOutcome::Done {
            status: RunStatus::Failed,
            output: None,
            error: Some(reason),
            release: plan
                .dag
                .children(&node.id)
                .into_iter()
                .map(str::to_owned)
                .collect(),
        };
    }
    fail_run(step, reason)
}

fn fail_run(step: &Step, reason: String) -> StepOutcome {
    StepOutcome::FailRun {
        run_error: format!("node {} failed: {reason}", step.name),
        error: reason,
    }
}

async fn complete(
    core: &Arc<Core>,
    step: &Step,
    plan: Option<&Plan>,
    outcome: StepOutcome,
    detail: Option<serde_json::Value>,
    _node: Option<&Node>,
) -> Result<(), StoreError> {
    let run_id = step.run_id.to_string();
    let mut events = Vec::new();
    let mut on_run_done = Vec::new();
    if let Some(plan) = plan {
        let pinned = &plan.pinned;
        match &outcome {
            StepOutcome::Done { status, error, .. } => {
                let kind = if *status == RunStatus::Succeeded {
                    FlowEventKind::NodeCompleted
                } else {
                    FlowEventKind::NodeFailed
                };
                events.push(core.event(kind, &run_id, pinned, |e| {
                    e.node_id = Some(step.name.clone());
                    e.node_status = Some(if *status == RunStatus::Succeeded {
                        NodeStatus::Succeeded
                    } else {
                        NodeStatus::Failed
                    });
                    e.error = error.clone();
                }));
                on_run_done.push(
                    core.event(FlowEventKind::RunCompleted, &run_id, pinned, |e| {
                        e.run_status = Some(FlowRunStatus::Succeeded);
                    }),
                );
            }
            StepOutcome::FailRun { error, run_error } => {
                events.push(core.event(FlowEventKind::NodeFailed, &run_id, pinned, |e| {
                    e.node_id = Some(step.name.clone());
                    e.node_status = Some(NodeStatus::Failed);
                    e.error = Some(error.clone());
                }));
                on_run_done.push(core.event(FlowEventKind::RunFailed, &run_id, pinned, |e| {
                    e.run_status = Some(FlowRunStatus::Failed);
                    e.error = Some(run_error.clone());
                }));
            }
            StepOutcome::Park { .. } | StepOutcome::Retry { .. } => {}
        }
    }
    let parked = matches!(outcome, StepOutcome::Park { .. });
    let retry = matches!(outcome, StepOutcome::Retry { .. });
    let done = core
        .complete_step(StepCompletion {
            run: RunId::new(run_id.clone()),
            name: step.name.clone(),
            owner: core.engine_id.clone(),
            attempt: step.attempt,
            outcome,
            detail,
            events: events.clone(),
            on_run_done,
        })
        .await?;
    tracing::info!(status = %done.step.status, ready = done.ready.len(), run_finished = done.run_finished, "step_completed");
    if !events.is_empty() || done.run_finished || parked {
        core.outbox.notify_one();
    }
    // Ready children were claimed in the completion's own transaction (as many as slots allow;
    // the rest go with the next completions). A retry is due later: look again.
    if retry {
        core.work.notify_one();
    }
    if done.run_finished
        && let Some(plan) = plan
    {
        core.run_finished(&done.run, &plan.pinned);
    }
    Ok(())
}

async fn park(
    core: &Arc<Core>,
    step: &Step,
    plan: &Plan,
    node: &Node,
    input: serde_json::Value,
) -> Result<(), StoreError> {
    let run_id = step.run_id.to_string();
    let id = format!("{run_id}.{}", node.id);
    let now = SystemTime::now();
    let approval = Approval {
        id: id.clone(),
        run_id: run_id.clone(),
        workflow_id: plan.pinned.workflow_id.clone(),
        node_id: node.id.clone(),
        agent: node.agent.clone(),
        action: node.action.clone(),
        status: ApprovalStatus::Waiting,
        input,
        requested_at: rfc3339(now),
        expires_at: rfc3339(now + *core.config.approval_timeout),
        decided_by: None,
        decided_at: None,
        notes: None,
    };
    let event = core.event(
        FlowEventKind::ApprovalRequested,
        &run_id,
        &plan.pinned,
        |e| {
            e.node_id = Some(node.id.clone());
            e.approval_id = Some(id.clone());
            e.node_status = Some(NodeStatus::WaitingApproval);
        },
    );
    core.complete_step(StepCompletion {
        run: step.run_id.clone(),
        name: step.name.clone(),
        owner: core.engine_id.clone(),
        attempt: step.attempt,
        outcome: StepOutcome::Park {
            approval: serde_json::to_value(&approval).unwrap_or_default(),
        },
        detail: None,
        events: vec![event],
        on_run_done: Vec::new(),
    })
    .await?;
    tracing::info!(approval = %id, "approval_requested");
    core.outbox.notify_one();
    core.emit(FlowChange::ApprovalRequested {
        approval_id: id,
        run_id,
    });
    Ok(())
}

/// Renders the node's inputs over the context and its parents' outputs.
async fn resolve_inputs(
    core: &Core,
    plan: &Plan,
    node: &Node,
) -> Result<serde_json::Value, String> {
    let refs = template::references(&node.inputs).map_err(|e| e.to_string())?;
    let needed: Vec<String> = refs
        .iter()
        .filter_map(|r| template::referenced_node(r).map(str::to_owned))
        .collect();
    let missing = {
        let outputs = plan.outputs.lock();
        needed.iter().any(|n| !outputs.contains_key(n))
    };
    if missing {
        // Outputs made by another engine, or before a restart: read them from the store.
        let steps = core
            .store
            .steps(&RunId::new(plan.run_id.clone()))
            .await
            .map_err(|e| format!("reading parent outputs: {e}"))?;
        let mut outputs = plan.outputs.lock();
        for s in steps {
            if let Some(o) = s.output {
                outputs.insert(s.name, o);
            }
        }
    }
    let nodes = {
        let outputs = plan.outputs.lock();
        let mut map = serde_json::Map::new();
        for n in &needed {
            if let Some(o) = outputs.get(n) {
                map.insert(n.clone(), serde_json::json!({"output": o}));
            }
        }
        serde_json::Value::Object(map)
    };
    let scope = Scope {
        context: &plan.pinned.context,
        nodes: &nodes,
    };
    template::render(&node.inputs, &scope).map_err(|e| format!("inputs: {e}"))
}

fn check(plan: &Plan, node: &Node, doc: &serde_json::Value, output: bool) -> Result<(), String> {
    match plan.schema(&node.agent, &node.action, output).as_ref() {
        Err(e) => Err(e.clone()),
        Ok(s) => s.validate(doc).map_err(|p| p.join("; ")),
    }
}

fn bounded(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… [cut at {max} bytes]", &s[..end])
}

fn last_line(s: &str) -> Option<&str> {
    s.lines().rev().map(str::trim).find(|l| !l.is_empty())
}

/// When an approval's default decision applies.
pub(crate) fn expires_at(a: &Approval) -> Option<SystemTime> {
    parse_rfc3339(&a.expires_at)
}
